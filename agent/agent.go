// Package agent is the in-guest agent of skiff: PID 1 of the guest VM. It
// boots the guest's userspace (filesystems, kernel modules, loopback), serves
// the agent protocol (agentclient/protocol) on the virtio-serial channel, and
// creates and runs container processes through agent/container.
//
// It must never exit (PID 1 exiting panics the guest kernel) and must never
// panic on anything the host sends. It trusts nothing on the channel beyond
// the protocol's framing, and it reaps every process of the guest.
//
// handlers.go is the whole protocol as the guest serves it. The package
// must not import host code (sandbox, hypervisor, agentclient): what it
// shares with the host lives in agentclient/protocol.
package agent

import (
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agent/container"
	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// Agent is the state of the guest: its containers and mounted shares.
type Agent struct {
	log    *logger
	reaper *reaper

	mu         sync.Mutex
	containers map[string]*ctr          // nil value: being created
	shares     map[string]*mountedShare // by guest path
	stopping   bool
	// scratchMounted: the sandbox's scratch disk is mounted at
	// protocol.ScratchDir (the first container that asked mounted it).
	scratchMounted bool
	// networked: ConfigureNetwork gave the guest's NICs to the sandbox,
	// and containers share the guest's network namespace. Until then a
	// NIC is only a VM template's unused slot, and containers get a
	// namespace of their own (loopback only, as runc gives).
	networked bool

	// zygote is the next container's init, started at boot; nil once
	// used (by the guest's first container that does not join a pod's
	// namespaces) or if it could not start.
	zygoteMu sync.Mutex
	zygote   *container.Zygote
	noZygote bool // skiff.zygote=0
}

// zygoteWait bounds the wait for a zygote to come up: it needs as long as
// the agent's own start, ~60 ms under TCG.
const zygoteWait = 5 * time.Second

// waitZygote returns once the zygote waits for work (or was dropped): a
// VM template saved after it holds a zygote ready in every clone.
func (a *Agent) waitZygote() {
	a.zygoteMu.Lock()
	defer a.zygoteMu.Unlock()
	if a.zygote == nil {
		return
	}
	if err := a.zygote.WaitReady(zygoteWait); err != nil {
		a.log.errorf("%v", err)
		a.zygote = nil
	}
}

// takeZygote hands out the ready zygote, if any; putZygote takes back
// one that was not used.
func (a *Agent) takeZygote() *container.Zygote {
	a.waitZygote()
	a.zygoteMu.Lock()
	defer a.zygoteMu.Unlock()
	z := a.zygote
	a.zygote = nil
	return z
}

func (a *Agent) putZygote(z *container.Zygote) {
	if z == nil || z.Spent() {
		return
	}
	a.zygoteMu.Lock()
	defer a.zygoteMu.Unlock()
	if a.zygote == nil {
		a.zygote = z
	} else {
		z.Discard()
	}
}

// Main is the guest's init. It does not return.
func Main() {
	log := &logger{}
	if os.Getpid() != 1 {
		log.out = os.Stderr
		log.errorf("must run as PID 1 of the guest")
		os.Exit(1)
	}
	cmdline := boot(log)
	a := &Agent{
		log:        log,
		reaper:     newReaper(),
		containers: map[string]*ctr{},
		shares:     map[string]*mountedShare{},
	}
	// skiff.zygote=0 on the kernel command line: every container init is
	// forked when its container is created (for comparison and debugging).
	if hasWord(splitCmdline(cmdline), "skiff.zygote=0") {
		a.noZygote = true
		log.debugf("no zygote (skiff.zygote=0)")
	}
	if err := a.startZygote(); err != nil {
		log.errorf("%v", err)
	}
	a.serveChannel()
}

// startZygote starts a zygote if the guest has none (none yet, or its
// zygote went to a throwaway container) and zygotes are on. It does not
// wait for it: waitZygote does.
func (a *Agent) startZygote() error {
	a.zygoteMu.Lock()
	defer a.zygoteMu.Unlock()
	if a.zygote != nil || a.noZygote {
		return nil
	}
	z, err := container.StartZygote(a.reaper)
	if err != nil {
		return err
	}
	a.zygote = z
	return nil
}

// ownNetwork tells whether a container created now gets a network
// namespace of its own: the sandbox has no networking (yet) and the guest
// has a NIC anyway, a VM template's unused slot.
func (a *Agent) ownNetwork() bool {
	nics := container.GuestHasNICs() // sysfs: not under a.mu
	a.mu.Lock()
	defer a.mu.Unlock()
	return nics && !a.networked
}

// newContainer creates a container with stdio on the child's ends given,
// its init taken from the waiting zygote when there is one: the one place
// a container gets the zygote (container.New decides whether to use it).
// sandbox, when not nil, is the pod's container whose namespaces it joins.
func (a *Agent) newContainer(id string, spec *specs.Spec, sandbox *container.Container, stdio [3]*os.File) (*container.Container, error) {
	z := a.takeZygote()
	defer a.putZygote(z)
	return container.New(id, spec, a.ownNetwork(), sandbox, stdio[0], stdio[1], stdio[2], a.reaper, z)
}

// shutdown kills every container, lets the guest's TCP sockets send what
// they hold, syncs and unmounts the disks; once the response is written
// the guest powers off. What the host does not need is skipped: each step
// is guest code a clone runs for the first time, slow under TCG.
func (a *Agent) shutdown(*protocol.ShutdownRequest) (func(net.Conn), error) {
	a.mu.Lock()
	a.stopping = true
	var all []*ctr
	for _, c := range a.containers {
		if c != nil {
			all = append(all, c)
		}
	}
	a.mu.Unlock()
	for _, c := range all {
		c.c.Signal(unix.SIGKILL, true)
		c.c.Signal(unix.SIGKILL, false)
	}
	timeout := time.After(2 * time.Second)
	for _, c := range all {
		select {
		case <-c.c.Done():
		case <-timeout:
		}
	}
	a.mu.Lock()
	networked := a.networked
	a.mu.Unlock()
	// Without the sandbox's NICs every TCP peer is in this guest (a
	// container's own namespace, or loopback), and goes with it.
	if networked {
		drainTCP(2 * time.Second)
	}
	unix.Sync()
	a.unmountDisks()
	return func(st net.Conn) {
		// Give the response a moment to reach the host (it closes its end
		// when it has read it), then power off.
		st.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		io.Copy(io.Discard, st)
		powerOff()
	}, nil
}
