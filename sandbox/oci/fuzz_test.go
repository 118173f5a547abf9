package oci

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParseSpec: no config.json, however malformed, may crash the parser,
// and what it accepts must satisfy what the rest of skiff relies on.
func FuzzParseSpec(f *testing.F) {
	good, _ := json.Marshal(DefaultSpec())
	f.Add(good)
	f.Add([]byte(`{"ociVersion":"1.0.0","root":{"path":"r"},"process":{"args":["sh"],"cwd":"/"}}`))
	f.Add([]byte(`{"ociVersion":"1","root":{"path":"r"},"process":{"args":[],"cwd":"/"}}`))
	f.Add([]byte(`{"mounts":[{"destination":"x"}]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSpec(b)
		if err != nil {
			return
		}
		if s.Root == nil || s.Root.Path == "" || s.Process == nil || len(s.Process.Args) == 0 || !strings.HasPrefix(s.Process.Cwd, "/") {
			t.Fatalf("accepted a spec skiff cannot run: %s", b)
		}
		for _, m := range s.Mounts {
			if !strings.HasPrefix(m.Destination, "/") {
				t.Fatalf("accepted a relative mount destination %q", m.Destination)
			}
		}
	})
}
