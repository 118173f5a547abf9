package commands

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// Run creates and starts a container and, unless detached, waits for it,
// deletes it, and exits with its process's exit status.
var Run = &cli.Command{
	Name:      "run",
	Usage:     "create and run a container in its own VM",
	ArgsUsage: "<container-id>",
	Description: `Where skiff differs from runc: run boots the container's VM (or restores it
from a saved VM template) before the process starts, and exits with the
process's status (137 if the VM dies). The PID of --pid-file is the host
process standing for the container's process.`,
	Flags: append([]cli.Flag{
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the container's process"},
		&cli.BoolFlag{Name: "keep", Usage: "do not delete the container after it exits"},
	}, createFlags...),
	Action: func(c *cli.Context) error {
		created, err := create(c)
		if err != nil {
			return err
		}
		st := store(c)
		if err := st.Start(c.Context, created.ID); err != nil {
			created.RestoreTerminal()
			st.Delete(c.Context, created.ID, true)
			return err
		}
		if c.Bool("detach") {
			return nil
		}
		status := waitForward(created.Shim)
		created.RestoreTerminal()
		if !c.Bool("keep") {
			if err := st.Delete(c.Context, created.ID, true); err != nil {
				return err
			}
		}
		return ExitError{Status: status}
	},
}

// waitForward waits for the shim, passing on the signals this process
// receives (the shim forwards them into the guest), and returns its exit
// status.
func waitForward(shim *exec.Cmd) int {
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(ch)
	go func() {
		for sig := range ch {
			shim.Process.Signal(sig)
		}
	}()
	err := shim.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		return 255
	}
	return 0
}
