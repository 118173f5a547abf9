//go:build !skiff_other_protocol

package protocol

// Version is bumped whenever a message changes incompatibly. The host
// refuses an agent that reports another version.
const Version = 2
