package commands

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/sandbox/oci"
)

// Kill sends a signal to the container's process.
var Kill = &cli.Command{
	Name:      "kill",
	Usage:     "send a signal (default TERM) to the container's process",
	ArgsUsage: "<container-id> [signal]",
	Description: `Where skiff differs from runc: the signal goes into the VM, to the
container's process in the guest (--all: every process of its guest cgroup);
the host process standing for it exits once it has ended.`,
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "send the signal to all processes of the container"},
	},
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		if c.NArg() > 2 {
			return fmt.Errorf("kill: too many arguments")
		}
		sig, err := oci.ParseSignal(c.Args().Get(1))
		if err != nil {
			return err
		}
		return store(c).Kill(c.Context, id, sig, c.Bool("all"))
	},
}
