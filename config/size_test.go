package config

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"10G": 10 << 30, "512M": 512 << 20, "64MiB": 64 << 20, "1T": 1 << 40, "4096": 4096, "2k": 2048, " 3 G ": 3 << 30} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "-1G", "1.5G", "10X", "99999999999T"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
	for _, in := range []string{"1M", "32T"} {
		if _, err := ScratchBytes(in); err == nil {
			t.Errorf("scratch size %q accepted", in)
		}
	}
}
