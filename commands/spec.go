package commands

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/sandbox/oci"
)

// Spec writes a default config.json, as `runc spec` does.
var Spec = &cli.Command{
	Name:  "spec",
	Usage: "create a new specification file (config.json)",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "path to the root of the bundle directory"},
		&cli.BoolFlag{Name: "rootless", Usage: "accepted for runc compatibility; the spec is the same"},
	},
	Action: func(c *cli.Context) error {
		path := filepath.Join(c.String("bundle"), "config.json")
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("file %s exists: remove it first", path)
		}
		b, err := json.MarshalIndent(oci.DefaultSpec(), "", "\t")
		if err != nil {
			return err
		}
		return os.WriteFile(path, append(b, '\n'), 0o666)
	},
}
