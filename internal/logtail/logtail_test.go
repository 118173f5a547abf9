package logtail

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConsoleTailKeepsThePanicLine(t *testing.T) {
	var b strings.Builder
	b.WriteString("[    1.0] Run /init as init process\n")
	b.WriteString("[    1.7] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n")
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&b, "[    1.8] trace line %d\n", i)
	}
	path := filepath.Join(t.TempDir(), "console.log")
	os.WriteFile(path, []byte(b.String()), 0o600)
	got := Console(path, 12)
	lines := strings.Split(got, "\n")
	if len(lines) != 14 || !strings.HasSuffix(lines[0], "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)") || lines[1] != "[...]" || lines[13] != "[    1.8] trace line 19" {
		t.Errorf("Console:\n%s", got)
	}

	os.WriteFile(path, []byte("a\nb\n"), 0o600)
	if got := Console(path, 12); got != "a\nb" {
		t.Errorf("Console of a short log without a panic = %q", got)
	}
}

func TestEndReadsOnlyTheEndOfAHugeLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// A guest may make its console as large as it likes: 1 GiB of holes,
	// then the last line.
	f.Truncate(1 << 30)
	f.WriteAt([]byte("\nlast line\x1b[2J\n"), 1<<30)
	f.Close()
	if got := Lines(path, 1); got != "last line?[2J" {
		t.Errorf("Lines = %q, want the last line with its escape defused", got)
	}
	if n := len(End(path)); n > MaxRead {
		t.Errorf("End read %d bytes, more than %d", n, MaxRead)
	}
}
