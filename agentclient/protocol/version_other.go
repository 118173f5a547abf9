//go:build skiff_other_protocol

package protocol

// Version, in a build with the tag skiff_other_protocol, is one no skiff
// speaks: the end-to-end tests build a guest agent with it to check that
// the host refuses an agent of another version (tests/template_test.go).
const Version = 1000 + 1
