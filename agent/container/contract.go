package container

// The contract between the agent and the children it re-executes itself
// as (a container init, an exec'd process, a zygote): the argument and
// environment marker that make the agent binary one of them, and the
// descriptors each finds open. create.go, exec.go and zygote.go keep the
// parent's side of it, init.go the child's.

// Each child is os.Args[1] of the re-executed agent plus a marker in its
// environment, so that a stray kernel command-line word cannot turn the
// guest's PID 1 into one.
const (
	InitArg   = "container-init"
	initEnv   = "_SKIFF_CONTAINER_INIT=1"
	ExecArg   = "container-exec"
	execEnv   = "_SKIFF_CONTAINER_EXEC=1"
	ZygoteArg = "container-zygote"
	zygoteEnv = "_SKIFF_CONTAINER_ZYGOTE=1"
)

// A container init's and an exec'd process's descriptors beyond stdio.
const (
	fdSpec  = 3 // the spec (an init's) or the process (an exec'd one's), as JSON, read to EOF
	fdReady = 4 // "warning: ...\n" lines, then "ready\n" or "error: ...\n" back to the agent
	fdStart = 5 // one byte from the agent means "exec now" (an init only)
	// fdConsole is the child's end of a socketpair on which it sends the
	// master of its terminal to the agent (process.terminal=true only).
	fdConsole = 6
	// An exec'd process's: the container init's namespaces it joins.
	fdMntNS    = 7
	fdUTSNS    = 8
	fdIPCNS    = 9
	fdNetNS    = 10
	fdCgroupNS = 11
)

// A zygote's.
const (
	// fdZygote is the zygote's end of its socket to the agent.
	fdZygote = 3
	// zygoteWaiting is what the zygote writes once it waits for work.
	zygoteWaiting = 'w'
	// zygoteCgroup names the zygote's cgroup; no container ID starts
	// with '-'.
	zygoteCgroup = "-zygote"
	// zygoteNetFD is where the zygote keeps the guest's network
	// namespace (or the lowest free descriptor above): clear of the
	// descriptors it receives, which go to 0, 1, ... and pass through
	// 100 and above on the way.
	zygoteNetFD = 64
)
