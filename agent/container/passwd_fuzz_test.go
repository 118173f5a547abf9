package container

import (
	"strings"
	"testing"
)

// FuzzHomeIn: whatever an image's /etc/passwd holds, the lookup never
// panics and answers "/" or the sixth field of a line naming the uid.
func FuzzHomeIn(f *testing.F) {
	f.Add("root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n", uint32(1000))
	f.Add("::::::\n:::0::\n", uint32(0))
	f.Add(strings.Repeat("a", 70000)+"\nu:x:7:7::/h:/s\n", uint32(7))
	f.Fuzz(func(t *testing.T, passwd string, uid uint32) {
		home := homeIn(strings.NewReader(passwd), uid)
		if home == "/" {
			return
		}
		for _, line := range strings.Split(passwd, "\n") {
			if f := strings.Split(line, ":"); len(f) >= 6 && f[5] == home {
				return
			}
		}
		t.Fatalf("home %q is in no line of the file", home)
	})
}

func TestHomeIn(t *testing.T) {
	passwd := "root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\nbad line\nv:x:1001:1001:::/bin/sh\n"
	for uid, want := range map[uint32]string{0: "/root", 1000: "/home/u", 1001: "/", 5: "/"} {
		if got := homeIn(strings.NewReader(passwd), uid); got != want {
			t.Errorf("uid %d: %q, want %q", uid, got, want)
		}
	}
}
