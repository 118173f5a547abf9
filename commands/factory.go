package commands

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/sandbox"
)

// Factory manages VM templates: saved, booted guests that sandboxes are
// restored from instead of booting.
var Factory = &cli.Command{
	Name:  "factory",
	Usage: "manage VM templates (sandboxes start from a saved, booted guest)",
	Description: `With [factory] template = true (the default) the first sandbox of a
configuration builds its template and later ones are restored from it.
init builds the template now; status lists templates; destroy removes them
(they are rebuilt on demand).`,
	Subcommands: []*cli.Command{
		{
			Name:  "init",
			Usage: "build the VM template of the current configuration",
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c)
				if err != nil {
					return err
				}
				t, err := sandbox.FactoryInit(c.Context, cfg, c.String("root"))
				if err != nil {
					return err
				}
				fmt.Println(t.Dir)
				return nil
			},
		},
		{
			Name:  "status",
			Usage: "list VM templates",
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c)
				if err != nil {
					return err
				}
				list, err := sandbox.Factory{Dir: cfg.Factory.Dir}.List()
				if err != nil {
					return err
				}
				fmt.Printf("templates: %v, in %s\n", cfg.Factory.Template, cfg.Factory.Dir)
				w := tabwriter.NewWriter(os.Stdout, 8, 1, 2, ' ', 0)
				fmt.Fprint(w, "KEY\tCREATED\tMEMORY\tVCPUS\tACCEL\tKERNEL\n")
				for _, t := range list {
					fmt.Fprintf(w, "%s\t%s\t%dM\t%d\t%s\t%s\n", t.Key, t.Created.Format(time.RFC3339), t.Memory, t.VCPUs, t.Accel, t.Kernel)
				}
				return w.Flush()
			},
		},
		{
			Name:  "destroy",
			Usage: "remove every VM template",
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c)
				if err != nil {
					return err
				}
				return sandbox.Factory{Dir: cfg.Factory.Dir}.Destroy()
			},
		},
	},
}
