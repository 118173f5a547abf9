package hypervisor

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/skiff-oci/skiff/internal/seccomp"
	"github.com/skiff-oci/skiff/internal/unixsock"

	"golang.org/x/sys/unix"
)

// The guard: every QEMU runs as the child of a small process of its own,
// this package's code in the skiff binary re-executed (guardArgv0). It
// exists for what QEMU cannot do itself:
//
//   - die with its owner. QEMU gets PR_SET_PDEATHSIG from the guard, and
//     the guard holds a socket whose other end its owner (the process that
//     started the VM, or the one that adopted it from the pool) keeps open
//     for as long as it lives: the kernel closes it when the owner dies, by
//     SIGKILL or otherwise, and the guard then kills QEMU. A pooled VM
//     (Config.GuardSocket) outlives the filler that started it and waits
//     for a shim to bind it on that socket; from then it dies with that
//     shim.
//   - keep what the guest writes bounded. The serial console and QEMU's
//     own stderr reach the host through the guard, which keeps only the
//     last ringMax bytes of each in its file: a guest that floods its
//     console fills no host filesystem.
//
// The guard is tiny and does no parsing of guest data beyond copying it.

// guardArgv0 is argv[0] of a guard: a binary that imports this package
// runs as one when started under that name (see init).
const guardArgv0 = "skiff-vmm-guard"

// ringMax bounds the console and stderr files the guard writes.
const ringMax = 1 << 20

// Guard protocol on the owner's socket: the guard writes "pid N\n" once
// QEMU runs (or "error: ...\n" and exits); an adopter that connects to
// GuardSocket reads "bound\n" once it owns the VM. The owner never writes:
// only its end closing means anything.
const (
	guardPID   = "pid "
	guardError = "error: "
	guardBound = "bound"
)

func init() {
	if filepath.Base(os.Args[0]) == guardArgv0 {
		os.Exit(runGuard(os.Args[1:]))
	}
}

// guardArgs is the guard's command line before QEMU's.
func guardArgs(c Config, taps int, p *guardPlan) ([]string, error) {
	a := []string{guardArgv0, "-taps", strconv.Itoa(taps), "-console", c.ConsoleLog, "-log", c.StderrLog}
	if c.GuardSocket != "" {
		a = append(a, "-listen", c.GuardSocket)
	}
	if p != nil {
		b, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		a = append(a, "-plan", string(b))
	}
	if devs := blockDevices(c); len(devs) > 0 {
		b, err := json.Marshal(devs)
		if err != nil {
			return nil, err
		}
		a = append(a, "-blocks", string(b))
	}
	return append(a, "--", c.Binary), nil
}

// guardPlan is how the guard confines a VM (jail.go, fsjail.go): nil when
// it does not (Confined is false).
type guardPlan struct {
	Jail   jailSpec // the guard adds the VM's identity
	Helper string
	// Virtiofsd, if set, serves the shares over virtio-fs (virtiofs.go)
	// instead of Helper over 9p.
	Virtiofsd string
	Shares    []Share
	KVMGID    int // -1: no KVM
}

// plan is q's guardPlan, nil if VMs are not jailed here.
func (q *qemu) plan() *guardPlan {
	if q.helper == "" {
		return nil
	}
	p := &guardPlan{
		Jail:      jailSpec{Binds: jailBinds(q.cfg), PIDFile: q.cfg.PIDFile},
		Helper:    q.helper,
		Virtiofsd: q.virtiofsd,
		Shares:    q.cfg.Shares,
		KVMGID:    -1,
	}
	if q.cfg.Accel == AccelKVM {
		var st unix.Stat_t
		if unix.Stat("/dev/kvm", &st) == nil {
			p.KVMGID = int(st.Gid)
		}
	}
	return p
}

// prepareFiles lets a jailed QEMU open the files it writes: its memory
// file and its disks' images belong to vmGroup, which every jailed VM is
// in (see vmid.go for why a template's memory file is opened read-write);
// only its own are in its jail.
func (q *qemu) prepareFiles() error {
	if q.helper == "" {
		return nil
	}
	for _, d := range q.cfg.Disks {
		if d.Block {
			continue // opened by the guard (openBlockDevices)
		}
		if err := os.Chown(d.Path, -1, vmGroup); err != nil {
			return fmt.Errorf("disk %s: %w", d.ID, err)
		}
		if err := os.Chmod(d.Path, 0o660); err != nil {
			return fmt.Errorf("disk %s: %w", d.ID, err)
		}
	}
	return q.prepareMemoryFile()
}

// prepareMemoryFile: a template's file is made here, as QEMU cannot create
// it in its jail.
func (q *qemu) prepareMemoryFile() error {
	if q.cfg.MemoryFile == "" {
		return nil
	}
	flags := os.O_RDWR
	if q.cfg.MemoryShared {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(q.cfg.MemoryFile, flags, 0o660)
	if err != nil {
		return fmt.Errorf("memory file: %w", err)
	}
	defer f.Close()
	if err := f.Chown(-1, vmGroup); err != nil {
		return fmt.Errorf("memory file: %w", err)
	}
	if err := f.Chmod(0o660); err != nil {
		return fmt.Errorf("memory file: %w", err)
	}
	if q.cfg.MemoryShared {
		// QEMU sizes only a file it created itself: mapped at size 0,
		// the guest's first touch of its RAM would be a SIGBUS.
		if err := f.Truncate(int64(q.cfg.MemoryMiB) << 20); err != nil {
			return fmt.Errorf("memory file: %w", err)
		}
	}
	return nil
}

// runGuard is the guard's main. Its fds: 0 /dev/null, 1 and 2 the VMM's
// log (for the guard's own last words), 3.. the taps, then the owner's
// socket, then the listening sockets of the agent channel and QMP, which
// go on to QEMU after its console (agentFD, qmpFD).
func runGuard(args []string) int {
	fs := flag.NewFlagSet(guardArgv0, flag.ContinueOnError)
	taps := fs.Int("taps", 0, "tap fds inherited at 3, 4, ...")
	console := fs.String("console", "", "file the guest console goes to")
	logPath := fs.String("log", "", "file QEMU's stdout and stderr go to")
	listen := fs.String("listen", "", "socket an adopter binds the VM on")
	planJSON := fs.String("plan", "", "how to confine the VM (guardPlan)")
	blocksJSON := fs.String("blocks", "", "block devices to open for QEMU (blockDevice list)")
	if err := fs.Parse(args); err != nil || fs.NArg() < 1 {
		fmt.Fprintf(os.Stderr, "%s: bad arguments %q\n", guardArgv0, args)
		return 2
	}
	owner, err := net.FileConn(os.NewFile(uintptr(3+*taps), "owner"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: owner socket: %v\n", guardArgv0, err)
		return 2
	}
	g := &guard{owner: owner}
	if *planJSON != "" {
		g.plan = new(guardPlan)
		if err := json.Unmarshal([]byte(*planJSON), g.plan); err != nil {
			fmt.Fprintf(owner, "%sbad plan: %v\n", guardError, err)
			return 2
		}
	}
	if *blocksJSON != "" {
		if err := json.Unmarshal([]byte(*blocksJSON), &g.blocks); err != nil {
			fmt.Fprintf(owner, "%sbad block devices: %v\n", guardError, err)
			return 2
		}
	}
	if err := g.start(fs.Args(), *taps, *console, *logPath, *listen); err != nil {
		if g.ln != nil {
			g.ln.Close()
			os.Remove(*listen)
		}
		fmt.Fprintf(owner, "%s%v\n", guardError, err)
		return 1
	}
	fmt.Fprintf(owner, "%s%d\n", guardPID, g.cmd.Process.Pid)
	g.watchFileServers()
	go g.watch()
	return g.wait()
}

type guard struct {
	plan   *guardPlan // nil: QEMU runs unconfined
	blocks []blockDevice
	id     *vmID // the jailed VM's identity, held until the guard exits
	fs     []*exec.Cmd
	// fsDone is closed once every file server exited; stopping says
	// the guard is stopping them itself.
	fsDone   chan struct{}
	stopping atomic.Bool
	// logw writes to QEMU's log, after what QEMU wrote (nil if it could
	// not be opened).
	logw   *os.File
	owner  net.Conn
	ln     *net.UnixListener
	cmd    *exec.Cmd
	copied chan struct{} // one value per finished copier
}

// start starts QEMU with the console socket and the log pipe, and opens
// the adopters' socket first if there is one: the VM is only announced
// once an adopter can find it.
func (g *guard) start(argv []string, taps int, console, logPath, listen string) error {
	// The VM must die with the guard however the guard ends, so QEMU is
	// started with a parent-death signal. The kernel sends it when the
	// thread that forked exits, not the process: this goroutine keeps
	// that thread (main's, locked by the runtime during init) for good.
	runtime.LockOSThread()
	if listen != "" {
		os.Remove(listen) // a previous guard's, dead: the member is ours
		ln, err := unixsock.Listen(listen)
		if err != nil {
			return fmt.Errorf("listen for an adopter: %w", err)
		}
		g.ln = ln
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("console socket: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(pair[0]), "console"), os.NewFile(uintptr(pair[1]), "console")
	defer theirs.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		mine.Close()
		return fmt.Errorf("log pipe: %w", err)
	}
	defer pw.Close()
	var shareEnds []*os.File
	if g.plan != nil {
		if shareEnds, err = g.startFileServers(pw); err != nil {
			mine.Close()
			pr.Close()
			return err
		}
	}
	blockFiles, err := openBlockDevices(g.blocks)
	if err != nil {
		mine.Close()
		pr.Close()
		closeFiles(shareEnds)
		return err
	}
	// QEMU's descriptors after QMP's: shareFD, then blockFD.
	passed := append(shareEnds, blockFiles...)
	cmd, err := g.command(argv)
	if err != nil {
		mine.Close()
		pr.Close()
		closeFiles(passed)
		return err
	}
	for i := 0; i < taps; i++ {
		cmd.ExtraFiles = append(cmd.ExtraFiles, os.NewFile(uintptr(3+i), "tap"))
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, theirs) // consoleFD(taps)
	for i := 1; i <= 2; i++ {                       // agentFD, qmpFD
		cmd.ExtraFiles = append(cmd.ExtraFiles, os.NewFile(uintptr(3+taps+i), "listener"))
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, passed...)
	cmd.Stdout, cmd.Stderr = pw, pw
	jailErr, err := g.jailed(cmd, argv)
	if err == nil {
		err = cmd.Start()
	}
	if err == nil && jailErr != nil {
		err = jailErr()
	}
	if err != nil {
		mine.Close()
		pr.Close()
		closeFiles(passed)
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	if g.plan != nil {
		// QEMU's own pidfile is in its jail; the host's is written
		// here, with the PID the jail keeps when it execs QEMU.
		if err := writeFileAtomic(g.plan.Jail.PIDFile, strconv.Itoa(cmd.Process.Pid)+"\n"); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			mine.Close()
			pr.Close()
			return fmt.Errorf("pidfile: %w", err)
		}
	}
	for i, f := range cmd.ExtraFiles {
		if i < taps || i > taps {
			f.Close() // QEMU has them; their owner is QEMU alone
		}
	}
	// The guard's own words about the VM go through the log pipe too:
	// the copier owns the log file's offset.
	if fd, err := unix.FcntlInt(pw.Fd(), unix.F_DUPFD_CLOEXEC, 0); err == nil {
		g.logw = os.NewFile(uintptr(fd), "log")
	}
	g.cmd = cmd
	g.copied = make(chan struct{}, 2)
	go g.copy(mine, console, false)
	go g.copy(pr, logPath, true)
	return nil
}

// startFileServers takes the VM's identity and starts its shares' file
// servers; it returns QEMU's ends of their sockets. The guard takes the
// file servers' seccomp filter (and no_new_privs) first, for itself and
// all it starts: it makes no set-ID file or device either, and a writable
// share's server then needs no jail process of its own (one Go start
// less per share, on every sandbox's start).
func (g *guard) startFileServers(log *os.File) ([]*os.File, error) {
	if err := seccomp.InstallAllThreads(); err != nil {
		return nil, err
	}
	id, err := takeVMID()
	if err != nil {
		return nil, err
	}
	g.id = id
	ends, cmds, err := startFileServers(g.plan, log)
	if err != nil {
		return nil, err
	}
	g.fs = cmds
	return ends, nil
}

// watchFileServers stops the VM when one of its file servers exits while
// it runs: the guest's requests to that share would otherwise wait for
// ever (nobody answers a virtio-fs request, and QEMU 7.2 cannot reconnect
// a vhost-user-fs device to a new server), and a VM without its files is
// as lost as one whose QEMU died. Kata stops the sandbox too.
func (g *guard) watchFileServers() {
	g.fsDone = make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range g.fs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Wait()
			if g.stopping.Load() {
				return
			}
			if g.logw != nil {
				fmt.Fprintf(g.logw, "%s: the file server of share %s exited (%v): stopping the VM\n", guardArgv0, g.plan.Shares[i].Tag, err)
			}
			g.cmd.Process.Signal(syscall.SIGKILL)
		}()
	}
	go func() {
		wg.Wait()
		close(g.fsDone)
	}()
}

// stopFileServers kills the file servers watchFileServers watches and
// waits for them.
func (g *guard) stopFileServers() {
	g.stopping.Store(true)
	for _, c := range g.fs {
		c.Process.Kill()
	}
	if g.fsDone != nil {
		<-g.fsDone
	}
}

// command is QEMU's command: QEMU itself, or when confined the jail that
// becomes it (jail.go; see jailed), in a mount namespace of its own.
func (g *guard) command(argv []string) (*exec.Cmd, error) {
	if g.plan == nil {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		return cmd, nil
	}
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: argv}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Cloneflags: syscall.CLONE_NEWNS}
	return cmd, nil
}

// jailed gives a jailed cmd its spec, the last of its ExtraFiles; the
// function it returns, called once cmd started, waits for the jail to
// exec QEMU and returns why it did not. Nil for QEMU unjailed.
func (g *guard) jailed(cmd *exec.Cmd, argv []string) (func() error, error) {
	if g.plan == nil {
		return nil, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	spec := g.plan.Jail
	spec.UID, spec.GID = g.id.uid, g.id.uid
	spec.Groups = []int{vmGroup}
	if g.plan.KVMGID >= 0 {
		spec.Groups = append(spec.Groups, g.plan.KVMGID)
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, w)
	spec.ErrFD = 2 + len(cmd.ExtraFiles)
	b, err := json.Marshal(spec)
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	cmd.Env = append(os.Environ(), jailEnv+"="+string(b))
	return func() error {
		w.Close()
		defer r.Close()
		msg, _ := io.ReadAll(io.LimitReader(r, 4096))
		if len(msg) == 0 {
			return nil
		}
		cmd.Wait()
		return errors.New(strings.TrimSpace(string(msg)))
	}, nil
}

// writeFileAtomic replaces path with data: a reader sees the old file or
// the new one, never a part.
func writeFileAtomic(path, data string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pid-*")
	if err != nil {
		return err
	}
	_, err = tmp.WriteString(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// copy drains r into a ring file at path until r ends (QEMU exited). The
// console starts empty, as QEMU's file chardev did; the log keeps what
// earlier VMs of the sandbox wrote (up to the bound), as it did when
// opened for appending.
func (g *guard) copy(r io.ReadCloser, path string, keep bool) {
	defer func() { g.copied <- struct{}{} }()
	defer r.Close()
	flags := os.O_RDWR | os.O_CREATE
	if !keep {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o640)
	var size int64
	if err == nil {
		size, err = f.Seek(0, io.SeekEnd)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", guardArgv0, err)
		io.Copy(io.Discard, r) // QEMU must not block on a full pipe
		return
	}
	defer f.Close()
	io.Copy(&ringFile{f: f, max: ringMax, size: size}, r)
}

// watch kills QEMU once its owner is gone. A VM with an adopters' socket
// outlives the process that started it: it waits there for its next (and
// last) owner, who may come while the starter still runs (a filler goes
// on filling the pool); from then only the adopter's end counts.
func (g *guard) watch() {
	if g.ln == nil {
		awaitClose(g.owner)
		g.cmd.Process.Signal(syscall.SIGKILL)
		return
	}
	go func() {
		awaitClose(g.owner)
		g.owner.Close()
	}()
	conn, err := g.adopter()
	if err != nil {
		// Nobody can take the VM over any more; it waits to be
		// stopped by its pidfile, as a pooled VM always could be.
		fmt.Fprintf(os.Stderr, "%s: %v\n", guardArgv0, err)
		return
	}
	g.owner.Close()
	awaitClose(conn)
	g.cmd.Process.Signal(syscall.SIGKILL)
}

// adopter waits for the process that takes the VM over, and returns its
// connection once told it is bound. Only a process of the guard's own user
// may bind it (the socket is in a private directory too).
func (g *guard) adopter() (net.Conn, error) {
	defer os.Remove(g.ln.Addr().String())
	defer g.ln.Close()
	for {
		conn, err := g.ln.AcceptUnix()
		if err != nil {
			return nil, fmt.Errorf("wait for an adopter: %w", err)
		}
		if cred, err := peerCred(conn); err != nil || int(cred.Uid) != os.Geteuid() {
			conn.Close()
			continue
		}
		if _, err := fmt.Fprintf(conn, "%s\n", guardBound); err != nil {
			conn.Close()
			continue
		}
		return conn, nil
	}
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if err == nil {
		err = cerr
	}
	return cred, err
}

// awaitClose returns when the peer of c has closed it (or died). Anything
// it writes is ignored.
func awaitClose(c net.Conn) {
	io.Copy(io.Discard, c)
}

// wait reaps QEMU, lets the copiers finish what QEMU wrote last, and
// returns QEMU's exit status; a QEMU killed by a signal gets the guard
// killed by the same one, so that the guard's parent sees what QEMU did.
func (g *guard) wait() int {
	err := g.cmd.Wait()
	g.stopFileServers()
	if g.logw != nil {
		g.logw.Close() // the log's copier ends once every writer did
	}
	if g.plan != nil {
		if b, rerr := os.ReadFile(g.plan.Jail.PIDFile); rerr == nil && strings.TrimSpace(string(b)) == strconv.Itoa(g.cmd.Process.Pid) {
			os.Remove(g.plan.Jail.PIDFile)
		}
	}
	<-g.copied
	<-g.copied
	if g.ln != nil {
		os.Remove(g.ln.Addr().String())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			signal.Reset(ws.Signal())
			syscall.Kill(os.Getpid(), ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}

// readGuardHello reads the guard's first line: QEMU's PID, or why QEMU
// could not start.
func readGuardHello(r *bufio.Reader) (int, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("no word from the VMM's guard: %w", err)
	}
	line = strings.TrimSuffix(line, "\n")
	if msg, ok := strings.CutPrefix(line, guardError); ok {
		return 0, errors.New(msg)
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(line, guardPID))
	if !strings.HasPrefix(line, guardPID) || err != nil || pid <= 0 {
		return 0, fmt.Errorf("the VMM's guard said %q", line)
	}
	return pid, nil
}

// ringFile is a file that keeps only the last bytes written to it: when a
// write would take it past max, its last max/2 bytes (the write included)
// move to its start. Readers (logtail) read its end, so they see the
// latest output whatever came before.
type ringFile struct {
	f    *os.File
	max  int64
	size int64
}

func (r *ringFile) Write(p []byte) (int, error) {
	n := len(p)
	keep := r.max / 2
	if int64(len(p)) > keep {
		p = p[int64(len(p))-keep:]
	}
	if r.size+int64(len(p)) > r.max {
		old := keep - int64(len(p))
		buf := make([]byte, old)
		if _, err := r.f.ReadAt(buf, r.size-old); err != nil && err != io.EOF {
			return 0, err
		}
		if _, err := r.f.WriteAt(buf, 0); err != nil {
			return 0, err
		}
		if err := r.f.Truncate(old); err != nil {
			return 0, err
		}
		r.size = old
	}
	if _, err := r.f.WriteAt(p, r.size); err != nil {
		return 0, err
	}
	r.size += int64(len(p))
	return n, nil
}
