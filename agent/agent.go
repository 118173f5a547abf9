// Package agent is the in-guest agent of skiff: PID 1 of the guest VM. It
// boots the guest's userspace (filesystems, kernel modules, loopback), serves
// the agent protocol (agentclient/protocol) on the virtio-serial channel, and
// creates and runs container processes through agent/container.
//
// It must never exit (PID 1 exiting panics the guest kernel) and must never
// panic on anything the host sends. It trusts nothing on the channel beyond
// the protocol's framing, and it reaps every process of the guest.
package agent

import (
	"os"
	"sync"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// Agent is the state of the guest: its containers and mounted shares.
type Agent struct {
	log    *logger
	reaper *reaper

	mu         sync.Mutex
	containers map[string]*ctr           // nil value: being created
	shares     map[string]protocol.Share // by guest path
	stopping   bool
}

// Main is the guest's init. It does not return.
func Main() {
	log := &logger{}
	if os.Getpid() != 1 {
		log.out = os.Stderr
		log.errorf("must run as PID 1 of the guest")
		os.Exit(1)
	}
	boot(log)
	a := &Agent{
		log:        log,
		reaper:     newReaper(),
		containers: map[string]*ctr{},
		shares:     map[string]protocol.Share{},
	}
	a.serveChannel()
}
