// Package seccomp builds and installs the small seccomp filter skiff
// stacks on the processes that serve the guest's files: it refuses, with
// EPERM, every system call that would give a file the set-user-ID or
// set-group-ID bit or make a device node, whatever else the process is
// allowed to do. The kernel applies it after the process's own filters
// (QEMU's -sandbox, say), so it only ever takes away.
//
// Only little-endian architectures whose system call numbers are listed
// here are covered (amd64, arm64); Supported says so.
package seccomp

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The bits no file served to a guest may carry, and the file types it may
// not create.
const (
	setIDBits = unix.S_ISUID | unix.S_ISGID
	// oTmpfile is O_TMPFILE without O_DIRECTORY: the bit that alone
	// marks an unnamed file being created.
	oTmpfile = unix.O_TMPFILE &^ unix.O_DIRECTORY
)

// Filter returns the program: the architecture check, then one block per
// system call that can create a set-ID file or a device node.
func Filter() ([]unix.SockFilter, error) {
	if !Supported() {
		return nil, fmt.Errorf("no seccomp filter for %s", runtime.GOARCH)
	}
	p := []unix.SockFilter{
		ld(offArch),
		jeq(auditArch, 1, 0),
		ret(unix.SECCOMP_RET_KILL_PROCESS),
		ld(offNr),
	}
	if x32Bit != 0 { // x32's calls carry this bit: not ours, refused whole
		p = append(p, jge(x32Bit, 0, 1), ret(unix.SECCOMP_RET_KILL_PROCESS))
	}
	for _, c := range calls() {
		var block []unix.SockFilter
		switch c.kind {
		case modeArg:
			block = denyBits(c.mode, setIDBits)
		case createArg:
			block = denyCreateBits(c.flags, c.mode)
		case mknodArg:
			block = denyDevice(c.mode)
		case refuse:
			block = []unix.SockFilter{ret(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))}
		}
		p = append(p, jeq(uint32(c.nr), 0, uint8(len(block))))
		p = append(p, block...)
	}
	return append(p, ret(unix.SECCOMP_RET_ALLOW)), nil
}

// Install sets no_new_privs and the filter on the calling thread. The
// caller must stay on that thread (runtime.LockOSThread) until it execs:
// the filter, like no_new_privs, belongs to the thread, and the program
// it execs inherits both.
func Install() error { return install(0) }

// InstallAllThreads is Install for every thread of the process (the
// kernel's TSYNC, which also gives them no_new_privs as the caller has
// it): for a Go program that goes on running, and whose children,
// forked from any thread, must inherit the filter.
func InstallAllThreads() error { return install(unix.SECCOMP_FILTER_FLAG_TSYNC) }

func install(flags uintptr) error {
	p, err := Filter()
	if err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	prog := unix.SockFprog{Len: uint16(len(p)), Filter: &p[0]}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return fmt.Errorf("install seccomp filter: %w", errno)
	}
	return nil
}

// What a system call's arguments are checked for.
const (
	modeArg   = iota // mode: no set-ID bits (chmod and friends)
	createArg        // flags and mode: no set-ID bits when creating (open)
	mknodArg         // mode: no character or block device
	refuse           // arguments the filter cannot see (openat2's struct)
)

// call is one checked system call; flags and mode are argument indexes.
type call struct {
	nr          int
	kind        int
	flags, mode int
}

// commonCalls are the calls every architecture has.
func commonCalls() []call {
	return []call{
		{nr: unix.SYS_FCHMOD, kind: modeArg, mode: 1},
		{nr: unix.SYS_FCHMODAT, kind: modeArg, mode: 2},
		{nr: sysFchmodat2, kind: modeArg, mode: 2},
		{nr: unix.SYS_MKDIRAT, kind: modeArg, mode: 2},
		{nr: unix.SYS_OPENAT, kind: createArg, flags: 2, mode: 3},
		{nr: unix.SYS_MKNODAT, kind: mknodArg, mode: 2},
		{nr: unix.SYS_OPENAT2, kind: refuse},
	}
}

// sysFchmodat2 (Linux 6.6) has the same number on every architecture.
const sysFchmodat2 = 452

// seccomp_data: nr, arch, then instruction pointer and six 64-bit
// arguments; on a little-endian machine an argument's low word is first.
const (
	offNr   = 0
	offArch = 4
)

func argLow(i int) uint32 { return uint32(16 + 8*i) }

func ld(off uint32) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
}

func jeq(k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: jt, Jf: jf, K: k}
}

func jge(k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, Jt: jt, Jf: jf, K: k}
}

func jset(k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, Jt: jt, Jf: jf, K: k}
}

func ret(k uint32) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k}
}

var (
	deny  = ret(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	allow = ret(unix.SECCOMP_RET_ALLOW)
)

// denyBits refuses the call if argument arg has any of bits.
func denyBits(arg int, bits uint32) []unix.SockFilter {
	return []unix.SockFilter{ld(argLow(arg)), jset(bits, 0, 1), deny, allow}
}

// denyCreateBits refuses a call that creates a file (O_CREAT or
// O_TMPFILE in argument flags) with set-ID bits in argument mode. The mode
// of a call that creates nothing is not looked at: it is not an argument
// then, just what the register held.
func denyCreateBits(flags, mode int) []unix.SockFilter {
	return []unix.SockFilter{
		ld(argLow(flags)),
		jset(unix.O_CREAT|oTmpfile, 0, 3),
		ld(argLow(mode)),
		jset(setIDBits, 0, 1),
		deny,
		allow,
	}
}

// denyDevice refuses a mknod whose mode makes a character or block
// device; FIFOs, sockets and regular files pass.
func denyDevice(mode int) []unix.SockFilter {
	return []unix.SockFilter{
		ld(argLow(mode)),
		{Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: unix.S_IFMT},
		jeq(unix.S_IFCHR, 1, 0),
		jeq(unix.S_IFBLK, 0, 1),
		deny,
		allow,
	}
}
