package e2e

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
)

// KeyValues parses "key=value" lines as printed by the probe scripts.
func KeyValues(out string) map[string]string {
	kv := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// WantKV checks that a probe printed key=want.
func WantKV(t *testing.T, kv map[string]string, key, want string) {
	t.Helper()
	got, ok := kv[key]
	if !ok {
		t.Errorf("%s: not printed by the container", key)
	} else if got != want {
		t.Errorf("%s = %q, want %q", key, got, want)
	}
}

// WantKVs checks every key=want of want.
func WantKVs(t *testing.T, kv map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		WantKV(t, kv, k, v)
	}
}

// LastLogError is the message of the last "level":"error" line of a JSON
// --log, as containerd's runc shim finds it.
func LastLogError(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read --log: %v", err)
	}
	last := ""
	for _, line := range strings.Split(string(data), "\n") {
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Level == "error" {
			last = entry.Msg
		}
	}
	if last == "" {
		t.Errorf("no \"level\":\"error\" line in --log:\n%s", data)
	}
	return last
}

// LogLine returns the attributes of the first line of a text --log that
// has msg, nil if none has.
func LogLine(log, msg string) map[string]string {
	b, _ := os.ReadFile(log)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "msg="+strconv.Quote(msg)) && !strings.Contains(line, "msg="+msg+" ") {
			continue
		}
		attrs := map[string]string{}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				attrs[k] = strings.Trim(v, `"`)
			}
		}
		return attrs
	}
	return nil
}

// LogHas fails t unless the --log at path contains want; what says what
// the line would have shown.
func LogHas(t *testing.T, path, want, what string) {
	t.Helper()
	if l, _ := os.ReadFile(path); !strings.Contains(string(l), want) {
		t.Errorf("%s (no %q in the log):\n%s", what, want, l)
	}
}
