package proc

import (
	"os"
	"os/exec"
	"testing"
)

// Now and StartTime count the same clock: this process started before
// now, and a child started after that moment starts at or after it.
func TestNowOrdersStartTimes(t *testing.T) {
	self, err := StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	before := Now()
	if self > before {
		t.Fatalf("this process started at %d, after now (%d)", self, before)
	}
	cmd := exec.Command("sleep", "1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	child, err := StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if child < before {
		t.Errorf("a child started after %d has start time %d", before, child)
	}
	if after := Now(); child > after {
		t.Errorf("a child has start time %d, after now (%d)", child, after)
	}
}
