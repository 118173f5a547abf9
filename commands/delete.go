package commands

import "github.com/urfave/cli/v2"

// Delete removes a container and everything it holds on the host.
var Delete = &cli.Command{
	Name:      "delete",
	Usage:     "delete a container: its VM, its host process and its state",
	ArgsUsage: "<container-id>",
	Description: `Where skiff differs from runc: deleting stops the container's VM too; --force
also cleans up after a crashed shim or VM (QEMU, host mounts, taps, state).`,
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "delete even if it is running (its VM is killed)"},
	},
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		return store(c).Delete(c.Context, id, c.Bool("force"))
	},
}
