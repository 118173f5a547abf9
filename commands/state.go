package commands

import "github.com/urfave/cli/v2"

// State prints the OCI state of a container.
var State = &cli.Command{
	Name:      "state",
	Usage:     "output the state of a container (OCI state JSON)",
	ArgsUsage: "<container-id>",
	Description: `Where skiff differs from runc: "pid" is the host process standing for the
container's process (the shim, which exits with its status), not the
container's process itself, which lives in the guest. The status is computed
live from that process.`,
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
