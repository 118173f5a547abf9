package commands

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/sandbox"
)

// DebugConsole opens a shell in a container's VM, outside the container.
var DebugConsole = &cli.Command{
	Name:      "debug-console",
	Usage:     "open a shell in the container's VM itself (not in the container), for operators",
	ArgsUsage: "<container-id>",
	Description: `Runs /bin/sh (busybox) as root in the guest's own root filesystem and
namespaces: PID 1 is the agent, and every container of the sandbox is seen
from the outside. A terminal on stdin gives the shell a terminal in the
guest; otherwise commands are read from stdin. Exits with the shell's status.
Not in runc. Refused unless debug_console = true in the [runtime] section of
the configuration (--config).`,
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		status, err := store(c).DebugConsole(c.Context, id, sandbox.DebugConsoleOptions{
			Enabled:      cfg.Runtime.DebugConsole,
			ConfigSource: cfg.Source,
			Stdin:        os.Stdin,
			Stdout:       os.Stdout,
			Stderr:       os.Stderr,
			Signals:      forwardedSignals(),
		})
		if err != nil {
			return err
		}
		return ExitError{Status: status}
	},
}
