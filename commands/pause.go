package commands

import "github.com/urfave/cli/v2"

// Pause freezes every process of a container.
var Pause = &cli.Command{
	Name:      "pause",
	Usage:     "suspend all processes of a container (its cgroup in the guest is frozen)",
	ArgsUsage: "<container-id>",
	Description: `Where skiff differs from runc: the container's cgroup in the guest is frozen;
the VM itself keeps running.`,
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		return store(c).Pause(c.Context, id)
	},
}

// Resume thaws a paused container.
var Resume = &cli.Command{
	Name:      "resume",
	Usage:     "resume all processes of a paused container",
	ArgsUsage: "<container-id>",
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		return store(c).Resume(c.Context, id)
	},
}
