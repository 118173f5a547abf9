// Command skiff is an OCI runtime with runc's command line that runs every
// container inside its own lightweight virtual machine.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/commands"
	"github.com/skiff-oci/skiff/internal/logtail"
	"github.com/skiff-oci/skiff/sandbox/state"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "0.1.0-dev"

func main() {
	app := &cli.App{
		Name:    "skiff",
		Usage:   "an OCI runtime that runs each container in its own VM",
		Version: version,
		Description: `skiff takes runc's command line: podman --runtime, CRI-O and containerd's
runc shim, and scripts written for runc work unchanged. Each container runs
inside a QEMU virtual machine with its own guest kernel. The PID that create
reports (and writes to --pid-file) is a host process standing for the
container's process: it relays stdio and exits with its exit status.

Where skiff differs from runc: create and run boot a VM (or restore one from
a saved VM template) before the container exists; state's "pid" is the host
process standing for the container, not a process of the container, and
the container is stopped once its process exited, while that host process
still stops the VM; kill's signal goes into the VM, to the container's
processes in the guest (right after start, once the program has a handler
for it); ps shows guest PIDs. debug-console (off unless enabled in the configuration) opens a
shell in the guest itself. Each verb's help says more.

Storage: the rootfs and bind mounts reach the guest over virtio-9p, or virtio-fs
(runtime.shared_fs) for a VM that boots cold; a rootfs that is a block device's
filesystem (devmapper, a loop mount) as a disk (storage.rootfs_disk). Scratch
mounts live on an ext4 disk inside the guest instead: the paths of the
annotation io.skiff.scratch (comma-separated) and of storage.scratch_paths;
/var/lib/containers, /var/lib/docker and /var/lib/buildkit in a privileged
container (a spec mount there is replaced); Kubernetes emptyDir volumes but
medium Memory ones. The disk is a sparse file scratch.img in the sandbox's
state directory, of storage.scratch_size (default 10G) or the annotation
io.skiff.scratch.size, never larger on the host (the guest gets ENOSPC),
removed with the sandbox.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Value: state.DefaultRootFor(), Usage: "root directory for container state ($XDG_RUNTIME_DIR/skiff when rootless)"},
			&cli.StringFlag{Name: "log", Usage: "log file (default: stderr)"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json"},
			&cli.BoolFlag{Name: "debug", Usage: "log debug messages"},
			&cli.StringFlag{Name: "config", Usage: "skiff configuration file (default /etc/skiff/config.toml if present)"},
			&cli.BoolFlag{Name: "systemd-cgroup", Usage: "accepted for runc compatibility; ignored"},
			&cli.StringFlag{Name: "criu", Usage: "accepted for runc compatibility; ignored", Hidden: true},
			&cli.StringFlag{Name: "rootless", Usage: "accepted for runc compatibility; ignored", Hidden: true},
		},
		Commands: []*cli.Command{
			commands.Spec,
			commands.Create,
			commands.Start,
			commands.Run,
			commands.State,
			commands.Kill,
			commands.Delete,
			commands.List,
			commands.Shim,
			commands.Exec,
			commands.ExecAttach,
			commands.Ps,
			commands.Pause,
			commands.Resume,
			commands.Check,
			commands.Env,
			commands.Install,
			commands.Uninstall,
			commands.Completion,
			commands.Man,
			commands.Factory,
			commands.Features,
			commands.Update,
			commands.Events,
			commands.DebugConsole,
		},
		Before: setupLogging,
		// Errors are printed once, below.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	err := app.Run(os.Args)
	var ee commands.ExitError
	if errors.As(err, &ee) && ee.Err == nil {
		os.Exit(ee.Status)
	}
	if err != nil {
		if logFile != "" {
			// containerd reads the last error of --log; podman shows stderr.
			slog.Error(err.Error())
		}
		// Errors may quote the guest (its agent's words, its console): shown,
		// never obeyed by the operator's terminal.
		fmt.Fprintf(os.Stderr, "skiff: %s\n", logtail.Sanitize(err.Error()))
		if errors.As(err, &ee) {
			os.Exit(ee.Status)
		}
		os.Exit(1)
	}
}

var logFile string

// setupLogging sends logs where runc would: --log, in --log-format. The
// JSON form uses lowercase levels, which containerd's runc shim parses for
// the last error.
func setupLogging(c *cli.Context) error {
	var w io.Writer = os.Stderr
	logFile = c.String("log")
	if logFile != "" {
		f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("open log file: %w", err)
		}
		w = f
	}
	if c.Bool("debug") {
		commands.LogLevel.Set(slog.LevelDebug)
	}
	opts := &slog.HandlerOptions{
		Level: &commands.LogLevel,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.LevelKey && len(groups) == 0 {
				return slog.String(slog.LevelKey, strings.ToLower(a.Value.String()))
			}
			return a
		},
	}
	var h slog.Handler
	switch c.String("log-format") {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text", "":
		h = slog.NewTextHandler(w, opts)
	default:
		return fmt.Errorf("unknown --log-format %q: use text or json", c.String("log-format"))
	}
	slog.SetDefault(slog.New(h))
	for _, f := range []string{"systemd-cgroup", "criu", "rootless"} {
		if c.IsSet(f) {
			slog.Debug("flag accepted for runc compatibility and ignored", "flag", f)
		}
	}
	return nil
}
