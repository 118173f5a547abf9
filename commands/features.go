package commands

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/sandbox/oci"
)

// Features prints the OCI features document.
var Features = &cli.Command{
	Name:  "features",
	Usage: "show what skiff supports (the OCI runtime features document, JSON)",
	Action: func(c *cli.Context) error {
		if c.NArg() > 0 {
			return fmt.Errorf("features: takes no arguments")
		}
		return printJSON(oci.Features())
	},
}
