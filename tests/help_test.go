package tests

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// What skiff says about itself: --help, the man page and shell completion.

// skiff's help tells a runc user where skiff behaves differently.
func TestHelpSaysWhereSkiffDiffers(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"differs from runc", "VM", "debug-console"}},
		{[]string{"state", "--help"}, []string{"host process standing for the", "container"}},
		{[]string{"kill", "--help"}, []string{"goes into the VM"}},
		{[]string{"create", "--help"}, []string{"boots the container's VM", "template"}},
		{[]string{"run", "--help"}, []string{"boots the container's VM"}},
		{[]string{"debug-console", "--help"}, []string{"debug_console = true"}},
	} {
		r := e.MustOK(e.RT(c.args...))
		for _, w := range c.want {
			if !strings.Contains(r.Stdout, w) {
				t.Errorf("`skiff %s` does not say %q:\n%s", strings.Join(c.args, " "), w, r.Stdout)
			}
		}
	}
}

// The completion script is valid bash and completes skiff's verbs and
// --for's values; the man page is generated from the same definitions.
func TestCompletionAndMan(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewSerialEnv(t)
	script := e.WriteFile("skiff.bash", e.MustOK(e.RT("completion", "bash")).Stdout)
	complete := func(words ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		prog := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _skiff; echo "${COMPREPLY[*]}"`
		out, err := exec.CommandContext(ctx, "bash", append([]string{"-c", prog, "bash", script}, words...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("bash completion of %q: %v\n%s", words, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := complete("skiff", "uni"); got != "uninstall" {
		t.Errorf("completing `skiff uni`: %q", got)
	}
	if got := complete("skiff", "--root", "/x", "install", "--for", "c"); got != "crio containerd" {
		t.Errorf("completing `install --for c`: %q", got)
	}
	if got := complete("skiff", "install", "--dr"); got != "--dry-run" {
		t.Errorf("completing `install --dr`: %q", got)
	}
	if r := e.MustOK(e.RT("completion", "zsh")); !strings.HasPrefix(r.Stdout, "#compdef skiff\n") {
		t.Errorf("zsh completion: %v", r)
	}
	e.MustFail(e.RT("completion", "fish"))

	r := e.MustOK(e.RT("man"))
	for _, want := range []string{".TH skiff 8", "install", "uninstall", "--dry-run", "runc"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("man page lacks %q", want)
		}
	}
}
