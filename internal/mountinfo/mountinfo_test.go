package mountinfo

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	in := `22 1 0:21 / /run rw,nosuid shared:5 - tmpfs tmpfs rw
40 22 8:1 /data/with\040space /run/skiff/c1/dirs/0 ro master:1 - ext4 /dev/sda1 rw
`
	ms, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 {
		t.Fatalf("got %d mounts", len(ms))
	}
	m := ms[1]
	if m.ID != 40 || m.Parent != 22 || m.Root != "/data/with space" || m.Point != "/run/skiff/c1/dirs/0" || m.FSType != "ext4" {
		t.Errorf("parsed %+v", m)
	}
	if _, err := Parse(strings.NewReader("garbage\n")); err == nil {
		t.Error("a malformed line was accepted")
	}
}

func TestReadSeesRoot(t *testing.T) {
	ms, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Point == "/" {
			return
		}
	}
	t.Error("no mount at /")
}
