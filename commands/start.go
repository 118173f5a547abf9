package commands

import "github.com/urfave/cli/v2"

// Start lets a created container's process run.
var Start = &cli.Command{
	Name:      "start",
	Usage:     "start the process of a created container",
	ArgsUsage: "<container-id>",
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		return store(c).Start(c.Context, id)
	},
}
