package protocol

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
