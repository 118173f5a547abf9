package installer

import (
	"bytes"
	"fmt"
	"strconv"
)

// Paths of the files each target manages, on the host.
const (
	// Podman 4.3 (Debian 12) reads containers.conf and then every
	// containers.conf.d/*.conf in order; a drop-in leaves the main file
	// (and its package's updates) alone.
	PodmanDropIn = "/etc/containers/containers.conf.d/50-skiff.conf"
	// CRI-O reads crio.conf.d/*.conf over crio.conf.
	CRIODropIn = "/etc/crio/crio.conf.d/50-skiff.conf"
	// containerd 1.6 and 1.7 read one file; its imports merge whole plugin
	// sections, so a separate file would replace the CRI plugin's settings
	// instead of adding to them. skiff edits this file instead (see
	// containerd.go).
	ContainerdConfig = "/etc/containerd/config.toml"
	// RuntimeClassFile is where install --for kubernetes leaves the
	// manifest for kubectl apply -f.
	RuntimeClassFile = "/etc/skiff/runtimeclass.yaml"
)

// tomlString quotes s as a TOML basic string (Go's quoting is a subset for
// the paths used here: printable, with \" and \\ escaped).
func tomlString(s string) string { return strconv.Quote(s) }

func podman(o *Options) ([]edit, []string, error) {
	var b bytes.Buffer
	b.WriteString(header(Podman))
	b.WriteString("# `podman --runtime skiff run ...` runs a container in its own VM.\n")
	b.WriteString("[engine.runtimes]\n")
	fmt.Fprintf(&b, "%s = [%s]\n", RuntimeName, tomlString(o.Binary))
	next := []string{
		"podman --runtime skiff run --rm docker.io/library/busybox uname -r   # prints the guest's kernel",
		"to make skiff podman's default, add `runtime = \"skiff\"` under [engine] in a containers.conf.d file",
	}
	return []edit{dropIn{PodmanDropIn, b.Bytes()}}, next, nil
}

func crio(o *Options) ([]edit, []string, error) {
	var b bytes.Buffer
	b.WriteString(header(CRIO))
	b.WriteString("# Pods whose RuntimeClass has handler \"skiff\" run in their own VM.\n")
	b.WriteString("# The pod's VM is made by its infra (pause) container, which CRI-O drops\n")
	b.WriteString("# by default for runtime_type \"oci\": keep it.\n")
	b.WriteString("[crio.runtime]\n")
	b.WriteString("drop_infra_ctr = false\n")
	fmt.Fprintf(&b, "[crio.runtime.runtimes.%s]\n", RuntimeName)
	fmt.Fprintf(&b, "runtime_path = %s\n", tomlString(o.Binary))
	b.WriteString("runtime_type = \"oci\"\n")
	fmt.Fprintf(&b, "runtime_root = %s\n", tomlString(o.StateRoot))
	next := []string{
		"systemctl restart crio   # CRI-O reads its runtimes at start",
		"skiff install --for kubernetes   # the RuntimeClass that selects handler \"skiff\"",
	}
	return []edit{dropIn{CRIODropIn, b.Bytes()}}, next, nil
}

func containerd(o *Options) ([]edit, []string, error) {
	next := []string{
		"systemctl restart containerd   # containerd reads its runtimes at start",
		"skiff install --for kubernetes   # the RuntimeClass that selects handler \"skiff\"",
	}
	return []edit{&containerdBlock{p: ContainerdConfig, binary: o.Binary, root: o.StateRoot}}, next, nil
}

func kubernetes(o *Options) ([]edit, []string, error) {
	y, err := RuntimeClassYAML(o.Config)
	if err != nil {
		return nil, nil, err
	}
	next := []string{
		"kubectl apply -f " + o.host(RuntimeClassFile),
		"label each node where skiff is installed for CRI-O or containerd: kubectl label node NODE " + ReadyLabel + "=true",
		"then give pods `runtimeClassName: skiff`",
	}
	return []edit{dropIn{RuntimeClassFile, append([]byte(header(Kubernetes)), y...)}}, next, nil
}
