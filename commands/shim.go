package commands

import (
	"log/slog"
	"os"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/sandbox/shim"
	"github.com/skiff-oci/skiff/sandbox/state"
)

// Shim is internal: create starts it as the host process that stands for
// the container. File descriptor 3 is the pipe it reports readiness on.
var Shim = &cli.Command{
	Name:      "shim",
	Usage:     "internal: the host process standing for a container (started by create)",
	ArgsUsage: "<container-id>",
	Hidden:    true,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "console-socket", Usage: "where to send the console of a terminal container"},
		&cli.StringFlag{Name: "sandbox", Usage: "stand for a pod's container in the running sandbox of this ID"},
	},
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		rt := store(c)
		if c.String("log") == "" {
			// Its stderr is the container's: without --log, log beside the
			// state instead.
			if f, err := os.OpenFile(rt.ShimLog(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
				slog.SetDefault(slog.New(slog.NewTextHandler(f, nil)))
			}
		}
		if netnsErr != nil {
			slog.Warn("the shim stays in the host's network namespace", "error", netnsErr)
		}
		// Not inherited by QEMU: the create waiting on it would never see EOF.
		syscall.CloseOnExec(3)
		ready := os.NewFile(3, "ready")
		if sb := c.String("sandbox"); sb != "" {
			return ExitError{Status: rt.PodContainer(c.Context, sb, id, c.String("console-socket"), ready, forwardedSignals())}
		}
		return ExitError{Status: shim.Run(state.Root(rt.Root()), id, ready, shim.Options{ConsoleSocket: c.String("console-socket")})}
	},
}
