package seccomp

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// In a child process (the filter cannot be taken off again), each of
// these is tried under the filter; the child prints one line per try.
const childEnv = "SECCOMP_TEST_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		runtime.LockOSThread()
		if err := Install(); err != nil {
			os.Stdout.WriteString("install: " + err.Error() + "\n")
			os.Exit(1)
		}
		tryAll(dir)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type try struct {
	name string
	f    func(dir string) error
}

var tries = []try{
	{"chmod 0755", func(d string) error { return unix.Fchmodat(unix.AT_FDCWD, filepath.Join(d, "f"), 0o755, 0) }},
	{"chmod 04755", func(d string) error { return unix.Fchmodat(unix.AT_FDCWD, filepath.Join(d, "f"), 0o4755, 0) }},
	{"chmod 02755", func(d string) error { return unix.Fchmodat(unix.AT_FDCWD, filepath.Join(d, "f"), 0o2755, 0) }},
	{"fchmod 04755", func(d string) error {
		f, err := os.Open(filepath.Join(d, "f"))
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.Fchmod(int(f.Fd()), 0o4755)
	}},
	{"create 0644", func(d string) error { return create(filepath.Join(d, "plain"), 0o644) }},
	{"create 04755", func(d string) error { return create(filepath.Join(d, "suid"), 0o4755) }},
	{"open existing", func(d string) error {
		fd, err := unix.Open(filepath.Join(d, "f"), unix.O_RDONLY, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}},
	{"mknod fifo", func(d string) error { return unix.Mknod(filepath.Join(d, "fifo"), unix.S_IFIFO|0o600, 0) }},
	{"mknod char", func(d string) error {
		return unix.Mknod(filepath.Join(d, "null"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3)))
	}},
	{"mknod block", func(d string) error {
		return unix.Mknod(filepath.Join(d, "sda"), unix.S_IFBLK|0o600, int(unix.Mkdev(8, 0)))
	}},
	{"mkdir 0755", func(d string) error { return unix.Mkdir(filepath.Join(d, "dir"), 0o755) }},
	{"mkdir 02775", func(d string) error { return unix.Mkdir(filepath.Join(d, "sgid"), 0o2775) }},
}

func create(path string, mode uint32) error {
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, mode)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

func tryAll(dir string) {
	for _, t := range tries {
		res := "ok"
		if err := t.f(dir); err != nil {
			res = err.Error()
		}
		os.Stdout.WriteString(t.name + ": " + res + "\n")
	}
}

func TestFilterRefusesSetIDAndDevices(t *testing.T) {
	if !Supported() {
		t.Skipf("no filter for %s", runtime.GOARCH)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: without the filter, only root could make the devices it refuses")
	}
	dir := t.TempDir()
	syscall.Umask(0)
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := map[string]string{
		"chmod 0755":    "ok",
		"chmod 04755":   "operation not permitted",
		"chmod 02755":   "operation not permitted",
		"fchmod 04755":  "operation not permitted",
		"create 0644":   "ok",
		"create 04755":  "operation not permitted",
		"open existing": "ok",
		"mknod fifo":    "ok",
		"mknod char":    "operation not permitted",
		"mknod block":   "operation not permitted",
		"mkdir 0755":    "ok",
		"mkdir 02775":   "operation not permitted",
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		got[k] = v
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	// And on disk: nothing set-ID, no device.
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeDevice|os.ModeCharDevice) != 0 {
			t.Errorf("%s: mode %v", p, fi.Mode())
		}
		return nil
	})
}
