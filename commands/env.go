package commands

import (
	"fmt"
	"os"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/hostcheck"
)

// Env prints the configuration in force and every version involved, for
// bug reports.
var Env = &cli.Command{
	Name:  "env",
	Usage: "print the configuration in force and the versions of skiff, QEMU, guest kernel and agent",
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "json", Usage: "print JSON instead of TOML"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() > 0 {
			return fmt.Errorf("env: takes no arguments, got %q", c.Args().Slice())
		}
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		e := hostcheck.Environment(c.Context, cfg, c.String("root"), c.App.Version)
		if c.Bool("json") {
			return printJSON(e)
		}
		return toml.NewEncoder(os.Stdout).Encode(e)
	},
}
