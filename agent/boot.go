package agent

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agent/container"
	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// logger writes to the guest console. Console writes are slow under TCG,
// so only errors are written unless skiff.debug=1 is on the command line.
type logger struct {
	mu    sync.Mutex
	out   *os.File
	debug bool
}

func (l *logger) printf(level, format string, args ...any) {
	if l == nil || l.out == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// Seconds since boot, like the kernel's own console timestamps.
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	fmt.Fprintf(l.out, "skiff-agent: %s [%d.%06d] %s\n", level, ts.Sec, ts.Nsec/1000, fmt.Sprintf(format, args...))
}

func (l *logger) debugf(format string, args ...any) {
	if l != nil && l.debug {
		l.printf("debug", format, args...)
	}
}

func (l *logger) errorf(format string, args ...any) { l.printf("error", format, args...) }

// say prints a line on the console whatever the log level.
func (l *logger) say(msg string) {
	if l == nil || l.out == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(l.out, msg)
}

type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

// Mounts made before /proc/cmdline is read; the rest follows the probe.
var (
	procMount = mountSpec{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""}
	devMount  = mountSpec{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"}
	bootMount = []mountSpec{
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	}
)

func (m mountSpec) mount() error {
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return err
	}
	err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
	if err == unix.EBUSY {
		return nil // already mounted (the kernel mounts devtmpfs itself with CONFIG_DEVTMPFS_MOUNT)
	}
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
	}
	return nil
}

// openConsole makes fds 0-2 the console if the kernel could not open one
// for us (an initramfs without /dev/console), and returns the file to log to.
func openConsole() *os.File {
	if _, err := unix.FcntlInt(2, unix.F_GETFD, 0); err == nil {
		return os.Stderr
	}
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil
	}
	for i := 0; i < 3; i++ {
		if _, err := unix.FcntlInt(uintptr(i), unix.F_GETFD, 0); err != nil {
			unix.Dup3(fd, i, 0)
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
	return os.Stderr
}

// boot prepares the guest: filesystems, console, probe, modules, loopback.
// It returns the kernel command line.
func boot(log *logger) string {
	if err := procMount.mount(); err != nil {
		log.errorf("%v", err)
	}
	b, _ := os.ReadFile("/proc/cmdline")
	cmdline := strings.TrimSpace(string(b))
	words := splitCmdline(cmdline)
	if hasWord(words, protocol.ProbeCmdline) {
		// The accelerator probe: nothing else is wanted, and every
		// millisecond here is the host's wait.
		devMount.mount()
		log.out = openConsole()
		log.say(protocol.ProbeOK)
		powerOff()
	}
	if err := devMount.mount(); err != nil {
		log.errorf("%v", err)
	}
	log.out = openConsole()
	log.debug = hasWord(words, "skiff.debug=1")
	log.debugf("booting, cmdline %q", cmdline)

	for _, m := range bootMount {
		if m.fstype == "cgroup2" {
			// favordynmods (Linux 6.0) makes moving a process into a
			// cgroup cheap: without it each move waits for an RCU grace
			// period, ~20 ms under TCG, on every container's creation.
			fast := m
			fast.data = "favordynmods"
			if fast.mount() == nil {
				continue
			}
		}
		if err := m.mount(); err != nil {
			if m.fstype == "cgroup2" {
				log.debugf("no cgroup2: %v", err)
				continue
			}
			log.errorf("%v", err)
		}
	}
	container.PrepareCgroups()
	if err := loadModules(cmdline, log); err != nil {
		log.errorf("%v", err)
	}
	log.debugf("modules loaded")
	if err := leaveInitramfs(); err != nil {
		log.errorf("leave initramfs: %v", err)
	}
	if err := container.LoopbackUp(); err != nil {
		log.errorf("loopback: %v", err)
	}
	return cmdline
}

func hasWord(words []string, w string) bool {
	for _, x := range words {
		if x == w {
			return true
		}
	}
	return false
}

// leaveInitramfs moves the agent onto a tmpfs root when it runs from the
// initramfs: pivot_root(2), which every container needs, refuses a
// process whose root is the initial rootfs. The initramfs stays below,
// unreachable; the agent re-executes itself through /proc/self/exe, which
// does not need a path.
func leaveInitramfs() error {
	onRootfs, err := rootIsInitramfs()
	if err != nil || !onRootfs {
		return err
	}
	const newRoot = "/.root"
	if err := (mountSpec{"tmpfs", newRoot, "tmpfs", 0, "mode=0755"}).mount(); err != nil {
		return err
	}
	// Only top-level mounts move; those below them go along.
	for _, m := range []string{"/proc", "/sys", "/dev", "/run", "/tmp"} {
		if err := os.Mkdir(newRoot+m, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m, newRoot+m, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s: %w", m, err)
		}
	}
	keepGuestBin(newRoot)
	keepScratchModules(newRoot)
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(newRoot, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move new root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	return unix.Chdir("/")
}

// rootIsInitramfs reports whether / is the kernel's initial rootfs.
func rootIsInitramfs() (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// id parent major:minor root mountpoint opts ... - fstype source superopts
		fields := strings.Fields(s.Text())
		if len(fields) < 5 || fields[4] != "/" {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				return fields[i+1] == "rootfs", nil
			}
		}
	}
	return false, s.Err()
}

// powerOff ends the guest. PID 1 must never return.
func powerOff() {
	unix.Sync()
	err := unix.Reboot(offCmd())
	for {
		// Reboot failing leaves nothing sensible to do; exiting would
		// panic the kernel, so wait for the host to kill the VM.
		if err != nil {
			fmt.Fprintf(os.Stderr, "skiff-agent: power off: %v\n", err)
		}
		time.Sleep(time.Hour)
	}
}

// offCmd is how this guest ends its VM. A kernel without ACPI (the minimal
// kernel on microvm) has no way to power off: it would halt with QEMU
// still running. QEMU runs with -no-reboot, so a reboot ends the VM there.
func offCmd() int {
	if _, err := os.Stat("/sys/firmware/acpi"); err != nil {
		return unix.LINUX_REBOOT_CMD_RESTART
	}
	return unix.LINUX_REBOOT_CMD_POWER_OFF
}
