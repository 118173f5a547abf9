package commands

import (
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/sandbox"
)

// Exec runs a new process inside a created or running container.
var Exec = &cli.Command{
	Name:      "exec",
	Usage:     "execute a new process inside the container",
	ArgsUsage: "<container-id> <command> [command options]",
	Description: `Where skiff differs from runc: the process runs in the guest, in the
container's namespaces and cgroup. --pid-file gets the PID of a host process
standing for it (exec itself; with --detach, a helper that exits with the
process's status). Descriptors beyond stdio (--preserve-fds) do not reach
the VM.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "console-socket", Usage: "unix socket to receive the pty master of the process's terminal"},
		&cli.StringFlag{Name: "cwd", Usage: "current working directory in the container"},
		// Two flags, not an alias: urfave/cli refuses a slice flag given
		// under both of its names, which runc (and its callers) allow.
		&cli.StringSliceFlag{Name: "env", Usage: "set an environment variable (KEY=VALUE); also -e"},
		&cli.StringSliceFlag{Name: "e", Hidden: true},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a pseudo-TTY"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "UID[:GID] to run as"},
		&cli.Int64SliceFlag{Name: "additional-gids", Aliases: []string{"g"}, Usage: "additional GIDs"},
		&cli.StringFlag{Name: "process", Aliases: []string{"p"}, Usage: "path to a process.json (the whole process; other process flags are ignored)"},
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the process; the shim keeps relaying its stdio"},
		&cli.StringFlag{Name: "pid-file", Usage: "file to write the PID of the host process standing for the exec'd one"},
		&cli.StringSliceFlag{Name: "cap", Aliases: []string{"c"}, Usage: "add a capability to the process"},
		&cli.BoolFlag{Name: "no-new-privs", Usage: "set no_new_privs on the process"},
		&cli.IntFlag{Name: "preserve-fds", Usage: "accepted for runc compatibility; descriptors are not passed into the VM"},
		&cli.StringFlag{Name: "apparmor", Usage: "accepted for runc compatibility; ignored", Hidden: true},
		&cli.StringFlag{Name: "process-label", Usage: "accepted for runc compatibility; ignored", Hidden: true},
		&cli.BoolFlag{Name: "ignore-paused", Usage: "accepted for runc compatibility; ignored", Hidden: true},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() < 1 {
			return ExitError{Status: 255, Err: errors.New("exec: a container ID is required")}
		}
		id := c.Args().First()
		var err error
		o := sandbox.ExecOptions{
			ProcessFile:    c.String("process"),
			Args:           c.Args().Tail(),
			Env:            append(c.StringSlice("env"), c.StringSlice("e")...),
			Cwd:            c.String("cwd"),
			User:           c.String("user"),
			AdditionalGids: c.Int64Slice("additional-gids"),
			Tty:            c.Bool("tty"),
			Caps:           c.StringSlice("cap"),
			Detach:         c.Bool("detach"),
			PIDFile:        c.String("pid-file"),
			ConsoleSocket:  c.String("console-socket"),
			Stdin:          os.Stdin,
			Stdout:         os.Stdout,
			Stderr:         os.Stderr,
		}
		if c.IsSet("no-new-privs") {
			v := c.Bool("no-new-privs")
			o.NoNewPrivs = &v
		}
		if o.HelperArgs, err = shimArgs(c); err != nil {
			return ExitError{Status: 255, Err: err}
		}
		o.Signals = forwardedSignals()
		status, err := store(c).Exec(c.Context, id, o)
		if err != nil {
			return ExitError{Status: 255, Err: err}
		}
		return ExitError{Status: status}
	},
}

// forwardedSignals are the signals an attached exec passes on to its
// process, as runc's does.
func forwardedSignals() <-chan os.Signal {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	return sigs
}

// ExecAttach is internal: exec --detach leaves it behind as the host
// process standing for the exec'd one (its PID goes to --pid-file). File
// descriptor 3 carries the request, 4 its report.
var ExecAttach = &cli.Command{
	Name:      "exec-attach",
	Usage:     "internal: the host process standing for a detached exec",
	ArgsUsage: "<container-id>",
	Hidden:    true,
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		if c.String("log") == "" {
			// Its stderr is the process's: log beside the state instead,
			// as the shim does.
			if f, err := os.OpenFile(store(c).ShimLog(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
				slog.SetDefault(slog.New(slog.NewTextHandler(f, nil)))
			}
		}
		status, err := store(c).ExecHelper(c.Context, id, forwardedSignals())
		if err != nil {
			slog.Error("detached exec", "id", id, "error", err)
			return ExitError{Status: 255}
		}
		return ExitError{Status: status}
	},
}
