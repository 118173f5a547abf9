// Command skiff-agent is /init of the skiff guest: the in-guest agent, and
// (re-executed by itself) the init of each container.
package main

import (
	"github.com/skiff-oci/skiff/agent"
	"github.com/skiff-oci/skiff/agent/container"
)

func main() {
	if container.IsInit() {
		container.Init()
	}
	if container.IsExecInit() {
		container.ExecInit()
	}
	agent.Main()
}
