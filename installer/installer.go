// Package installer writes (and removes) what podman, CRI-O, containerd and
// Kubernetes need to know about skiff: a runtime named "skiff" in each
// client's configuration, and a RuntimeClass whose pod overhead covers the
// VM. Every change is idempotent, an existing file is backed up once
// (FILE.skiff-backup) before it is first changed, and Uninstall undoes
// exactly what Install did.
//
// It only edits configuration files below Options.Prefix: it must not
// restart services, run the clients or talk to a cluster; the caller tells
// the user what to do next (Result.Next).
package installer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiff-oci/skiff/config"
)

// Target is a client of skiff that Install configures.
type Target string

// The targets, as `skiff install --for` names them.
const (
	Podman     Target = "podman"
	CRIO       Target = "crio"
	Containerd Target = "containerd"
	Kubernetes Target = "kubernetes"
)

// Targets lists every target, in the order help text shows them.
var Targets = []Target{Podman, CRIO, Containerd, Kubernetes}

// ParseTarget accepts a target's name (and "cri-o" for CRI-O).
func ParseTarget(s string) (Target, error) {
	switch strings.ToLower(s) {
	case "podman":
		return Podman, nil
	case "crio", "cri-o":
		return CRIO, nil
	case "containerd":
		return Containerd, nil
	case "kubernetes", "k8s":
		return Kubernetes, nil
	}
	return "", fmt.Errorf("unknown target %q: use podman, crio, containerd or kubernetes", s)
}

// Defaults of Options.
const (
	DefaultBinary    = "/usr/local/bin/skiff"
	DefaultStateRoot = "/run/skiff"
	// RuntimeName is the runtime handler name every target registers.
	RuntimeName = "skiff"
	// BackupSuffix is appended to a file's name for its backup.
	BackupSuffix = ".skiff-backup"
)

// Options say where and what to write.
type Options struct {
	// Prefix is prepended to every host path ("" writes the real /etc).
	// Tests and the deploy/ DaemonSet (host's / mounted at /host) use it.
	Prefix string
	// Binary is skiff's absolute path as the client will see it (without
	// Prefix). Default DefaultBinary.
	Binary string
	// StateRoot is the --root the client passes to skiff. Default
	// DefaultStateRoot.
	StateRoot string
	// Config sizes the RuntimeClass overhead. Default config.Default().
	Config *config.Config
	// DryRun prints to Out what would be written, and writes nothing.
	DryRun bool
	// Out receives the dry-run listing. Default io.Discard.
	Out io.Writer
}

func (o *Options) fill() error {
	if o.Binary == "" {
		o.Binary = DefaultBinary
	}
	if o.StateRoot == "" {
		o.StateRoot = DefaultStateRoot
	}
	if !filepath.IsAbs(o.Binary) {
		return fmt.Errorf("skiff binary %q: must be an absolute path, as the runtime client runs it", o.Binary)
	}
	if !filepath.IsAbs(o.StateRoot) {
		return fmt.Errorf("state root %q: must be an absolute path", o.StateRoot)
	}
	for _, p := range []string{o.Binary, o.StateRoot} {
		if strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return fmt.Errorf("path %q: control characters cannot be written into the configuration", p)
		}
	}
	if o.Config == nil {
		o.Config = config.Default()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return nil
}

// host is where path (a host path such as /etc/crio/...) is under Prefix.
func (o *Options) host(path string) string {
	if o.Prefix == "" {
		return path
	}
	return filepath.Join(o.Prefix, path)
}

// Action is what happened to one file.
type Action string

// Actions.
const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
	Removed   Action = "removed"
	Restored  Action = "restored"
)

// Change is what Install or Uninstall did (or, in a dry run, would do) to
// one file.
type Change struct {
	Path   string // as written, Prefix included
	Action Action
	// Backup is the backup made (Install) or left in place (Uninstall).
	Backup string `json:",omitempty"`
	// Note explains an Unchanged or a kept backup.
	Note string `json:",omitempty"`
}

// Result of Install or Uninstall.
type Result struct {
	Target  Target
	DryRun  bool
	Changes []Change
	// Next are the steps left to the user (restart a service, apply a
	// manifest), in words.
	Next []string
}

// Changed reports whether any file was (or would be) changed.
func (r *Result) Changed() bool {
	for _, c := range r.Changes {
		if c.Action != Unchanged {
			return true
		}
	}
	return false
}

// edit is one file a target manages: either a whole file of skiff's own
// (a drop-in) or a marked block in a file shared with others.
type edit interface {
	// path is the host path, without Prefix.
	path() string
	// install returns the file's content with skiff's part in place.
	install(cur []byte, exists bool) ([]byte, error)
	// uninstall returns the content without skiff's part, or remove=true
	// when the file is to go; ours=false means skiff's part is not there
	// (or the file is not skiff's) and nothing is to be done.
	uninstall(cur []byte) (next []byte, remove, ours bool)
}

// Install writes what t needs.
func Install(t Target, o Options) (*Result, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	edits, next, err := plan(t, &o)
	if err != nil {
		return nil, err
	}
	r := &Result{Target: t, DryRun: o.DryRun, Next: next}
	for _, e := range edits {
		c, err := installOne(&o, e)
		if err != nil {
			return r, fmt.Errorf("install for %s: %w", t, err)
		}
		r.Changes = append(r.Changes, c)
	}
	return r, nil
}

// Uninstall undoes Install: files skiff created are removed, files it
// changed get their backup back (or, if they were changed again since,
// lose only skiff's part and keep the backup beside them).
func Uninstall(t Target, o Options) (*Result, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	edits, _, err := plan(t, &o)
	if err != nil {
		return nil, err
	}
	r := &Result{Target: t, DryRun: o.DryRun}
	for _, e := range edits {
		c, err := uninstallOne(&o, e)
		if err != nil {
			return r, fmt.Errorf("uninstall for %s: %w", t, err)
		}
		r.Changes = append(r.Changes, c)
	}
	return r, nil
}

func plan(t Target, o *Options) ([]edit, []string, error) {
	switch t {
	case Podman:
		return podman(o)
	case CRIO:
		return crio(o)
	case Containerd:
		return containerd(o)
	case Kubernetes:
		return kubernetes(o)
	}
	return nil, nil, fmt.Errorf("unknown target %q: use podman, crio, containerd or kubernetes", t)
}

// readFile returns a file's content and mode; exists is false (and err
// nil) when there is no such file.
func readFile(p string) (data []byte, mode fs.FileMode, exists bool, err error) {
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, false, fmt.Errorf("%s: not a regular file", p)
	}
	data, err = os.ReadFile(p)
	return data, fi.Mode().Perm(), err == nil, err
}

func installOne(o *Options, e edit) (Change, error) {
	p := o.host(e.path())
	cur, mode, exists, err := readFile(p)
	if err != nil {
		return Change{}, err
	}
	next, err := e.install(cur, exists)
	if err != nil {
		return Change{}, fmt.Errorf("%s: %w", p, err)
	}
	c := Change{Path: p, Action: Created}
	if exists {
		if bytes.Equal(cur, next) {
			c.Action = Unchanged
			c.Note = "already configured"
			dryRunPrint(o, c, next)
			return c, nil
		}
		c.Action = Updated
		// The first backup holds the file as it was before skiff; a later
		// install (a new binary path, say) must not overwrite it with a
		// file that is already skiff's.
		bak := p + BackupSuffix
		if _, _, hasBak, err := readFile(bak); err != nil {
			return c, err
		} else if !hasBak && !o.DryRun {
			if err := writeAtomic(bak, cur, mode); err != nil {
				return c, fmt.Errorf("back up %s: %w", p, err)
			}
		}
		c.Backup = bak
	} else {
		mode = 0o644
	}
	if o.DryRun {
		dryRunPrint(o, c, next)
		return c, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return c, err
	}
	return c, writeAtomic(p, next, mode)
}

func uninstallOne(o *Options, e edit) (Change, error) {
	p := o.host(e.path())
	bak := p + BackupSuffix
	cur, _, exists, err := readFile(p)
	if err != nil {
		return Change{}, err
	}
	bakData, _, hasBak, err := readFile(bak)
	if err != nil {
		return Change{}, err
	}
	c := Change{Path: p, Action: Unchanged}
	if !exists {
		c.Note = "not installed"
		if hasBak {
			c.Backup, c.Note = bak, "not installed; a backup is there, left in place"
		}
		dryRunPrint(o, c, nil)
		return c, nil
	}
	next, remove, ours := e.uninstall(cur)
	if !ours {
		c.Note = "holds nothing of skiff's; left in place"
		if hasBak {
			c.Backup = bak
		}
		dryRunPrint(o, c, nil)
		return c, nil
	}
	switch {
	case hasBak && (remove || sameButFinalNewline(next, bakData)):
		// The file is as it was before install but for skiff's part: the
		// backup is exactly the file without it.
		c.Action = Restored
		if !o.DryRun {
			err = os.Rename(bak, p)
		}
		next = bakData
	case hasBak:
		// Changed by someone else since install: take skiff's part out,
		// keep their changes, and leave the backup for them to compare.
		c.Action, c.Backup = Updated, bak
		c.Note = "changed since install: skiff's part removed, backup left in place"
		if !o.DryRun {
			err = rewrite(p, next)
		}
	case remove:
		// No backup: install created the file.
		c.Action = Removed
		if !o.DryRun {
			err = os.Remove(p)
		}
		next = nil
	default:
		c.Action = Updated
		if !o.DryRun {
			err = rewrite(p, next)
		}
	}
	dryRunPrint(o, c, next)
	return c, err
}

// sameButFinalNewline is bytes.Equal, except that a newline install added
// to end a file that had none before its own part counts as nothing.
func sameButFinalNewline(next, orig []byte) bool {
	if bytes.Equal(next, orig) {
		return true
	}
	return len(orig) > 0 && orig[len(orig)-1] != '\n' &&
		len(next) == len(orig)+1 && bytes.HasPrefix(next, orig) && next[len(orig)] == '\n'
}

// rewrite replaces p's content, keeping its mode.
func rewrite(p string, data []byte) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	return writeAtomic(p, data, fi.Mode().Perm())
}

// writeAtomic writes through a temporary file renamed into place, so that a
// client never reads half a configuration.
func writeAtomic(p string, data []byte, mode fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly once renamed
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// dryRunPrint shows a file as it would be. The heading is a comment in
// TOML and YAML alike, so `install --for kubernetes --dry-run` can be piped
// to kubectl apply -f -.
func dryRunPrint(o *Options, c Change, content []byte) {
	if !o.DryRun {
		return
	}
	verb := map[Action]string{
		Created: "would create", Updated: "would update", Unchanged: "unchanged",
		Removed: "would remove", Restored: "would restore from " + c.Path + BackupSuffix,
	}[c.Action]
	fmt.Fprintf(o.Out, "# %s (%s)\n", c.Path, verb)
	if c.Backup != "" && c.Action == Updated {
		fmt.Fprintf(o.Out, "# backup: %s\n", c.Backup)
	}
	if c.Action == Removed || content == nil {
		fmt.Fprintln(o.Out)
		return
	}
	o.Out.Write(content)
	if len(content) > 0 && content[len(content)-1] != '\n' {
		fmt.Fprintln(o.Out)
	}
	fmt.Fprintln(o.Out)
}

// dropIn is a whole file of skiff's own. Its first line marks it as such,
// so uninstall never removes a file someone else wrote.
type dropIn struct {
	p       string
	content []byte
}

func (d dropIn) path() string { return d.p }

func (d dropIn) install([]byte, bool) ([]byte, error) { return d.content, nil }

func (d dropIn) uninstall(cur []byte) ([]byte, bool, bool) {
	if !bytes.HasPrefix(cur, []byte(dropInMarker)) {
		return nil, false, false
	}
	return nil, true, true
}

// dropInMarker starts every file skiff writes whole.
const dropInMarker = "# Written by skiff install"

func header(t Target) string {
	return fmt.Sprintf("%s --for %s; `skiff uninstall --for %s` removes it.\n", dropInMarker, t, t)
}
