package commands

import (
	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/sandbox"
)

// createFlags are shared by create and run.
var createFlags = []cli.Flag{
	&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Value: ".", Usage: "path to the root of the bundle directory"},
	&cli.StringFlag{Name: "pid-file", Usage: "file to write the PID of the process standing for the container"},
	&cli.StringFlag{Name: "console-socket", Usage: "unix socket to receive the console's pty master (terminal containers)"},
	&cli.IntFlag{Name: "preserve-fds", Usage: "pass N additional file descriptors to the container (accepted; not yet passed into the VM)"},
	&cli.BoolFlag{Name: "no-pivot", Usage: "accepted for runc compatibility; ignored (the guest always pivots)"},
	&cli.BoolFlag{Name: "no-new-keyring", Usage: "accepted for runc compatibility; ignored"},
}

// Create boots the container's VM and creates its process, stopped.
var Create = &cli.Command{
	Name:      "create",
	Usage:     "create a container in its own VM, ready to start",
	ArgsUsage: "<container-id>",
	Description: `Where skiff differs from runc: create boots the container's VM (or restores it
from a saved VM template, ~0.4 s under TCG; a cold boot takes ~2 s) and
returns once the container's process exists in the guest, stopped before its
first instruction. The PID written to --pid-file is a host process (the shim)
standing for the container's process: it relays stdio and exits with its
status (137 if the VM dies).`,
	Flags: createFlags,
	Action: func(c *cli.Context) error {
		_, err := create(c)
		return err
	},
}

func create(c *cli.Context) (*sandbox.Created, error) {
	id, err := oneID(c)
	if err != nil {
		return nil, err
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, err
	}
	args, err := shimArgs(c)
	if err != nil {
		return nil, err
	}
	return store(c).Create(c.Context, id, sandbox.CreateOptions{
		Bundle:   c.String("bundle"),
		PIDFile:  c.String("pid-file"),
		Config:   cfg,
		ShimArgs: args,
		// A terminal without a console socket is the caller's own, which
		// only a run in the foreground has.
		ConsoleSocket: c.String("console-socket"),
		Foreground:    c.Command.Name == "run" && !c.Bool("detach"),
	})
}
