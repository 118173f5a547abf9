package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os/exec"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// OCI hooks run on the host, at the points of the runtime spec, with the
// container's state on stdin. The guest never runs them: they are the
// caller's host-side plumbing (network set-up, device injection, ...).

// defaultHookTimeout bounds a hook that sets no timeout of its own.
const defaultHookTimeout = 2 * time.Minute

// RunHooks runs hooks in order and stops at the first failure.
func RunHooks(kind string, hooks []specs.Hook, st *State) error {
	if len(hooks) == 0 {
		return nil
	}
	state, err := json.Marshal(st)
	if err != nil {
		return err
	}
	for i, h := range hooks {
		if err := runHook(h, state); err != nil {
			return fmt.Errorf("%s hook #%d (%s): %w", kind, i, h.Path, err)
		}
	}
	return nil
}

func runHook(h specs.Hook, state []byte) error {
	timeout := defaultHookTimeout
	if h.Timeout != nil {
		if *h.Timeout <= 0 {
			return fmt.Errorf("timeout %d must be positive", *h.Timeout)
		}
		timeout = time.Duration(*h.Timeout) * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	}
	cmd.Env = h.Env
	cmd.Stdin = bytes.NewReader(state)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("timed out after %v", timeout)
		}
		if out.Len() > 0 {
			return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out.Bytes()))
		}
		return err
	}
	return nil
}

// WarnHooks runs hooks whose failure the spec makes a warning (poststart,
// poststop): every hook runs, failures are logged.
func WarnHooks(kind string, hooks []specs.Hook, st *State) {
	for i, h := range hooks {
		if err := RunHooks(kind, []specs.Hook{h}, st); err != nil {
			slog.Warn("hook failed", "kind", kind, "index", i, "error", err)
		}
	}
}

// HooksOf returns a spec's hooks, never nil.
func HooksOf(spec *specs.Spec) *specs.Hooks {
	if spec == nil || spec.Hooks == nil {
		return &specs.Hooks{}
	}
	return spec.Hooks
}
