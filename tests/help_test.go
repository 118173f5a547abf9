package tests

import (
	"strings"
	"testing"
)

// skiff's help tells a runc user where skiff behaves differently.
func TestHelpSaysWhereSkiffDiffers(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
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
		r := e.mustOK(e.rt(c.args...))
		for _, w := range c.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("`skiff %s` does not say %q:\n%s", strings.Join(c.args, " "), w, r.stdout)
			}
		}
	}
}
