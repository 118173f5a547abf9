package container

import (
	"os/exec"
	"testing"
	"time"
)

// A zygote that never says it waits (hung in its start) must not hang the
// agent: WaitReady gives up after its deadline and discards it.
func TestZygoteWaitReadyHonoursItsDeadline(t *testing.T) {
	mine, theirs, err := zygoteSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close() // open and silent, as a hung zygote's
	stand := exec.Command("sleep", "30")
	if err := stand.Start(); err != nil {
		t.Fatal(err)
	}
	defer stand.Wait()
	z := &Zygote{pid: stand.Process.Pid, sock: mine}
	start := time.Now()
	err = z.WaitReady(200 * time.Millisecond)
	if err == nil {
		t.Fatal("WaitReady succeeded on a silent zygote")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("WaitReady took %v, want about its 200ms deadline", d)
	}
	if !z.Spent() {
		t.Errorf("a zygote that was not ready is not discarded")
	}
	done := make(chan struct{})
	go func() { stand.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Errorf("the discarded zygote (pid %d) was not killed", stand.Process.Pid)
	}
}

// A zygote's "waiting" byte makes it ready, once.
func TestZygoteWaitReady(t *testing.T) {
	mine, theirs, err := zygoteSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	stand := exec.Command("sleep", "30")
	if err := stand.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stand.Process.Kill(); stand.Wait() }()
	z := &Zygote{pid: stand.Process.Pid, sock: mine}
	if _, err := theirs.Write([]byte{zygoteWaiting}); err != nil {
		t.Fatal(err)
	}
	if err := z.WaitReady(5 * time.Second); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	if err := z.WaitReady(time.Millisecond); err != nil {
		t.Errorf("a second WaitReady: %v", err)
	}
}
