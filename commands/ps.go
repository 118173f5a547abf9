package commands

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/skiff-oci/skiff/internal/logtail"
	"github.com/urfave/cli/v2"
)

// Ps lists the processes of a container, as its guest sees them.
var Ps = &cli.Command{
	Name:      "ps",
	Usage:     "list the processes of a container (guest PIDs)",
	ArgsUsage: "<container-id>",
	Description: `Where skiff differs from runc: the PIDs are the guest's, not the host's, and
ps(1) options are not taken.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json (an array of PIDs, as runc prints)"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() < 1 {
			return fmt.Errorf("ps: a container ID is required")
		}
		if c.NArg() > 1 {
			// runc passes these to ps(1); the guest has none to pass them to.
			return fmt.Errorf("ps: ps options (%s) are not supported: the processes live in the guest", strings.Join(c.Args().Tail(), " "))
		}
		format := c.String("format")
		if format != "table" && format != "json" {
			return fmt.Errorf("ps: unknown --format %q: use table or json", format)
		}
		procs, err := store(c).Processes(c.Context, c.Args().First())
		if err != nil {
			return err
		}
		if format == "json" {
			pids := make([]int, 0, len(procs))
			for _, p := range procs {
				pids = append(pids, p.PID)
			}
			return json.NewEncoder(os.Stdout).Encode(pids)
		}
		w := tabwriter.NewWriter(os.Stdout, 5, 1, 2, ' ', 0)
		fmt.Fprint(w, "UID\tPID\tPPID\tCMD\n")
		for _, p := range procs {
			fmt.Fprintf(w, "%d\t%d\t%d\t%s\n", p.UID, p.PID, p.PPID, logtail.Sanitize(strings.Join(p.Args, " ")))
		}
		return w.Flush()
	},
}
