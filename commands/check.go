package commands

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/hostcheck"
)

// Check reports, one line per requirement, whether this host can run skiff.
var Check = &cli.Command{
	Name:  "check",
	Usage: "check that this host has what skiff needs, and say how to fix what is missing",
	Description: `Checks QEMU, the accelerator (KVM proven by a test boot, or TCG and why),
vhost-vsock, virtiofsd, the guest kernel and initramfs, cgroups, the state
root (--root) and networking tools. Each line is pass, warn or fail; the
fix is printed under each warning or failure. Exits non-zero when a check
fails (with --strict, also when one warns).`,
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "json", Usage: "print the results as a JSON array"},
		&cli.BoolFlag{Name: "strict", Usage: "fail on warnings too"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() > 0 {
			return fmt.Errorf("check: takes no arguments, got %q", c.Args().Slice())
		}
		cfg, cfgErr := loadConfig(c)
		rs := hostcheck.Run(c.Context, hostcheck.Options{Config: cfg, ConfigErr: cfgErr, Root: c.String("root")})
		if c.Bool("json") {
			if err := printJSON(rs); err != nil {
				return err
			}
		} else if err := printChecks(rs); err != nil {
			return err
		}
		if hostcheck.Failed(rs, c.Bool("strict")) {
			// The results are the message; print no other.
			return ExitError{Status: 1}
		}
		return nil
	},
}

// printChecks prints a table; each fix goes on its own line under its
// check, indented to the DETAIL column.
func printChecks(rs []hostcheck.Result) error {
	width := len("CHECK")
	for _, r := range rs {
		width = max(width, len(r.Name))
	}
	indent := strings.Repeat(" ", len("STATUS")+2+width+2)
	var b strings.Builder
	fmt.Fprintf(&b, "%-6s  %-*s  %s\n", "STATUS", width, "CHECK", "DETAIL")
	for _, r := range rs {
		fmt.Fprintf(&b, "%-6s  %-*s  %s\n", r.Status, width, r.Name, r.Detail)
		if r.Fix != "" {
			fmt.Fprintf(&b, "%sfix: %s\n", indent, r.Fix)
		}
	}
	_, err := os.Stdout.WriteString(b.String())
	return err
}
