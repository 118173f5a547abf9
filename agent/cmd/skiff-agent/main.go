// Command skiff-agent is /init of the skiff guest: the in-guest agent, and
// (re-executed by itself) the init of each container.
package main

import (
	"runtime"

	"github.com/skiff-oci/skiff/agent"
	"github.com/skiff-oci/skiff/agent/container"
)

// A container init sets up namespaces, credentials and its root on its own
// thread and execs from it; /proc/PID/ns/* show the main thread's
// namespaces, so that thread must be the main one. Locking in an init
// function keeps main on the main thread.
func init() {
	if container.IsInit() || container.IsZygote() || container.IsExecInit() {
		runtime.LockOSThread()
	}
}

func main() {
	if container.IsInit() {
		container.Init()
	}
	if container.IsZygote() {
		container.ZygoteMain()
	}
	if container.IsExecInit() {
		container.ExecInit()
	}
	agent.Main()
}
