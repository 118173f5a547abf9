// Package logtail quotes the end of a log file (a guest console, QEMU's
// stderr, a shim log) for an error message. It reads at most MaxRead bytes
// from the end, whatever the file's size: the guest writes the console and
// may make it as large as it likes. It imports nothing of skiff's.
package logtail

import (
	"io"
	"os"
	"strings"
	"unicode"
)

// MaxRead bounds what is read from the end of a file.
const MaxRead = 64 << 10

// PanicMarker starts the line in which a Linux guest kernel says why it
// panicked; the call trace that follows can push it out of a short tail.
const PanicMarker = "Kernel panic - not syncing"

// End returns at most the last MaxRead bytes of path ("" if unreadable).
func End(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-MaxRead, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, MaxRead))
	if err != nil {
		return ""
	}
	s := string(b)
	if off > 0 {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:] // drop the partial first line
		}
	}
	return s
}

// Lines returns the last n lines of path, carriage returns dropped and
// control characters other than tab replaced: what the guest wrote must
// not drive the operator's terminal.
func Lines(path string, n int) string {
	return lastLines(End(path), n)
}

func lastLines(s string, n int) string {
	s = strings.TrimRight(strings.ReplaceAll(s, "\r", ""), "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return Sanitize(strings.Join(lines, "\n"))
}

// Sanitize replaces control characters (escape sequences included) but
// newline and tab by '?': a string from the guest is shown, never obeyed.
func Sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || !unicode.IsControl(r) {
			return r
		}
		return '?'
	}, s)
}

// Console is Lines for a guest console log, preceded by the kernel's panic
// line when there is one above them: a boot that ends in a panic must
// explain itself, not only show a stack trace.
func Console(path string, n int) string {
	all := strings.ReplaceAll(End(path), "\r", "")
	t := lastLines(all, n)
	if t == "" || strings.Contains(t, PanicMarker) {
		return t
	}
	i := strings.LastIndex(all, PanicMarker)
	if i < 0 {
		return t
	}
	start := strings.LastIndexByte(all[:i], '\n') + 1
	line, _, _ := strings.Cut(all[start:], "\n")
	return Sanitize(line) + "\n[...]\n" + t
}

// Contains reports whether the end of path holds marker.
func Contains(path, marker string) bool {
	return strings.Contains(End(path), marker)
}

// Count counts marker in the end of path.
func Count(path, marker string) int {
	return strings.Count(End(path), marker)
}
