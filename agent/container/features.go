package container

import "sort"

// MountOptions lists every mount option setup honours: mount(2) flags,
// propagation, bind and runc's tmpcopyup. Other words are passed to the
// filesystem as data, which is not the same as honouring them.
func MountOptions() []string {
	opts := []string{"bind", "rbind", "tmpcopyup"}
	for o := range flagOpts {
		opts = append(opts, o)
	}
	for o := range propagationOpts {
		opts = append(opts, o)
	}
	sort.Strings(opts)
	return opts
}

// Capabilities lists the capability names setup knows.
func Capabilities() []string {
	return append([]string(nil), capNames...)
}
