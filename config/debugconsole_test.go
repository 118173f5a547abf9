package config

import (
	"strings"
	"testing"
)

func TestDebugConsoleIsOffUnlessEnabled(t *testing.T) {
	if Default().Runtime.DebugConsole {
		t.Error("debug_console is on by default")
	}
	c, err := Load(writeConfig(t, "[runtime]\ndebug_console = true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Runtime.DebugConsole {
		t.Error("debug_console = true not applied")
	}
	_, err = Load(writeConfig(t, "[runtime]\ndebug_console = \"yes\"\n"))
	if err == nil || !strings.Contains(err.Error(), "debug_console") {
		t.Errorf("debug_console = \"yes\": error %v, want one naming the key", err)
	}
}
