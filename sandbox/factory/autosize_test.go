package factory

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAutoTargetFollowsStartsWithinItsBound(t *testing.T) {
	for _, c := range []struct{ starts, bound, want int }{
		{0, 8, 1}, // idle: one VM still waits for the next start
		{1, 8, 1},
		{5, 8, 5},
		{30, 8, 8},
		{3, 1, 1},
	} {
		if got := autoTarget(c.starts, c.bound); got != c.want {
			t.Errorf("autoTarget(%d, %d) = %d, want %d", c.starts, c.bound, got, c.want)
		}
	}
}

// Starts older than the window do not count; the file is cut back to the
// window once it is long.
func TestRecentStartsCountsTheWindow(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_800_000_000, 0)
	for i := 0; i < 3; i++ {
		recordStart(dir, now.Add(-startWindow-time.Duration(i+1)*time.Second))
	}
	for i := 0; i < 4; i++ {
		recordStart(dir, now.Add(-time.Duration(i)*time.Second))
	}
	os.WriteFile(startsFile(dir)+".junk", nil, 0o600)
	if got := recentStarts(dir, now); got != 4 {
		t.Fatalf("recentStarts = %d, want the 4 in the last %v", got, startWindow)
	}
	// A long file is rewritten with only the window's starts.
	f, _ := os.OpenFile(startsFile(dir), os.O_WRONLY|os.O_APPEND, 0)
	old := strconv.FormatInt(now.Add(-time.Hour).UnixNano(), 10) + "\n"
	f.WriteString(strings.Repeat(old, startsKeep))
	f.Close()
	if got := recentStarts(dir, now); got != 4 {
		t.Fatalf("recentStarts = %d after old lines, want 4", got)
	}
	b, _ := os.ReadFile(startsFile(dir))
	if n := strings.Count(string(b), "\n"); n != 4 {
		t.Errorf("the starts file kept %d lines, want the window's 4", n)
	}
}
