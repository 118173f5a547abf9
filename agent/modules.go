package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const modulesDir = "/lib/modules"

// parseModulesOrder returns the module file names listed in modules.order,
// one per line, in order; blank lines and # comments are skipped.
func parseModulesOrder(data string) []string {
	var names []string
	for _, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		names = append(names, line)
	}
	return names
}

// moduleName is the kernel's name for a module file: base name without the
// .ko[.xz|.zst|.gz] suffix, dashes as underscores.
func moduleName(file string) string {
	base := filepath.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// splitCmdline splits a kernel command line into words the way the kernel
// does: on spaces, with double quotes grouping (and removed).
func splitCmdline(cmdline string) []string {
	var words []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range cmdline {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				words = append(words, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		words = append(words, cur.String())
	}
	return words
}

// moduleParams collects "module.param=value" words of the kernel command
// line into per-module parameter strings for finit_module. Module names
// match with dashes and underscores equivalent. Values containing spaces
// are re-quoted.
func moduleParams(cmdline string) map[string]string {
	params := map[string]string{}
	for _, w := range splitCmdline(cmdline) {
		key, val, hasVal := strings.Cut(w, "=")
		mod, param, ok := strings.Cut(key, ".")
		if !ok || mod == "" || param == "" {
			continue
		}
		mod = strings.ReplaceAll(mod, "-", "_")
		p := param
		if hasVal {
			if strings.ContainsAny(val, " \t") {
				val = `"` + val + `"`
			}
			p += "=" + val
		}
		if params[mod] != "" {
			params[mod] += " "
		}
		params[mod] += p
	}
	return params
}

// loadModules inserts the initramfs's modules in modules.order order. A
// module that is already loaded (or built in) is fine. It keeps going past
// a failure so that one bad module does not hide the others' errors.
func loadModules(cmdline string, log *logger) error {
	data, err := os.ReadFile(filepath.Join(modulesDir, "modules.order"))
	if errors.Is(err, os.ErrNotExist) {
		return nil // a kernel with everything built in
	}
	if err != nil {
		return err
	}
	params := moduleParams(cmdline)
	var errs []error
	for _, file := range parseModulesOrder(string(data)) {
		name := moduleName(file)
		if err := loadModule(filepath.Join(modulesDir, file), params[name]); err != nil {
			errs = append(errs, fmt.Errorf("load module %s: %w", name, err))
			continue
		}
		log.debugf("loaded module %s %s", name, params[name])
	}
	return errors.Join(errs...)
}

func loadModule(path, params string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	flags := 0
	if !strings.HasSuffix(path, ".ko") {
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(fd, params, flags)
	if err == unix.EEXIST {
		return nil
	}
	return err
}
