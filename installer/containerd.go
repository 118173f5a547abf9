package installer

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
)

// containerd's configuration is one file shared with its package and the
// administrator. Re-encoding it with a TOML library would drop its comments
// and reorder it, so skiff appends its own tables at the end between two
// marker lines, and uninstall cuts exactly those lines out. BurntSushi/toml
// reads the file first (version, a runtime named skiff already there) and
// reads the result back before anything is written, so a file skiff cannot
// extend safely is refused unchanged.

const (
	blockBegin = "# BEGIN skiff: added by `skiff install --for containerd`; `skiff uninstall --for containerd` removes it.\n"
	blockEnd   = "# END skiff\n"
	// newConfigHead starts a config.toml that install creates.
	newConfigHead = "version = 2\n"
)

// criRuntimesPath is where runtimes live, by config version: version 2 is
// containerd 1.x's, version 3 containerd 2.x's.
var criRuntimesPath = map[int64][]string{
	2: {"plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes"},
	3: {"plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes"},
}

type containerdBlock struct {
	p, binary, root string
}

func (c *containerdBlock) path() string { return c.p }

func (c *containerdBlock) block(version int64) string {
	var b strings.Builder
	table := tomlTable(append(criRuntimesPath[version], RuntimeName))
	b.WriteString(blockBegin)
	fmt.Fprintf(&b, "[%s]\n", table)
	b.WriteString("  runtime_type = \"io.containerd.runc.v2\"\n")
	fmt.Fprintf(&b, "[%s.options]\n", table)
	fmt.Fprintf(&b, "  BinaryName = %s\n", tomlString(c.binary))
	fmt.Fprintf(&b, "  Root = %s\n", tomlString(c.root))
	b.WriteString(blockEnd)
	return b.String()
}

// tomlTable joins keys into a table header, quoting those that need it.
func tomlTable(keys []string) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		if strings.Trim(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == "" {
			parts[i] = k
		} else {
			parts[i] = tomlString(k)
		}
	}
	return strings.Join(parts, ".")
}

// cut returns data without skiff's block, and whether it had one.
func cut(data []byte) ([]byte, bool) {
	i := bytes.Index(data, []byte(blockBegin))
	if i < 0 {
		return data, false
	}
	rest := data[i:]
	j := bytes.Index(rest, []byte(blockEnd))
	if j < 0 {
		return data, false
	}
	out := append([]byte{}, data[:i]...)
	return append(out, rest[j+len(blockEnd):]...), true
}

func (c *containerdBlock) install(cur []byte, exists bool) ([]byte, error) {
	base, _ := cut(cur)
	if !exists {
		base = []byte(newConfigHead)
	}
	var doc map[string]any
	if _, err := toml.Decode(string(base), &doc); err != nil {
		return nil, fmt.Errorf("not valid TOML, refusing to edit it: %w", err)
	}
	version, _ := doc["version"].(int64)
	if _, ok := criRuntimesPath[version]; !ok {
		if version == 0 {
			return nil, fmt.Errorf("no `version = 2` line: a version 1 configuration, which skiff does not edit; migrate it with `containerd config migrate` (containerd 1.7+) or add the runtime by hand")
		}
		return nil, fmt.Errorf("config version %d: skiff edits versions 2 (containerd 1.x) and 3 (containerd 2.x)", version)
	}
	if k := inlineTableOnPath(base, criRuntimesPath[version]); k != "" {
		return nil, fmt.Errorf("defines %q as an inline table ({...}), which TOML forbids extending; rewrite it as a [table] section, or add skiff's runtime by hand", k)
	}
	if _, ok := lookup(doc, append(criRuntimesPath[version], RuntimeName)); ok {
		return nil, fmt.Errorf("already defines a runtime named %q that skiff install did not write; remove it, or edit it by hand", RuntimeName)
	}
	next := append([]byte{}, base...)
	if len(next) > 0 && next[len(next)-1] != '\n' {
		next = append(next, '\n')
	}
	next = append(next, c.block(version)...)

	// Read the result back as containerd would: a file that defines the
	// CRI plugin's tables in a form the appended tables cannot extend
	// (inline tables) fails here, before anything is written.
	var after map[string]any
	if _, err := toml.Decode(string(next), &after); err != nil {
		return nil, fmt.Errorf("cannot add skiff's runtime to this file without rewriting it (%v); add it by hand, as `skiff install --for containerd --dry-run` shows", err)
	}
	got, _ := lookup(after, append(criRuntimesPath[version], RuntimeName, "options", "BinaryName"))
	if got != c.binary {
		return nil, fmt.Errorf("the runtime added does not read back (BinaryName %v); add it by hand", got)
	}
	return next, nil
}

func (c *containerdBlock) uninstall(cur []byte) ([]byte, bool, bool) {
	next, found := cut(cur)
	if !found {
		return nil, false, false
	}
	return next, string(next) == newConfigHead, true
}

// inlineTableOnPath returns the first key of path that data assigns an
// inline table to (`key = {`), "" if none. BurntSushi/toml lets a later
// [table] extend an inline table, but TOML forbids it and containerd's
// parser may refuse the file: such a file is not edited.
func inlineTableOnPath(data []byte, path []string) string {
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(strings.TrimSpace(val), "{") {
			continue
		}
		key = strings.TrimSpace(key)
		for _, k := range path {
			if strings.HasSuffix(key, k) || strings.HasSuffix(key, `"`+k+`"`) {
				return k
			}
		}
	}
	return ""
}

// lookup follows keys through nested tables.
func lookup(doc map[string]any, keys []string) (any, bool) {
	var v any = doc
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}
