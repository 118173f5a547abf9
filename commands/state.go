package commands

import "github.com/urfave/cli/v2"

// State prints the OCI state of a container.
var State = &cli.Command{
	Name:      "state",
	Usage:     "output the state of a container (OCI state JSON)",
	ArgsUsage: "<container-id>",
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		st, err := store(c).State(id)
		if err != nil {
			return err
		}
		return printJSON(st)
	},
}
