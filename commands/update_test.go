package commands

import "testing"

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"-1": -1, "1024": 1024, "100m": 100 << 20, "1G": 1 << 30, "512kb": 512 << 10, "1.5g": 3 << 29} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-5", "10x"} {
		if got, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", bad, got)
		}
	}
}
