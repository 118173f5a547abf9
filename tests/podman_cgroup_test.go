package tests

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// podman with the cgroupfs manager names the cgroup
// /libpod_parent/libpod-ID: the VM's QEMU lives there on the host, podman
// update changes the limit inside the guest, and podman rm removes the
// cgroup.
func TestPodmanHostCgroupAndUpdate(t *testing.T) {
	e2e.SkiffOnly(t) // QEMU on the host
	t.Parallel()
	root := e2e.PodmanRootfs(t)
	name := e2e.PodmanName(t, "hcg")
	id := strings.TrimSpace(e2e.PodmanOK(t, "--cgroup-manager", "cgroupfs", "run", "-d", "--name", name, "--memory", "128m",
		"--rootfs", root, "/bin/sh", "-c", "while true; do sleep 1; done").Stdout)
	dir := e2e.HostCgroupDir(t, "/libpod_parent/libpod-"+id)
	qemu := e2e.QEMUNaming(id)
	if qemu == 0 {
		t.Fatalf("no qemu process for container %s", id)
	}
	if procs := e2e.CgroupProcs(t, dir); !slices.Contains(procs, qemu) {
		t.Errorf("%s/cgroup.procs = %v, want qemu %d", dir, procs, qemu)
	}

	memMax := func() string {
		return strings.TrimSpace(e2e.PodmanOK(t, "exec", name, "cat", "/sys/fs/cgroup/skiff/"+id+"/memory.max").Stdout)
	}
	if got := memMax(); got != strconv.Itoa(128<<20) {
		t.Errorf("guest memory.max = %q, want %d", got, 128<<20)
	}
	e2e.PodmanOK(t, "update", "--memory", "256m", name)
	if got := memMax(); got != strconv.Itoa(256<<20) {
		t.Errorf("guest memory.max after podman update = %q, want %d", got, 256<<20)
	}

	e2e.PodmanOK(t, "rm", "-f", "-t", "0", name)
	deadline := time.Now().Add(e2e.SettleTimeout)
	for {
		matches, _ := filepath.Glob("/sys/fs/cgroup/*/libpod_parent/libpod-" + id)
		if m2, _ := filepath.Glob("/sys/fs/cgroup/libpod_parent/libpod-" + id); len(m2) > 0 {
			matches = append(matches, m2...)
		}
		if len(matches) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("host cgroups left after podman rm: %v", matches)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}
