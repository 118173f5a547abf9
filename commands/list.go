package commands

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/sandbox/oci"
)

// List prints the containers under --root.
var List = &cli.Command{
	Name:  "list",
	Usage: "list containers",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the container IDs"},
	},
	Action: func(c *cli.Context) error {
		list, err := store(c).List()
		if err != nil {
			return err
		}
		switch {
		case c.Bool("quiet"):
			for _, s := range list {
				fmt.Println(s.ID)
			}
			return nil
		case c.String("format") == "json":
			if list == nil {
				list = []*oci.State{}
			}
			return printJSON(list)
		case c.String("format") == "table":
			w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
			fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
			for _, s := range list {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.PID, s.Status, s.Bundle, s.Created.Format(time.RFC3339Nano), "root")
			}
			return w.Flush()
		default:
			return fmt.Errorf("list: unknown --format %q: use table or json", c.String("format"))
		}
	},
}
