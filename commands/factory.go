package commands

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/internal/fspath"
	"github.com/skiff-oci/skiff/sandbox/factory"
)

// Factory manages VM templates: saved, booted guests that sandboxes are
// restored from instead of booting.
var Factory = &cli.Command{
	Name:  "factory",
	Usage: "manage VM templates (sandboxes start from a saved, booted guest)",
	Description: `With [factory] template = true (the default) the first sandbox of a
configuration builds its template and later ones are restored from it.
With [factory] cache = N, N sandboxes restored from the template wait in a
pool for create to take (a shim that takes one starts its replacement).
init builds the template now and fills the pool; status lists templates
and pooled VMs; destroy stops the waiting pooled VMs and removes the
templates (they are rebuilt on demand).`,
	Subcommands: []*cli.Command{
		{
			Name:  "init",
			Usage: "build the VM template of the current configuration and fill the pool ([factory] cache)",
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c)
				if err != nil {
					return err
				}
				f := newFactory(c, cfg)
				t, err := f.Init(c.Context)
				if err != nil {
					return err
				}
				fmt.Println(t.Dir)
				return f.Fill(c.Context)
			},
		},
		{
			Name:  "status",
			Usage: "list VM templates and pooled VMs",
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c)
				if err != nil {
					return err
				}
				f := newFactory(c, cfg)
				list, err := f.Templates()
				if err != nil {
					return err
				}
				fmt.Printf("templates: %v, in %s\n", cfg.Factory.Template, cfg.Factory.Dir)
				w := tabwriter.NewWriter(os.Stdout, 8, 1, 2, ' ', 0)
				fmt.Fprint(w, "KEY\tCREATED\tMEMORY\tVCPUS\tACCEL\tKERNEL\n")
				for _, t := range list {
					fmt.Fprintf(w, "%s\t%s\t%dM\t%d\t%s\t%s\n", t.Key, t.Created.Format(time.RFC3339), t.Memory, t.VCPUs, t.Accel, t.Kernel)
				}
				if err := w.Flush(); err != nil {
					return err
				}
				members := f.Pool()
				fmt.Printf("\npool: cache = %d, %d VM(s)\n", cfg.Factory.Cache, len(members))
				if len(members) == 0 {
					return nil
				}
				// A factory directory may hold the pools of several
				// configurations (another VM size, kernel...).
				mine := f.PoolKey(c.Context)
				fmt.Fprint(w, "MEMBER\tTEMPLATE\tCREATED\tSTATE\tQEMU PID\n")
				for _, m := range members {
					state := "filling"
					switch {
					case m.Sandbox != "":
						state = "taken by " + m.Sandbox
					case m.Ready && m.QEMUPID == 0:
						state = "dead"
					case m.Ready && m.Key != mine:
						state = "ready (another configuration)"
					case m.Ready:
						state = "ready"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\n", m.ID, m.Key, m.Created.Format(time.RFC3339), state, m.QEMUPID)
				}
				return w.Flush()
			},
		},
		{
			Name:   "fill",
			Usage:  "start pooled VMs until [factory] cache are waiting (run by the shim)",
			Hidden: true,
			Flags:  []cli.Flag{&cli.BoolFlag{Name: "config-stdin", Usage: "read the configuration, as JSON, from stdin"}},
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c)
				if err != nil {
					return err
				}
				if c.Bool("config-stdin") {
					b, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
					if err != nil {
						return fmt.Errorf("factory fill: read stdin: %w", err)
					}
					if cfg, err = factory.ParseFillConfig(b); err != nil {
						return err
					}
				}
				return newFactory(c, cfg).Refill(c.Context)
			},
		},
		{
			Name:  "destroy",
			Usage: "stop every waiting pooled VM and remove every VM template",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "pool", Usage: "only stop the waiting pooled VMs; keep the templates"}},
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c)
				if err != nil {
					return err
				}
				f := newFactory(c, cfg)
				if c.Bool("pool") {
					return f.DestroyPool()
				}
				return f.Destroy()
			},
		},
	},
}

// newFactory is the factory of cfg under the state root --root names.
func newFactory(c *cli.Context, cfg *config.Config) *factory.Factory {
	return factory.New(cfg, fspath.Canonical(c.String("root")), factory.QEMU)
}
