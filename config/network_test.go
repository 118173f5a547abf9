package config

import (
	"strings"
	"testing"
)

func TestNetworkModel(t *testing.T) {
	if got := Default().Runtime.NetworkModel; got != "tcfilter" {
		t.Errorf("default network_model %q, want tcfilter", got)
	}
	c, err := Load(writeConfig(t, "[runtime]\nnetwork_model = \"none\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Runtime.NetworkModel != "none" {
		t.Errorf("network_model %q, want none", c.Runtime.NetworkModel)
	}
	_, err = Load(writeConfig(t, "[runtime]\nnetwork_model = \"bridge\"\n"))
	if err == nil || !strings.Contains(err.Error(), "runtime.network_model") {
		t.Errorf("network_model = \"bridge\": error %v, want one naming runtime.network_model", err)
	}
}
