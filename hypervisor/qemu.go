package hypervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/internal/logtail"
	"github.com/skiff-oci/skiff/internal/unixsock"
	"golang.org/x/sys/unix"
)

// seccompPolicy is QEMU's own seccomp filter (-sandbox), installed before
// the guest runs its first instruction: a guest that takes QEMU over
// still cannot run a program (spawn), change its identity
// (elevateprivileges), use obsolete system calls, or change scheduling and
// resource limits (resourcecontrol). Every option QEMU 7.2 has is on:
// migrations to and from files go through descriptors skiff opens
// (template.go), since spawn=deny forbids exec: URIs.
const seccompPolicy = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

// tagPattern keeps 9p mount tags to what every guest kernel and QEMU
// version accepts, and to what needs no quoting on either side.
var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

type qemu struct {
	cfg  Config
	arch archDefaults

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed once the reaper has waited for cmd
	err  error         // cmd's exit error, valid after done
	// adopted is the PID of a VM another process started (AdoptQEMU);
	// done is then closed when it exits.
	adopted int
	// owner is this process's end of the guard's socket: the VM lives
	// as long as it is open (guard.go). Nil for a VM adopted without a
	// guard socket.
	owner net.Conn
	// vmm is the PID of the QEMU this process started (cmd is its
	// guard), vmmFD a pidfd of it (-1 if the kernel has none).
	vmm   int
	vmmFD int
	// helper is the 9p proxy helper when VMs run jailed (Confined):
	// shares are then served by it, not by QEMU. Empty otherwise.
	helper string
	// virtiofsd serves the shares of a VM sharing over virtio-fs.
	virtiofsd string
}

// NewQEMU validates cfg and returns a QEMU backend for it. An empty Binary
// means the architecture's QEMU, and a name without a slash is looked up
// in PATH; an empty Machine means the architecture's default machine.
// Relative paths are made absolute, so that the VMM's command line (and
// KillVMM's PID-reuse check) do not depend on the working directory.
func NewQEMU(cfg Config) (Hypervisor, error) {
	q, err := newQEMU(cfg)
	if err != nil {
		return nil, err
	}
	return q, nil
}

func newQEMU(cfg Config) (*qemu, error) {
	arch, ok := hostArch()
	if !ok {
		return nil, fmt.Errorf("qemu: no machine defaults for architecture %s", runtime.GOARCH)
	}
	if cfg.Binary == "" {
		cfg.Binary = arch.binary
	}
	if !strings.Contains(cfg.Binary, "/") {
		p, err := exec.LookPath(cfg.Binary)
		if err != nil {
			return nil, fmt.Errorf("qemu: %s not found in PATH (install QEMU or set the binary path): %w", cfg.Binary, err)
		}
		cfg.Binary = p
	}
	if cfg.Machine == "" {
		cfg.Machine = arch.machine
	}
	if machineType(cfg.Machine) == "microvm" {
		if n := virtioDevices(cfg); n > microvmTransports(cfg.Machine) {
			// More devices than microvm has transports for: the
			// architecture's PCI machine instead (guest kernels that
			// boot on microvm have virtio-pci too).
			cfg.Machine = arch.machine
		} else {
			arch.bus = "device"
			arch.cmdline = append(arch.cmdline[:len(arch.cmdline):len(arch.cmdline)], arch.microvmCmdline...)
		}
	}
	if err := validate(&cfg); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	q := &qemu{cfg: cfg, arch: arch}
	if Confined() {
		q.helper = ProxyHelper()
	}
	if cfg.SharedFS == FSVirtio {
		if err := VirtioFS(); err != nil {
			return nil, fmt.Errorf("qemu: %w", err)
		}
		q.virtiofsd = Virtiofsd()
	}
	return q, nil
}

// virtioDevices counts the VM's virtio devices: the agent's serial port,
// one per share, one per NIC, one per disk.
func virtioDevices(cfg Config) int {
	return 1 + len(cfg.Shares) + len(cfg.NetDevices) + len(cfg.Disks)
}

// validate checks cfg and makes its paths absolute.
func validate(cfg *Config) error {
	if cfg.Name == "" {
		return errors.New("name is empty")
	}
	if err := checkFile("binary", cfg.Binary, true); err != nil {
		return err
	}
	if err := checkFile("kernel", cfg.Kernel, false); err != nil {
		return err
	}
	if err := checkFile("initrd", cfg.Initrd, false); err != nil {
		return err
	}
	switch cfg.Accel {
	case AccelKVM, AccelTCG:
	case AccelAuto, "":
		return fmt.Errorf("accel %q is not resolved: call ResolveAccel and set kvm or tcg", cfg.Accel)
	default:
		return fmt.Errorf("accel %q is unknown (want kvm or tcg)", cfg.Accel)
	}
	if cfg.VCPUs < 1 {
		return fmt.Errorf("vcpus is %d, need at least 1", cfg.VCPUs)
	}
	if cfg.MemoryMiB < 64 {
		return fmt.Errorf("memory is %d MiB, need at least 64", cfg.MemoryMiB)
	}
	for _, p := range cfg.KernelParams {
		if p == "" || strings.ContainsAny(p, " \t\n") {
			return fmt.Errorf("kernel parameter %q must be one non-empty word", p)
		}
	}
	paths := []struct {
		field  string
		p      *string
		socket bool
	}{
		{"agent socket", &cfg.AgentSocket, true},
		{"QMP socket", &cfg.QMPSocket, true},
		{"console log", &cfg.ConsoleLog, false},
		{"stderr log", &cfg.StderrLog, false},
		{"pid file", &cfg.PIDFile, false},
	}
	if cfg.GuardSocket != "" {
		paths = append(paths, struct {
			field  string
			p      *string
			socket bool
		}{"guard socket", &cfg.GuardSocket, true})
	}
	// Sockets may have paths of any length: skiff binds them itself
	// (internal/unixsock) and QEMU gets them by descriptor.
	for _, f := range paths {
		if err := absPath(f.field, f.p); err != nil {
			return err
		}
	}
	if err := validateNet(cfg); err != nil {
		return err
	}
	if err := validateDisks(cfg); err != nil {
		return err
	}
	if cfg.MemoryFile != "" {
		if err := absPath("memory file", &cfg.MemoryFile); err != nil {
			return err
		}
	}
	switch cfg.SharedFS {
	case "", FS9P:
	case FSVirtio:
		if cfg.MemoryFile != "" || cfg.Incoming {
			return errors.New("virtio-fs needs the guest's RAM shared with virtiofsd: a VM template or its clone cannot have it (9p serves those)")
		}
	default:
		return fmt.Errorf("shared filesystem %q: want %s or %s", cfg.SharedFS, FS9P, FSVirtio)
	}
	seen := map[string]bool{}
	for i := range cfg.Shares {
		s := &cfg.Shares[i]
		if !tagPattern.MatchString(s.Tag) {
			return fmt.Errorf("share tag %q must be 1-64 characters of A-Z a-z 0-9 _ . -", s.Tag)
		}
		if seen[s.Tag] {
			return fmt.Errorf("share tag %q is used twice", s.Tag)
		}
		seen[s.Tag] = true
		if err := absPath("share "+s.Tag, &s.HostPath); err != nil {
			return err
		}
		if fi, err := os.Stat(s.HostPath); err != nil {
			return fmt.Errorf("share %s: %w", s.Tag, err)
		} else if !fi.IsDir() {
			return fmt.Errorf("share %s: %s is not a directory", s.Tag, s.HostPath)
		}
	}
	return nil
}

// checkFile fails unless path names a regular file we can read (and
// execute, for the VMM binary).
func checkFile(field, path string, exe bool) error {
	if path == "" {
		return fmt.Errorf("%s path is empty", field)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s %s is not a regular file", field, path)
	}
	mode := uint32(4) // R_OK
	if exe {
		mode = 1 // X_OK
	}
	if err := syscall.Access(path, mode); err != nil {
		what := "readable"
		if exe {
			what = "executable"
		}
		return fmt.Errorf("%s %s is not %s: %w", field, path, what, err)
	}
	return nil
}

// absPath makes *p absolute and refuses what QEMU's option syntax cannot
// carry: commas are escaped by doubling, but a newline or NUL cannot be.
func absPath(field string, p *string) error {
	if *p == "" {
		return fmt.Errorf("%s path is empty", field)
	}
	if strings.ContainsAny(*p, "\x00\n") {
		return fmt.Errorf("%s path %q contains a newline or NUL byte, which QEMU options cannot express", field, *p)
	}
	a, err := filepath.Abs(*p)
	if err != nil {
		return fmt.Errorf("%s path %s: %w", field, *p, err)
	}
	*p = a
	return nil
}

// optValue escapes a value for QEMU's "key=value,key=value" option syntax,
// where a literal comma is written as two.
func optValue(s string) string {
	return strings.ReplaceAll(s, ",", ",,")
}

// machineArg is the -machine value before its accelerator: the configured
// machine with the devices nobody uses turned off.
func machineArg(machine string) string {
	if lean := leanOptions(machine); len(lean) > 0 {
		return machine + "," + strings.Join(lean, ",")
	}
	return machine
}

// args is the VMM command line (without argv[0]). It is a pure function of
// the validated config.
func (q *qemu) args() []string {
	c := q.cfg
	dev := func(name string) string { return name + "-" + q.arch.bus }
	cpu := "max"
	if c.Accel == AccelKVM {
		cpu = "host"
	}
	cmdline := append([]string{"console=" + q.arch.console}, q.arch.cmdline...)
	cmdline = append(cmdline, c.KernelParams...)

	memBackend, memMachine := q.memoryArgs()
	a := append(memBackend,
		"-name", optValue(c.Name),
		"-machine", machineArg(c.Machine)+",accel="+string(c.Accel)+memMachine,
		"-cpu", cpu,
		"-m", strconv.Itoa(c.MemoryMiB)+"M",
		"-smp", strconv.Itoa(c.VCPUs),
		"-nographic", "-nodefaults", "-no-user-config", "-no-reboot",
		"-sandbox", seccompPolicy,
		// The console goes to the guard, which keeps its file bounded.
		"-chardev", "socket,id=con,fd="+strconv.Itoa(consoleFD(c.NetDevices)),
		"-serial", "chardev:con",
		"-chardev", "socket,id=agent,fd="+strconv.Itoa(agentFD(c.NetDevices))+",server=on,wait=off",
		"-device", dev("virtio-serial")+",id=vser0",
		"-device", "virtserialport,chardev=agent,name="+protocol.PortName,
	)
	if bootsKernel(c) {
		a = append(a, "-kernel", c.Kernel, "-initrd", c.Initrd, "-append", strings.Join(cmdline, " "))
	}
	if hasVMGenID(c.Machine) {
		// guid=auto: a fresh GUID per QEMU process, so per clone.
		a = append(a, "-device", "vmgenid,id=vmgenid0,guid=auto")
	}
	a = append(a, hotplugArgs(c.Machine)...)
	a = append(a, q.incomingArgs()...)
	if c.SharedFS == FSVirtio {
		a = append(a, virtioFSArgs(c, q.arch.bus)...)
	} else {
		a = append(a, q.ninePArgs()...)
	}
	a = append(a, netArgs(c.NetDevices, q.arch.bus)...)
	a = append(a, diskArgs(c.Disks, q.arch.bus, q.blockFD())...)
	return append(a,
		"-chardev", "socket,id=qmp,fd="+strconv.Itoa(qmpFD(c.NetDevices))+",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-pidfile", c.PIDFile,
	)
}

// bootsKernel tells whether QEMU is given the kernel and initramfs. A q35
// clone of a template is not: its RAM holds the booted guest already, and
// loading them (~75 MiB read) was ~15 ms of its QEMU's start. microvm keeps
// them: without a kernel it would look for firmware that boots one.
func bootsKernel(c Config) bool {
	return !c.Incoming || machineType(c.Machine) == "microvm"
}

// blockFD is the first descriptor of the block devices the guard hands
// QEMU, after the file servers' sockets if there are any.
func (q *qemu) blockFD() int {
	n := 0
	if q.helper != "" {
		n = len(q.cfg.Shares)
	}
	return shareFD(q.cfg.NetDevices, n)
}

// ninePArgs are the devices of the shares over virtio-9p: served by QEMU
// itself, or by the proxy helper (fsjail.go) when QEMU is jailed.
func (q *qemu) ninePArgs() []string {
	c := q.cfg
	dev := func(name string) string { return name + "-" + q.arch.bus }
	var a []string
	for i, s := range c.Shares {
		id := "fs" + strconv.Itoa(i)
		// multidevs=remap: a share may span host filesystems (bind
		// mounts below it), and their inode numbers collide; remapped,
		// no two files in the guest share one.
		fsdev := "local,id=" + id + ",path=" + optValue(s.HostPath) + ",security_model=none,multidevs=remap"
		if q.helper != "" {
			// Served out of process (fsjail.go). The proxy backend has
			// no multidevs: a share spanning host filesystems may show
			// two files with one inode number (cache=mmap never
			// merges them into one inode; hard-link heuristics of
			// cp -a, tar and du can be fooled).
			fsdev = "proxy,id=" + id + ",sock_fd=" + strconv.Itoa(shareFD(c.NetDevices, i))
		}
		if s.ReadOnly {
			fsdev += ",readonly=on"
		}
		a = append(a, "-fsdev", fsdev,
			"-device", dev("virtio-9p")+",fsdev="+id+",mount_tag="+s.Tag)
	}
	return a
}

// Start launches QEMU in a new session, so that the VM survives the
// caller's terminal and its signals, and returns once the process exists.
// ctx only bounds the launch: cancelling it later does not stop the VM.
func (q *qemu) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start qemu: %w", err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cmd != nil {
		return errors.New("start qemu: already started")
	}
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("start qemu: %w", err)
	}
	defer stdin.Close()
	logf, err := os.OpenFile(q.cfg.StderrLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("start qemu: open stderr log: %w", err)
	}
	defer logf.Close() // the child holds its own copy

	// The guard's end of the owner socket is an fd after the taps; this
	// process holds the other end until it exits (guard.go).
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("start qemu: owner socket: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "owner"), os.NewFile(uintptr(pair[1]), "guard")
	defer theirs.Close()
	owner, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return fmt.Errorf("start qemu: owner socket: %w", err)
	}
	taps := netFiles(q.cfg.NetDevices)
	listeners, err := listenSockets(q.cfg.AgentSocket, q.cfg.QMPSocket)
	if err != nil {
		owner.Close()
		return fmt.Errorf("start qemu: %w", err)
	}
	defer closeFiles(listeners)
	// The guard is this very binary (its init runs guard.go's main):
	// /proc/self/exe still names it if it was replaced or removed since.
	if err := q.prepareFiles(); err != nil {
		owner.Close()
		return fmt.Errorf("start qemu: %w", err)
	}
	gargs, err := guardArgs(q.cfg, len(taps), q.plan())
	if err != nil {
		owner.Close()
		return fmt.Errorf("start qemu: %w", err)
	}
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: append(gargs, q.args()...)}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, logf, logf
	cmd.ExtraFiles = append(append(taps, theirs), listeners...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		owner.Close()
		return fmt.Errorf("start qemu's guard: %w", err)
	}
	theirs.Close()
	pid, err := guardHello(ctx, owner)
	if err != nil {
		owner.Close()
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("start qemu %s: %w%s", q.cfg.Binary, err, logTail(q.cfg.StderrLog))
	}
	q.cmd, q.owner, q.vmm, q.vmmFD = cmd, owner, pid, -1
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		q.vmmFD = fd
	}
	q.done = make(chan struct{})
	// The reaper is the one owner of cmd.Wait, so that Wait and Stop can
	// both observe the exit, and no zombie is left if nobody calls Wait.
	// The guard exits with QEMU's status, after QEMU.
	go func() {
		err := cmd.Wait()
		if err != nil {
			err = fmt.Errorf("qemu exited: %w%s", err, logTail(q.cfg.StderrLog))
		}
		q.err = err
		owner.Close()
		if q.vmmFD >= 0 {
			// A guard killed with its QEMU may go first: the VM is
			// gone only once QEMU is.
			pollGone(q.vmmFD, killWait)
			unix.Close(q.vmmFD)
		}
		close(q.done)
	}()
	return nil
}

// guardStartTimeout bounds the wait for the guard's word when ctx has no
// deadline: starting a process is quick whatever the guest.
const guardStartTimeout = 30 * time.Second

// guardHello waits for the guard to say that QEMU runs, and its PID.
func guardHello(ctx context.Context, c net.Conn) (int, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(guardStartTimeout)
	}
	c.SetReadDeadline(dl)
	defer c.SetReadDeadline(time.Time{})
	// One byte at a time: nothing after the line may be consumed.
	return readGuardHello(bufio.NewReaderSize(oneByteReader{c}, 16))
}

// oneByteReader reads at most one byte per call.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), 1)]) }

// killStarted SIGKILLs the QEMU this process started and its guard.
func (q *qemu) killStarted() error {
	if q.vmmFD >= 0 {
		unix.PidfdSendSignal(q.vmmFD, unix.SIGKILL, nil, 0)
	}
	if err := q.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill qemu's guard %d: %w", q.cmd.Process.Pid, err)
	}
	return nil
}

// PID is the VMM's PID. For a VM started by another process (this one
// never called Start) it is the PID in the pidfile if that still names this
// VM's QEMU, else 0.
func (q *qemu) PID() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cmd != nil {
		return q.vmm
	}
	if q.adopted != 0 {
		return q.adopted
	}
	pid, err := readVMMPID(q.cfg.PIDFile)
	if err != nil {
		return 0
	}
	return pid
}

// Wait waits for the VMM started by this process to exit. A non-zero exit
// is an error carrying the end of the stderr log.
func (q *qemu) Wait() error {
	q.mu.Lock()
	done := q.done
	q.mu.Unlock()
	if done == nil {
		return errors.New("wait qemu: not started by this process")
	}
	<-done
	return q.err
}

// Stop asks QEMU to quit over QMP and kills it if it is still there after
// timeout. It works from the process that started the VM and from any other
// process that has the same Config (it then finds the VMM by its pidfile).
func (q *qemu) Stop(ctx context.Context, timeout time.Duration) error {
	q.mu.Lock()
	done := q.done
	q.mu.Unlock()
	if done == nil {
		return q.stopForeign(ctx, timeout)
	}
	if q.adopted != 0 {
		return q.stopAdopted(ctx, timeout)
	}
	select {
	case <-done:
		return nil
	default:
	}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	quitted := q.goQuit(qctx)
	select {
	case <-done:
	case <-qctx.Done():
	}
	cancel()
	<-quitted
	select {
	case <-done:
		return nil
	default:
	}
	// Graceful quit failed or took too long; SIGKILL cannot be refused.
	if err := q.killStarted(); err != nil {
		return fmt.Errorf("stop qemu: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("stop qemu: pid %d still running %v after SIGKILL", q.vmm, killWait)
	}
}

// goQuit sends QMP quit in the background (the VMM may exit before it
// answers, or never answer) and returns a channel closed when it is done;
// cancelling ctx ends it. Errors only mean the caller escalates to SIGKILL.
func (q *qemu) goQuit(ctx context.Context) <-chan struct{} {
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		c, err := DialQMP(ctx, q.cfg.QMPSocket)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.Quit(ctx)
	}()
	return finished
}

// stopForeign stops a VM this process did not start, found by its pidfile.
func (q *qemu) stopForeign(ctx context.Context, timeout time.Duration) error {
	pid, err := readVMMPID(q.cfg.PIDFile)
	if err != nil {
		if errors.Is(err, errNotRunning) {
			return nil
		}
		return fmt.Errorf("stop qemu: %w", err)
	}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	quitted := q.goQuit(qctx)
	gone := waitGone(qctx, pid)
	cancel()
	<-quitted
	if gone {
		return nil
	}
	if err := KillVMM(q.cfg.PIDFile); err != nil {
		return fmt.Errorf("stop qemu: %w", err)
	}
	return nil
}

// logTail returns the last lines of the VMM's stderr log, formatted to be
// appended to an error, so that "exit status 1" says why.
func logTail(path string) string {
	s := logtail.Lines(path, 8)
	if s == "" {
		return ""
	}
	return ": " + strings.ReplaceAll(s, "\n", "; ")
}

// pollGone waits up to timeout for the process of pidfd fd to exit.
func pollGone(fd int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms <= 0 {
			return
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if n > 0 || (err != nil && err != unix.EINTR) {
			return
		}
	}
}

// listenSockets binds the listening sockets QEMU serves (the agent
// channel, QMP) at paths of any length, and returns them as files for
// QEMU to inherit (agentFD, qmpFD). A socket left by a previous VM of the
// same files goes first.
func listenSockets(paths ...string) ([]*os.File, error) {
	var files []*os.File
	for _, p := range paths {
		os.Remove(p)
		ln, err := unixsock.Listen(p)
		if err != nil {
			closeFiles(files)
			return nil, fmt.Errorf("listen on %s: %w", p, err)
		}
		f, err := ln.File()
		ln.Close()
		if err != nil {
			closeFiles(files)
			return nil, fmt.Errorf("listen on %s: %w", p, err)
		}
		files = append(files, f)
	}
	return files, nil
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
