package state

import (
	"strings"
	"testing"
)

// FuzzValidateID: an accepted ID is always one safe directory name.
func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"a", "abc-1.2_3+x", "..", "a/b", "", "-x", ".x", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if ValidateID(id) != nil {
			return
		}
		if strings.ContainsAny(id, "/\x00") || id == "." || id == ".." || strings.HasPrefix(id, ".") || strings.HasPrefix(id, "-") || len(id) > maxIDLen {
			t.Fatalf("accepted unsafe ID %q", id)
		}
	})
}
