package agent

import (
	"reflect"
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
