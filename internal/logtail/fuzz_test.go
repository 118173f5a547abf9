package logtail

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
)

// FuzzConsoleTail: whatever the guest wrote on its console, the tail quoted
// to the operator has no control character but newline and tab (no escape
// sequence reaches a terminal), and no more lines than asked (plus the
// panic line and its marker).
func FuzzConsoleTail(f *testing.F) {
	f.Add([]byte("boot\nKernel panic - not syncing: VFS\ntrace\n"), 3)
	f.Add([]byte("\x1b]0;owned\x07\x1b[2J\r\nhello\n"), 2)
	f.Add([]byte(strings.Repeat("x", MaxRead+10)+"\nend\n"), 1)
	f.Add([]byte("Kernel panic - not syncing\x1b[31m\n"), 0)
	f.Add([]byte{0xff, 0xfe, '\n', 0xc2, 0x9b, '3', '1', 'm'}, 5) // an invalid UTF-8 and a C1 CSI
	f.Fuzz(func(t *testing.T, console []byte, n int) {
		n = n%50 + 1
		if n < 1 {
			n = -n + 1
		}
		path := filepath.Join(t.TempDir(), "console.log")
		if err := os.WriteFile(path, console, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, out := range []string{Lines(path, n), Console(path, n)} {
			for _, r := range out {
				if r != '\n' && r != '\t' && unicode.IsControl(r) {
					t.Fatalf("control character %U in %q", r, out)
				}
			}
			if lines := strings.Count(out, "\n") + 1; out != "" && lines > n+2 {
				t.Fatalf("%d lines for a tail of %d: %q", lines, n, out)
			}
		}
		if len(End(path)) > MaxRead {
			t.Fatalf("End read %d bytes, over MaxRead", len(End(path)))
		}
	})
}
