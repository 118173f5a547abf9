package protocol

import specs "github.com/opencontainers/runtime-spec/specs-go"

// Messages for sandboxes restored from a VM template.

// WaitingMessage is printed on the guest console once the agent has its
// port open and waits for a host: the moment a template can be saved.
const WaitingMessage = "skiff-agent: waiting for the host"

// MethodReseed is called first on a guest restored from a template: every
// clone starts with the template's clock and random state, which must not
// be shared between sandboxes (two clones would generate the same keys,
// UUIDs and TCP sequence numbers) or be hours stale.
const MethodReseed = "Reseed"

// ReseedRequest carries the host's time and fresh entropy.
type ReseedRequest struct {
	UnixNano int64  `json:"unixNano"`
	Entropy  []byte `json:"entropy"`
}

// MethodWarm is called on a pooled VM while it waits for its sandbox: the
// agent goes once through what creating a container does in the guest
// (mounting a share, decoding a spec, a cgroup), so that the guest code of
// that path is translated and cached (under TCG each VM translates guest
// code the first time it runs) before the sandbox comes. It changes
// nothing the sandbox will see. An agent without it says so; that is not
// an error for the caller.
const MethodWarm = "Warm"

// WarmRequest names a share to mount and unmount (at a scratch path: its
// GuestPath is ignored) and a spec like the ones that will come. With Run,
// the agent also runs a throwaway container of that spec (on the guest's
// own root, running the guest's busybox) through its zygote, then starts
// a new zygote: creating, starting and ending a container is then
// translated too. Only for a VM that waits in a pool: a template saves no
// translations, and must keep the zygote it was built with.
type WarmRequest struct {
	Share Share       `json:"share"`
	Spec  *specs.Spec `json:"spec"`
	Run   bool        `json:"run,omitempty"`
	// Scratch, for a pooled VM (whose disk is the one its sandbox will
	// have), mounts the scratch disk now, off the sandbox's start. Never
	// for a template: its disk is a placeholder clones replace.
	Scratch *Scratch `json:"scratch,omitempty"`
}

// WarmResponse says whether the throwaway container ran (Run, in a guest
// that has the busybox it runs).
type WarmResponse struct {
	Ran bool `json:"ran"`
}
