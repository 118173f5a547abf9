package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/internal/fakevm"
	"github.com/skiff-oci/skiff/internal/ocitest"
	"github.com/skiff-oci/skiff/sandbox/shimctl"
	"github.com/skiff-oci/skiff/sandbox/state"
)

// startShim runs a shim for a new container c1 on a stand-in VMM, as
// create would, and returns its control client and the channel its exit
// status arrives on once it reported the container created.
func startShim(t *testing.T, vmm *fakevm.VMM) (state.Root, shimctl.Client, <-chan int) {
	t.Helper()
	dir := t.TempDir()
	cfgJSON, _ := json.Marshal(fakevm.Config(dir, false, 0))
	bundle := ocitest.Bundle(t, func(s *specs.Spec) { s.Process.Terminal = false })

	root := state.Root(filepath.Join(dir, "root"))
	d, lock, err := root.Claim("c1")
	if err != nil {
		t.Fatal(err)
	}
	lock.Unlock()
	d.Write(&state.Container{ID: "c1", Sandbox: "c1", Bundle: bundle, Rootfs: filepath.Join(bundle, "rootfs"), Phase: state.PhaseCreated})
	root.Sandbox("c1").Write(&state.Sandbox{ID: "c1", Containers: []string{"c1"}, Config: cfgJSON})

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	exit := make(chan int, 1)
	go func() { exit <- Run(root, "c1", w, Options{VMM: vmm}) }()
	line, _ := bufio.NewReader(r).ReadString('\n')
	r.Close()
	if strings.TrimSpace(line) != "ok" {
		t.Fatalf("shim reported %q", line)
	}
	return root, shimctl.Client{Socket: root.Sandbox("c1").ShimSocket()}, exit
}

func waitExit(t *testing.T, exit <-chan int) int {
	t.Helper()
	select {
	case st := <-exit:
		return st
	case <-time.After(10 * time.Second):
		t.Fatal("the shim did not exit")
		return 0
	}
}

func TestShimStartsKillsAndExitsWithTheStatus(t *testing.T) {
	vmm := &fakevm.VMM{}
	root, client, exit := startShim(t, vmm)
	ctx := context.Background()
	if err := client.Start(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root.Container("c1").StartedMarker()); err != nil {
		t.Errorf("no started marker after Start: %v", err)
	}
	if _, err := client.Processes(ctx, "c2"); err == nil || !strings.Contains(err.Error(), "not in sandbox") {
		t.Errorf("a container the sandbox does not hold: %v", err)
	}
	if err := client.Kill(ctx, "c1", 15, false); err != nil {
		t.Fatal(err)
	}
	if st := waitExit(t, exit); st != 128+15 {
		t.Errorf("shim exited %d, want 143 (SIGTERM)", st)
	}
	if vmm.Running(root.Sandbox("c1").QEMUPIDFile()) != 0 {
		t.Error("the VM outlived its shim")
	}
	if _, err := os.Stat(root.Sandbox("c1").ShimSocket()); !os.IsNotExist(err) {
		t.Errorf("control socket left: %v", err)
	}
}

func TestShimExits137WhenTheVMDies(t *testing.T) {
	vmm := &fakevm.VMM{}
	root, _, exit := startShim(t, vmm)
	vmm.Kill(root.Sandbox("c1").QEMUPIDFile())
	if st := waitExit(t, exit); st != 137 {
		t.Errorf("shim exited %d after its VM died, want 137", st)
	}
}

func TestShimShutdownStopsTheVM(t *testing.T) {
	vmm := &fakevm.VMM{}
	root, client, exit := startShim(t, vmm)
	if err := client.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitExit(t, exit)
	if vmm.Running(root.Sandbox("c1").QEMUPIDFile()) != 0 {
		t.Error("the VM still runs after Shutdown")
	}
}
