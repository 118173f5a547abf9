package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Scratch disk sizes: below MinScratchSize ext4 has no room for its own
// metadata and a build; MaxScratchSize is ext4's reach with 4 KiB blocks
// and no 64bit feature questions.
const (
	MinScratchSize = 64 << 20
	MaxScratchSize = 16 << 40
)

// ParseSize reads a size in bytes: a number with an optional binary
// suffix K, M, G or T (KiB, MiB, GiB, TiB; "10G", "512M", "10GiB").
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "i")
	shift := 0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K', 'k':
			shift = 10
		case 'M', 'm':
			shift = 20
		case 'G', 'g':
			shift = 30
		case 'T', 't':
			shift = 40
		}
		if shift > 0 {
			t = t[:n-1]
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional K, M, G or T suffix", s)
	}
	return n << shift, nil
}

// ScratchBytes checks a scratch disk size (the configuration's, or an
// annotation's) and returns it in bytes.
func ScratchBytes(s string) (int64, error) {
	n, err := ParseSize(s)
	if err != nil {
		return 0, err
	}
	if n < MinScratchSize || n > MaxScratchSize {
		return 0, fmt.Errorf("scratch size %s: must be between 64M and 16T", s)
	}
	return n, nil
}
