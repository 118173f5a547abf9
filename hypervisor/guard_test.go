package hypervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The guard ties a VM's life to its owner's. These tests play the owner in
// a helper process (this test binary, re-executed) and SIGKILL it, the way
// a shim dies when the OOM killer or an operator takes it.

// helperEnv carries the helper's role and the VM's Config.
const helperEnv = "SKIFF_GUARD_TEST_HELPER"

// TestGuardHelper is not a test: it is the helper process's main.
func TestGuardHelper(t *testing.T) {
	role := os.Getenv(helperEnv)
	if role == "" {
		t.Skip("helper process only")
	}
	var cfg Config
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv+"_CONFIG")), &cfg); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	var h Hypervisor
	var err error
	switch role {
	case "start":
		if h, err = NewQEMU(cfg); err == nil {
			err = h.Start(context.Background())
		}
	case "adopt":
		h, err = AdoptQEMU(cfg)
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("pid", h.PID())
	time.Sleep(time.Hour)
}

// fakeVMM makes cfg's binary a stand-in QEMU that writes its pidfile and
// waits, with no child of its own, keeping its command line (isVMM reads
// it to tell our VMM from a recycled PID).
func fakeVMM(t *testing.T, cfg Config) {
	t.Helper()
	script := `#!/bin/bash
for ((i = 1; i < $#; i++)); do [ "${!i}" = -pidfile ] && j=$((i + 1)) && echo $$ > "${!j}"; done
exec -a "$0" perl -e 'sleep' -- "$@"
`
	if err := os.WriteFile(cfg.Binary, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// helper runs a helper process in role and returns it and the VMM PID it
// reports.
func helper(t *testing.T, role string, cfg Config) (*exec.Cmd, int) {
	t.Helper()
	b, _ := json.Marshal(cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^TestGuardHelper$")
	cmd.Env = append(os.Environ(), helperEnv+"="+role, helperEnv+"_CONFIG="+string(b))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "pid ")))
	if !strings.HasPrefix(line, "pid ") || err != nil {
		t.Fatalf("helper %s: %q", role, line)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	// Adopters find the VMM by its pidfile, which it writes itself.
	for end := time.Now().Add(5 * time.Second); VMMPID(cfg.PIDFile) != pid; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("VMM %d wrote no pidfile", pid)
		}
	}
	return cmd, pid
}

// waitDead fails unless pid is gone within d.
func waitDead(t *testing.T, pid int, d time.Duration, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if !waitGone(ctx, pid) {
		t.Fatalf("%s: VMM %d still runs %v after its owner was killed", what, pid, d)
	}
}

func TestVMDiesWithItsOwner(t *testing.T) {
	t.Parallel()
	cfg := typicalConfig(t)
	fakeVMM(t, cfg)
	owner, vmm := helper(t, "start", cfg)
	if !alive(vmm) {
		t.Fatalf("VMM %d not running", vmm)
	}
	owner.Process.Kill()
	owner.Wait()
	waitDead(t, vmm, 3*time.Second, "started VM")
}

// A pooled VM outlives the filler that started it, waits to be adopted
// (the filler may still run then), and then dies with its adopter.
func TestPooledVMDiesWithItsAdopter(t *testing.T) {
	t.Parallel()
	cfg := typicalConfig(t)
	cfg.GuardSocket = t.TempDir() + "/guard.sock"
	fakeVMM(t, cfg)
	for _, fillerLives := range []bool{false, true} {
		filler, vmm := helper(t, "start", cfg)
		if !fillerLives {
			killFiller(t, filler, vmm, "pooled")
		}
		shim, adopted := helper(t, "adopt", cfg)
		if adopted != vmm {
			t.Fatalf("adopted PID %d, want %d", adopted, vmm)
		}
		if fillerLives {
			killFiller(t, filler, vmm, "adopted")
		}
		shim.Process.Kill()
		shim.Wait()
		waitDead(t, vmm, 3*time.Second, "adopted VM")
	}
}

// killFiller kills the filler that started a pooled VM, which must live
// on.
func killFiller(t *testing.T, filler *exec.Cmd, vmm int, what string) {
	t.Helper()
	filler.Process.Kill()
	filler.Wait()
	time.Sleep(300 * time.Millisecond)
	if !alive(vmm) {
		t.Fatalf("%s VMM %d died with the filler that started it", what, vmm)
	}
}

// A VM adopted once cannot be adopted again: its guard listens no more.
func TestPooledVMAdoptedOnce(t *testing.T) {
	t.Parallel()
	cfg := typicalConfig(t)
	cfg.GuardSocket = t.TempDir() + "/guard.sock"
	fakeVMM(t, cfg)
	helper(t, "start", cfg)
	helper(t, "adopt", cfg)
	// A second adopter finds no guard waiting.
	if _, err := AdoptQEMU(cfg); err == nil {
		t.Errorf("a VM already adopted was adopted again")
	}
}

// The ring file keeps the end of what was written, within its bound.
func TestRingFileBounded(t *testing.T) {
	f, err := os.Create(t.TempDir() + "/console.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &ringFile{f: f, max: 4096}
	var last []byte
	for i := 0; i < 5000; i++ {
		last = []byte(fmt.Sprintf("line %d %s\n", i, strings.Repeat("x", i%97)))
		if n, err := r.Write(last); err != nil || n != len(last) {
			t.Fatalf("write: %d, %v", n, err)
		}
	}
	r.Write(bytes.Repeat([]byte("y"), 10000)) // larger than the file
	r.Write(last)
	b, _ := os.ReadFile(f.Name())
	if len(b) > 4096 || !bytes.HasSuffix(b, append(bytes.Repeat([]byte("y"), 100), last...)) {
		t.Errorf("ring file of %d bytes ends %q", len(b), b[max(0, len(b)-200):])
	}
}

// A guest flooding its serial console: the console file on the host stays
// within its bound, and shows the latest output.
func TestConsoleFloodStaysBounded(t *testing.T) {
	t.Parallel()
	kernel := testKernel(t)
	pad := strings.Repeat("x", 200)
	initrd := buildInitramfs(t, "i=0; while true; do echo L$i "+pad+"; i=$((i+1)); done\n")
	cfg := vmConfig(t, kernel, initrd)
	startVM(t, cfg)
	// Twice the bound written: the file must have wrapped at least once.
	want := 2 * ringMax / (len(pad) + 8)
	deadline := time.Now().Add(120 * time.Second)
	for {
		fi, err := os.Stat(cfg.ConsoleLog)
		if err == nil && fi.Size() > ringMax {
			t.Fatalf("console file is %d bytes, over its bound of %d", fi.Size(), ringMax)
		}
		if n := lastCounter(cfg.ConsoleLog); n >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest wrote only %d lines in 120s, want %d", lastCounter(cfg.ConsoleLog), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lastCounter is the number of the last complete "L<n> ..." line of path.
func lastCounter(path string) int {
	b, _ := os.ReadFile(path)
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 2; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) == 2 && strings.HasPrefix(f[0], "L") {
			if n, err := strconv.Atoi(f[0][1:]); err == nil {
				return n
			}
		}
	}
	return 0
}

// A VMM that cannot be started is an error of Start, with the reason, and
// leaves no adopters' socket behind.
func TestGuardReportsAFailedStart(t *testing.T) {
	t.Parallel()
	cfg := typicalConfig(t)
	cfg.GuardSocket = t.TempDir() + "/guard.sock"
	q, err := NewQEMU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(cfg.Binary) // gone between the check and the start
	err = q.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("Start of a missing VMM: %v", err)
	}
	if _, err := os.Stat(cfg.GuardSocket); err == nil {
		t.Errorf("the guard's socket outlived a failed start")
	}
}
