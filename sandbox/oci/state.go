// Package oci holds the OCI runtime spec's definitions as skiff uses them:
// the bundle and its config.json, the default spec, the features document,
// the state document and its statuses, hooks, signal names. It is a leaf:
// it imports nothing of skiff's but the agent protocol (for the names the
// guest honours), so every other package may use it.
package oci

import "time"

// Version is the runtime-spec version skiff implements.
const Version = "1.2.0"

// Status is a container's status as the runtime spec names it.
type Status string

const (
	StatusCreating Status = "creating"
	StatusCreated  Status = "created"
	StatusRunning  Status = "running"
	StatusStopped  Status = "stopped"
	StatusPaused   Status = "paused"
)

// State is the state document of the runtime spec, as runc prints it and
// as hooks get it on stdin.
type State struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Status      Status            `json:"status"`
	PID         int               `json:"pid"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
}
