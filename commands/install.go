package commands

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/installer"
)

var installFlags = []cli.Flag{
	&cli.StringFlag{Name: "for", Required: true, Usage: "what to configure: podman, crio, containerd or kubernetes"},
	&cli.BoolFlag{Name: "dry-run", Usage: "print each file's path and full content instead of writing it"},
	&cli.StringFlag{Name: "prefix", Usage: "write below this directory instead of / (the host's root mounted elsewhere, or a test root)"},
	&cli.StringFlag{Name: "binary", Value: installer.DefaultBinary, Usage: "skiff's path as the runtime client will run it"},
}

// Install registers skiff as a runtime named "skiff" with a client.
var Install = &cli.Command{
	Name:  "install",
	Usage: "register skiff as runtime \"skiff\" with podman, CRI-O, containerd or Kubernetes",
	Description: `Writes what the client needs, and only that:
  podman      /etc/containers/containers.conf.d/50-skiff.conf: [engine.runtimes] skiff
  crio        /etc/crio/crio.conf.d/50-skiff.conf: [crio.runtime.runtimes.skiff],
              runtime_type "oci", runtime_root the state root (--root)
  containerd  /etc/containerd/config.toml (version 2 or 3): runtime "skiff" of type
              io.containerd.runc.v2 with BinaryName = skiff, appended between marker
              lines (a separate imported file would replace the CRI plugin's settings)
  kubernetes  /etc/skiff/runtimeclass.yaml: RuntimeClass "skiff" whose overhead.podFixed
              is the VM's memory (hypervisor.default_memory) + 256 MiB for QEMU and the
              shim, and 250m CPU per vCPU (hypervisor.default_vcpus)
Running it again changes nothing. A file that existed is copied to
FILE.skiff-backup before its first change; "skiff uninstall" puts it back.
Unlike runc, skiff needs its guest image (kernel + initramfs) on the host too:
"make install" puts it in /usr/local/share/skiff.`,
	Flags:  installFlags,
	Action: func(c *cli.Context) error { return runInstall(c, installer.Install) },
}

// Uninstall undoes Install.
var Uninstall = &cli.Command{
	Name:  "uninstall",
	Usage: "undo \"skiff install\": remove what it wrote, restore the backups it made",
	Description: `Removes the files install created and restores each FILE.skiff-backup
over the file install changed. A file changed again since install loses
only skiff's part, and its backup is left beside it.`,
	Flags:  installFlags,
	Action: func(c *cli.Context) error { return runInstall(c, installer.Uninstall) },
}

func runInstall(c *cli.Context, do func(installer.Target, installer.Options) (*installer.Result, error)) error {
	verb := c.Command.Name
	if c.NArg() > 0 {
		return fmt.Errorf("%s: takes no arguments, got %q", verb, c.Args().Slice())
	}
	t, err := installer.ParseTarget(c.String("for"))
	if err != nil {
		return fmt.Errorf("%s: --for: %w", verb, err)
	}
	opts := installer.Options{
		Prefix: c.String("prefix"),
		Binary: c.String("binary"),
		DryRun: c.Bool("dry-run"),
		Out:    os.Stdout,
	}
	if c.IsSet("root") {
		opts.StateRoot = c.String("root")
	}
	if t == installer.Kubernetes {
		if opts.Config, err = loadConfig(c); err != nil {
			return err
		}
	}
	r, err := do(t, opts)
	if r != nil && !opts.DryRun {
		for _, ch := range r.Changes {
			line := fmt.Sprintf("%-9s %s", ch.Action, ch.Path)
			if ch.Backup != "" && ch.Action == installer.Updated {
				line += " (backup: " + ch.Backup + ")"
			}
			if ch.Note != "" {
				line += " (" + ch.Note + ")"
			}
			fmt.Println(line)
		}
	}
	if err != nil {
		return err
	}
	if verb == "install" && len(r.Next) > 0 && !opts.DryRun {
		fmt.Println("next:\n  " + strings.Join(r.Next, "\n  "))
	}
	return nil
}
