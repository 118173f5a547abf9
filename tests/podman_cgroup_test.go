package tests

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// podman with the cgroupfs manager names the cgroup
// /libpod_parent/libpod-ID: the VM's QEMU lives there on the host, podman
// update changes the limit inside the guest, and podman rm removes the
// cgroup.
func TestPodmanHostCgroupAndUpdate(t *testing.T) {
	skiffOnly(t) // QEMU on the host
	t.Parallel()
	root := podmanRootfs(t)
	name := podmanName(t, "hcg")
	id := strings.TrimSpace(podmanOK(t, "--cgroup-manager", "cgroupfs", "run", "-d", "--name", name, "--memory", "128m",
		"--rootfs", root, "/bin/sh", "-c", "while true; do sleep 1; done").stdout)
	dir := hostCgroupDir(t, "/libpod_parent/libpod-"+id)
	var qemu int
	for pid, cmd := range qemuProcesses() {
		if strings.Contains(string(cmd), id) {
			qemu = pid
		}
	}
	if qemu == 0 {
		t.Fatalf("no qemu process for container %s", id)
	}
	if procs := cgroupProcs(t, dir); !hasPID(procs, qemu) {
		t.Errorf("%s/cgroup.procs = %v, want qemu %d", dir, procs, qemu)
	}

	memMax := func() string {
		return strings.TrimSpace(podmanOK(t, "exec", name, "cat", "/sys/fs/cgroup/skiff/"+id+"/memory.max").stdout)
	}
	if got := memMax(); got != strconv.Itoa(128<<20) {
		t.Errorf("guest memory.max = %q, want %d", got, 128<<20)
	}
	podmanOK(t, "update", "--memory", "256m", name)
	if got := memMax(); got != strconv.Itoa(256<<20) {
		t.Errorf("guest memory.max after podman update = %q, want %d", got, 256<<20)
	}

	podmanOK(t, "rm", "-f", "-t", "0", name)
	deadline := time.Now().Add(settleTimeout)
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
