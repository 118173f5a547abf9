package agent

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseModulesOrder(t *testing.T) {
	got := parseModulesOrder("virtio_ring.ko\n\n# comment\n  virtio.ko  \nkernel/fs/9p/9p.ko\n")
	want := []string{"virtio_ring.ko", "virtio.ko", "kernel/fs/9p/9p.ko"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"virtio_pci.ko":                 "virtio_pci",
		"kernel/net/9p/9pnet-virtio.ko": "9pnet_virtio",
		"virtio_console.ko.xz":          "virtio_console",
		"x.ko.zst":                      "x",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestModuleParams(t *testing.T) {
	cmdline := `console=ttyS0 quiet virtio-pci.force_legacy=1 9pnet_virtio.x=2 ` +
		`virtio_pci.disable=1 skiff.debug=1 foo.bar="a b" .bad=1 noval. mod.flag`
	got := moduleParams(cmdline)
	want := map[string]string{
		"virtio_pci":   "force_legacy=1 disable=1",
		"9pnet_virtio": "x=2",
		"skiff":        "debug=1",
		"foo":          `bar="a b"`,
		"mod":          "flag",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestSplitCmdline(t *testing.T) {
	got := splitCmdline(`  a b="c d"  e=""  f` + "\n")
	want := []string{"a", "b=c d", "e=", "f"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestValidIDAndTerm(t *testing.T) {
	for _, c := range []struct {
		s        string
		id, term bool
	}{
		{"abc", true, true},
		{"A1_b.c+d-e", true, true},
		{"xterm-256color", true, true},
		{"", false, false},
		{"-lead", false, true},
		{".hidden", false, true},
		{"a/b", false, false},
		{"a b", false, false},
		{"a\x00", false, false},
		{"é", false, false},
		{strings.Repeat("a", 64), true, true},
		{strings.Repeat("a", 65), true, false},
		{strings.Repeat("a", 1025), false, false},
	} {
		if got := validID(c.s); got != c.id {
			t.Errorf("validID(%q) = %v, want %v", c.s, got, c.id)
		}
		if got := validTerm(c.s); got != c.term {
			t.Errorf("validTerm(%q) = %v, want %v", c.s, got, c.term)
		}
	}
}
