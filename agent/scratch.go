package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// scratchModulesFile lists the modules the scratch disk needs (virtio_blk,
// ext4 and what it depends on, overlay for builds on top of it), in load
// order. They are in the initramfs but not in modules.order: every module
// loaded at boot costs each cold boot under TCG. A cold-booted guest
// loads them on its first scratch mount; a VM template during its
// warm-up (preloadScratchModules).
const scratchModulesFile = "modules.scratch"

// scratchProbeWait bounds the wait for the disk's block device once its
// driver is loaded.
const scratchProbeWait = 5 * time.Second

// ext4 options: noinit_itable, since the host made the filesystem on a
// fresh sparse file (its inode tables read as zeros already), so the
// kernel's lazy-init thread would only turn holes into written blocks of
// the host file; no nosuid or nodev, which would drop file capabilities
// and the device nodes of nested container images.
const scratchMountOptions = "noinit_itable"

// keepScratchModules keeps the initramfs's /lib/modules reachable (read
// only) from the root the agent moves to: the scratch and virtio-fs
// modules are loaded after it left the initramfs.
func keepScratchModules(newRoot string) {
	if _, err := os.Stat(filepath.Join(modulesDir, scratchModulesFile)); err != nil {
		return
	}
	target := newRoot + modulesDir
	err := os.MkdirAll(target, 0o755)
	if err == nil {
		err = unix.Mount(modulesDir, target, "", unix.MS_BIND, "")
	}
	if err == nil {
		err = unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "skiff-agent: error keep %s for the scratch disk: %v\n", modulesDir, err)
	}
}

func validateScratch(s *protocol.Scratch) error {
	if s.Serial == "" || len(s.Serial) > 20 || strings.ContainsAny(s.Serial, "/\x00\n") {
		return fmt.Errorf("scratch: invalid disk serial %q", s.Serial)
	}
	for _, d := range s.Dirs {
		if filepath.Clean(d) != d || !strings.HasPrefix(d, protocol.ScratchDir+"/") {
			return fmt.Errorf("scratch: directory %q is not a clean path below %s", d, protocol.ScratchDir)
		}
	}
	return nil
}

// holdScratch mounts the scratch disk once, the first time a container
// asks, and makes the directories s names.
func (a *Agent) holdScratch(s *protocol.Scratch) error {
	if err := validateScratch(s); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.scratchMounted {
		start := time.Now()
		if err := mountScratch(s.Serial, s.Size, a.log); err != nil {
			return err
		}
		a.scratchMounted = true
		a.log.debugf("mounted scratch disk %s on %s in %v", s.Serial, protocol.ScratchDir, time.Since(start))
	}
	for _, d := range s.Dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("scratch: %w", err)
		}
	}
	return nil
}

// containerScratch is the directory that holds container id's own
// scratch directories (the host plans them there).
func containerScratch(id string) string { return filepath.Join(protocol.ScratchDir, "c", id) }

// dropScratch removes a removed container's scratch directories: a
// container created again with the same ID (a kubelet restart) starts
// empty, as a fresh runc container's writable layer would.
func (a *Agent) dropScratch(id string) {
	a.mu.Lock()
	mounted := a.scratchMounted
	a.mu.Unlock()
	if !mounted {
		return
	}
	if err := os.RemoveAll(containerScratch(id)); err != nil {
		a.log.errorf("remove scratch of container %s: %v", id, err)
	}
}

func mountScratch(serial string, size int64, log *logger) error {
	if err := loadModuleList(filepath.Join(modulesDir, scratchModulesFile), log); err != nil {
		// A module that fails may be built in or not needed (crc32c's
		// accelerated variant on a CPU without SSE4.2): the mount says
		// whether what matters is there.
		log.debugf("scratch modules: %v", err)
	}
	dev, err := findDisk(serial, scratchProbeWait)
	if err != nil {
		return fmt.Errorf("scratch disk: %w", err)
	}
	if err := waitCapacity(dev, size, scratchProbeWait); err != nil {
		return fmt.Errorf("scratch disk: %w", err)
	}
	if err := os.MkdirAll(protocol.ScratchDir, 0o755); err != nil {
		return fmt.Errorf("scratch disk: %w", err)
	}
	if err := unix.Mount(dev, protocol.ScratchDir, "ext4", 0, scratchMountOptions); err != nil {
		return fmt.Errorf("mount scratch disk %s (%s) on %s: %w", serial, dev, protocol.ScratchDir, err)
	}
	return nil
}

// preloadScratchModules loads the scratch disk's modules (virtio_blk,
// ext4 and its dependencies, overlay) during a VM template's warm-up, so
// that they are in every clone's memory: loading them takes ~0.3 s under
// TCG, which a clone's first scratch mount would pay otherwise. The
// driver then probes the template's placeholder disk, whose capacity the
// clones' guests keep until the host announces their own disk's size
// after the restore (hypervisor.DiskSizer); the agent waits for it before
// mounting (waitCapacity). Measured on the stock kernel, a clone's first
// scratch mount takes ~150 ms with the driver bound in the template,
// ~250 ms with it loaded on demand. Best effort: the mount loads what is
// missing.
func preloadScratchModules(log *logger) {
	if err := loadModuleList(filepath.Join(modulesDir, scratchModulesFile), log); err != nil {
		log.debugf("preload scratch modules: %v", err)
	}
}

// loadModuleList inserts the modules a list file names, in order, but
// those skipped and those already loaded; a list that does not exist (a
// kernel with everything built in) is nothing to do.
func loadModuleList(list string, log *logger, skip ...string) error {
	data, err := os.ReadFile(list)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, file := range parseModulesOrder(string(data)) {
		name := moduleName(file)
		if slices.Contains(skip, name) {
			continue
		}
		if _, err := os.Stat(filepath.Join("/sys/module", name)); err == nil {
			continue // loaded: finit_module would read and lay it out again
		}
		if err := loadModule(filepath.Join(modulesDir, file), ""); err != nil {
			errs = append(errs, fmt.Errorf("load module %s: %w", moduleName(file), err))
			continue
		}
		log.debugf("loaded module %s", moduleName(file))
	}
	return errors.Join(errs...)
}

// findDisk returns the /dev node of the virtio disk whose serial is
// serial, creating the node from sysfs when devtmpfs did not, and waits
// up to wait for the driver to bring it up.
func findDisk(serial string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		dev, err := diskBySerial(serial)
		if err == nil || time.Now().After(deadline) {
			return dev, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitCapacity waits until the guest sees dev at size bytes (0: any): a
// clone's kernel with virtio_blk built in shows its template's disk
// until the host's size announcement (block_resize) reaches it.
func waitCapacity(dev string, size int64, wait time.Duration) error {
	if size <= 0 {
		return nil
	}
	path := filepath.Join("/sys/block", filepath.Base(dev), "size")
	deadline := time.Now().Add(wait)
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var sectors int64
		fmt.Sscan(strings.TrimSpace(string(b)), &sectors)
		if sectors*512 == size {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s has %d bytes, want %d", dev, sectors*512, size)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func diskBySerial(serial string) (string, error) {
	const class = "/sys/block"
	ents, err := os.ReadDir(class)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "vd") {
			continue
		}
		got, err := os.ReadFile(filepath.Join(class, e.Name(), "serial"))
		if err != nil || strings.TrimSpace(string(got)) != serial {
			continue
		}
		return devNode(class, e.Name(), unix.S_IFBLK)
	}
	return "", fmt.Errorf("no virtio disk with serial %q", serial)
}
