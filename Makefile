# skiff build. GNU make. On a fresh Debian 12 machine, as root:
#
#   make demo     install deps, build everything, run a busybox container in a VM
#   make test     install deps, build, go vet, the conformance floor, unit +
#                 end-to-end tests (.ci/run)
#
# Other targets: all (default: bin/skiff + guest image), guest, deps, install,
# uninstall, bench, conformance, conformance-floor, floor, kernel, clean,
# distclean.

GO ?= $(or $(shell command -v go 2>/dev/null),/usr/local/go/bin/go)
PREFIX ?= /usr/local
DESTDIR ?=
SHAREDIR = $(DESTDIR)$(PREFIX)/share/skiff
BINDIR = $(DESTDIR)$(PREFIX)/bin

GUEST_DIR := build/guest
# The guest's /init. Override to boot a stand-in: make guest AGENT_BIN=/bin/busybox
AGENT_BIN ?= build/skiff-agent
DEMO_BUNDLE := build/demo-bundle
FLOOR_INITRD := build/floor-initramfs.img

.PHONY: all guest kernel floor deps demo demo-bundle test install uninstall bench conformance conformance-floor fuzz cross clean distclean FORCE
.DEFAULT_GOAL := all

all: bin/skiff guest

# Go binaries are always handed to `go build`; its cache decides whether
# anything is recompiled.
bin/skiff: FORCE
	$(GO) build -o $@ .

build/skiff-agent: FORCE
	CGO_ENABLED=0 $(GO) build -buildvcs=false -trimpath -ldflags "-s -w" -o $@ ./agent/cmd/skiff-agent

# guest/build.sh keeps its own keys: the kernel is re-extracted only when the
# Debian package changes, the initramfs rebuilt only when the agent or the
# module set changes. Otherwise it returns in ~0.2 s and touches nothing.
guest: $(AGENT_BIN)
	guest/build.sh $(GUEST_DIR) $(AGENT_BIN)
	@# Once `make kernel` has run, its modules-free initramfs follows the
	@# agent: skiff would otherwise boot the minimal kernel with an old agent.
	if [ -f $(GUEST_DIR)/vmlinux-minimal ]; then guest/build-kernel.sh --initramfs-only $(GUEST_DIR); fi

# The optional minimal guest kernel (~10 min on 2 cores; not part of all or
# test): Debian's linux-source-6.1, tinyconfig + guest/kernel.config, all
# built in. Once built, skiff boots it on microvm by default. Needs flex,
# bison, bc and libelf-dev (apt-get install flex bison bc libelf-dev).
kernel: guest
	guest/build-kernel.sh $(GUEST_DIR)

floor: $(FLOOR_INITRD)
$(FLOOR_INITRD): guest/floor/main.go guest/floor-initramfs.sh
	GO=$(GO) guest/floor-initramfs.sh $@

deps:
	scripts/install-deps.sh

# A busybox rootfs and a config.json from `skiff spec`, with the process
# changed to a one-shot command and no terminal.
DEMO_ARGS := "sh", "-c", "echo hello from $$(uname -r) in a VM; cat /proc/version"
demo-bundle: bin/skiff
	rm -rf $(DEMO_BUNDLE)
	mkdir -p $(DEMO_BUNDLE)/rootfs/bin
	cd $(DEMO_BUNDLE)/rootfs && mkdir -p dev proc sys tmp etc root && chmod 1777 tmp
	cp /bin/busybox $(DEMO_BUNDLE)/rootfs/bin/busybox
	chroot $(DEMO_BUNDLE)/rootfs /bin/busybox --install -s /bin
	cd $(DEMO_BUNDLE) && $(CURDIR)/bin/skiff spec
	sed -i -e 's/"terminal": *true/"terminal": false/' \
		-e '/"args": *\[.*\]/{s#"args": *\[.*\]#"args": [$(DEMO_ARGS)]#;b' -e '}' \
		-e '/"args": *\[/,/\]/c\		"args": [$(DEMO_ARGS)],' \
		$(DEMO_BUNDLE)/config.json
	grep -q 'hello from' $(DEMO_BUNDLE)/config.json || { echo "demo: could not set the process args in $(DEMO_BUNDLE)/config.json" >&2; exit 1; }

demo:
	scripts/install-deps.sh
	$(MAKE) all
	$(MAKE) demo-bundle
	bin/skiff --root $(CURDIR)/build/run run --bundle $(CURDIR)/$(DEMO_BUNDLE) demo-$$$$

# End-to-end tests under tests/ run bin/skiff (SKIFF_BIN) against real VMs;
# the binary finds the guest image through its own defaults.
# skiff and its agent for every architecture skiff supports; CI builds all.
CROSS_ARCHES := amd64 arm64 ppc64le s390x
cross:
	for a in $(CROSS_ARCHES); do \
		GOARCH=$$a $(GO) build -o bin/$$a/skiff . && \
		GOARCH=$$a CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/$$a/skiff-agent ./agent/cmd/skiff-agent || exit 1; \
	done

# The soak test's run/delete cycles (tests/soak_test.go).
SOAK_CYCLES ?= 200
test:
	scripts/install-deps.sh
	$(MAKE) all
	$(MAKE) cross
	$(GO) vet ./...
	$(MAKE) conformance-floor
	SKIFF_BIN=$(CURDIR)/bin/skiff SKIFF_SOAK_CYCLES=$(SOAK_CYCLES) $(GO) test -count=1 -timeout 40m ./...

# Each fuzz target for FUZZTIME; their seeds also run in every `go test`.
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./sandbox/oci -run '^$$' -fuzz '^FuzzParseSpec$$' -fuzztime $(FUZZTIME)
	$(GO) test ./sandbox/state -run '^$$' -fuzz '^FuzzValidateID$$' -fuzztime $(FUZZTIME)
	$(GO) test ./config -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME)
	$(GO) test ./agentclient/protocol -run '^$$' -fuzz '^FuzzReadFrame$$' -fuzztime $(FUZZTIME)
	$(GO) test ./agentclient -run '^$$' -fuzz '^FuzzGuestConnFilter$$' -fuzztime $(FUZZTIME)
	$(GO) test ./agentclient -run '^$$' -fuzz '^FuzzClientAgainstHostilePeer$$' -fuzztime $(FUZZTIME)
	$(GO) test ./hypervisor -run '^$$' -fuzz '^FuzzQMPReader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/logtail -run '^$$' -fuzz '^FuzzConsoleTail$$' -fuzztime $(FUZZTIME)
	$(GO) test ./agent/container -run '^$$' -fuzz '^FuzzHomeIn$$' -fuzztime $(FUZZTIME)

# OCI runtime-tools v0.9.0 validation programs against runc and skiff, one
# markdown table (conformance/ has its own go.mod). Only some programs:
# make conformance PROGS="hostname kill"
conformance: all
	GO=$(GO) scripts/conformance.sh $(PROGS)

# The conformance floor (part of `make test`): skiff alone on the programs
# of conformance/floor.txt, each failure retried once; fails naming any
# program that fails twice. ~2.5 minutes under TCG.
conformance-floor: all
	GO=$(GO) scripts/conformance.sh --floor

# Each script's tables as it runs (kept in $(BENCH_OUT)), then the one
# table of them all (scripts/bench-table.sh).
BENCH_OUT ?= build/bench
bench: all $(FLOOR_INITRD)
	mkdir -p $(BENCH_OUT)
	bash -o pipefail -c 'GO=$(GO) scripts/bench.sh | tee $(BENCH_OUT)/bench.txt'
	bash -o pipefail -c 'scripts/bench-more.sh | tee $(BENCH_OUT)/bench-more.txt'
	GO=$(GO) scripts/bench-pods.sh
	bash -o pipefail -c 'scripts/bench-density.sh | tee $(BENCH_OUT)/bench-density.txt'
	scripts/bench-storage.sh
	scripts/bench-table.sh $(BENCH_OUT)

install: all
	install -d $(BINDIR) $(SHAREDIR)
	install -m 0755 bin/skiff $(BINDIR)/skiff
	install -m 0644 $(GUEST_DIR)/vmlinux $(GUEST_DIR)/initramfs.img $(GUEST_DIR)/guest.json $(SHAREDIR)/
	install -m 0644 config.toml.example $(SHAREDIR)/config.toml.example
	if [ -f $(GUEST_DIR)/vmlinux-minimal ]; then install -m 0644 $(GUEST_DIR)/vmlinux-minimal $(GUEST_DIR)/initramfs-minimal.img $(SHAREDIR)/; fi

uninstall:
	rm -f $(BINDIR)/skiff
	rm -f $(SHAREDIR)/vmlinux $(SHAREDIR)/initramfs.img $(SHAREDIR)/guest.json $(SHAREDIR)/config.toml.example
	rm -f $(SHAREDIR)/vmlinux-minimal $(SHAREDIR)/initramfs-minimal.img
	-rmdir $(SHAREDIR) 2>/dev/null

# clean keeps build/cache (the downloaded kernel package); distclean drops it.
clean:
	rm -rf bin $(GUEST_DIR) build/skiff-agent $(DEMO_BUNDLE) $(FLOOR_INITRD) build/run

distclean: clean
	rm -rf build

FORCE:

# The man page, generated from the command line's definitions (skiff man).
.PHONY: man
man: bin/skiff
	mkdir -p docs
	bin/skiff man > docs/skiff.8
