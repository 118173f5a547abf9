package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// errTerminalDetached is runc's refusal, worded for skiff.
var errTerminalDetached = errors.New("cannot allocate tty if skiff will detach without setting console socket (--console-socket)")

// checkConsole refuses the combinations of terminal, console socket and
// foreground that runc refuses.
func checkConsole(terminal bool, consoleSocket string, foreground bool) error {
	switch {
	case terminal && consoleSocket == "" && !foreground:
		return errTerminalDetached
	case !terminal && consoleSocket != "":
		return errors.New("cannot use console socket if skiff will not allocate tty (process.terminal is false)")
	}
	return nil
}

// absConsoleSocket resolves a console socket path for a process (the shim)
// that may run elsewhere.
func absConsoleSocket(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("console socket %s: %w", p, err)
	}
	return abs, nil
}

// writePIDFile writes the PID atomically, as runc does: a temp file of a
// name nobody can guess, created exclusively, renamed over the path.
func writePIDFile(path string, pid int) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(abs), "."+filepath.Base(abs)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = fmt.Fprint(tmp, pid)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), abs)
	}
	if err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}
