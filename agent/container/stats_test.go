package container

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadIOStatAndKeyed(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "io.stat"), []byte("254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\nbogus\n"), 0o644)
	s := readIOStat(filepath.Join(dir, "io.stat"))
	if len(s.IoServiceBytesRecursive) != 3 || len(s.IoServicedRecursive) != 3 {
		t.Fatalf("io.stat parsed to %+v", s)
	}
	if e := s.IoServiceBytesRecursive[1]; e.Major != 254 || e.Op != "Write" || e.Value != 8192 {
		t.Errorf("wbytes entry = %+v", e)
	}
	os.WriteFile(filepath.Join(dir, "cpu.stat"), []byte("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"), 0o644)
	if m := readKeyed(filepath.Join(dir, "cpu.stat")); m["usage_usec"] != 1500 || m["system_usec"] != 500 {
		t.Errorf("cpu.stat parsed to %v", m)
	}
	if readUint(filepath.Join(dir, "missing")) != 0 {
		t.Error("a missing file must read as 0")
	}
}
