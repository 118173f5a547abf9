// Package commands holds one file per verb of skiff's command line. A
// command reads its flags, calls one function of package sandbox and
// prints the result; no VM or protocol logic lives here.
package commands

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/sandbox"
)

// store is the runtime of the state root named by --root.
func store(c *cli.Context) *sandbox.Runtime {
	return sandbox.New(c.String("root"))
}

// LogLevel is the level of the default logger; --debug sets it to debug,
// otherwise runtime.log_level of the configuration does.
var LogLevel slog.LevelVar

// loadConfig reads --config (or the default file) with defaults.
func loadConfig(c *cli.Context) (*config.Config, error) {
	cfg, err := config.Load(c.String("config"))
	if err != nil {
		return nil, err
	}
	if !c.Bool("debug") {
		LogLevel.UnmarshalText([]byte(cfg.Runtime.LogLevel))
	}
	return cfg, nil
}

// shimArgs re-invoke this binary with the global flags that matter to the
// shim, which outlives the verb that starts it.
func shimArgs(c *cli.Context) ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	args := []string{exe, "--root", c.String("root")}
	if l := c.String("log"); l != "" {
		args = append(args, "--log", l)
	}
	args = append(args, "--log-format", c.String("log-format"))
	if c.Bool("debug") {
		args = append(args, "--debug")
	}
	return args, nil
}

// oneID returns the single container ID argument a verb takes.
func oneID(c *cli.Context) (string, error) {
	if c.NArg() < 1 {
		return "", fmt.Errorf("%s: a container ID is required", c.Command.Name)
	}
	if c.NArg() > 1 && c.Command.Name != "kill" {
		return "", fmt.Errorf("%s: takes exactly one container ID, got %d arguments", c.Command.Name, c.NArg())
	}
	return c.Args().First(), nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ExitError carries an exit status: run exits with its container's
// status. With Err set it is a failure to report with that status (exec
// fails with 255, as runc's does) rather than a silent exit.
type ExitError struct {
	Status int
	Err    error
}

func (e ExitError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return fmt.Sprintf("exit status %d", e.Status)
}
