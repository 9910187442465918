# lvs-sync: a Consul-driven IPVS director. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go

# Expensive things built once and reused across runs: the Consul agent,
# later the VM's kernel and packages. Outside the repository on purpose.
export LVS_SYNC_CACHE ?= $(HOME)/.cache/lvs-sync

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# HCL files users copy: formatted like `hclfmt` would.
HCL_FILES = $(shell git ls-files '*.hcl' | grep -v '/testdata/' || true) $(wildcard config/testdata/dir/*.hcl)

.PHONY: help
help: ## list the targets
	@awk -F':.*## ' '/^[a-z][a-zA-Z0-9_-]*:.*## / { printf "  %-10s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/lvs-sync (static)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/lvs-sync ./cmd/lvs-sync

.PHONY: package
package: ## build bin/lvs-sync_<version>_amd64.deb (nfpm): the stripped static binary, a hardened systemd unit, /etc/lvs-sync/lvs-sync.hcl
	@# Stripped (-s -w): Debian policy 10.1 wants installed binaries stripped.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o bin/package/lvs-sync ./cmd/lvs-sync
	@scripts/package.sh

.PHONY: consul
consul: ## build the real Consul agent into $(LVS_SYNC_CACHE), once
	@scripts/build-tool.sh consul >/dev/null

.PHONY: nomad
nomad: ## build the real Nomad agent into $(LVS_SYNC_CACHE), once
	@scripts/build-tool.sh nomad >/dev/null

.PHONY: test
test: consul nomad vm-assets ## run every test: unit, real Consul and Nomad, and real traffic in a real kernel (VM)
	@scripts/need.sh python3 python3 # the Nomad example job serves HTTP with it
	@scripts/need.sh bird bird2 # the router bgp's tests announce to
	@scripts/need.sh promtool prometheus # contrib's tests check the alert rules with it
	@scripts/need.sh chromium chromium # the dashboard's browser test opens /ui/ in it
	@scripts/need.sh lintian lintian # the Debian package's test checks it
	@scripts/need.sh systemd-analyze systemd # and verifies its unit
	@scripts/deb-chroot.sh >/dev/null # and installs it into a Debian root
	@$(GO) -C tools/nfpm tool -n nfpm >/dev/null # and builds it with nfpm: built once here, not in its test's time
	LVS_SYNC_CONSUL=$$(scripts/build-tool.sh consul) LVS_SYNC_NOMAD=$$(scripts/build-tool.sh nomad) \
		LVS_SYNC_LDIRECTORD=$$(scripts/ldirectord.sh) \
		$(GO) test -race -count=1 -timeout 30m $$($(GO) list ./... | grep -v /e2e$$)
	@# The VM last, with the machine to itself: its timings (HA takeovers,
	@# lease renewals through the host's Consul) are real ones. The kernel
	@# build it boots is part of every result: named first.
	@echo "vm: kernel $$(cat "$$(scripts/vm-assets.sh 2>/dev/null)/kernel.build")"
	LVS_SYNC_CONSUL=$$(scripts/build-tool.sh consul) $(GO) test -race -count=1 -timeout 30m ./e2e
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME)

.PHONY: screenshot
screenshot: consul ## regenerate docs/dashboard.png: the browser test's screenshot of /ui/ against a real Consul
	@scripts/need.sh chromium chromium
	LVS_SYNC_CONSUL=$$(scripts/build-tool.sh consul) LVS_SYNC_SCREENSHOT=$(CURDIR)/docs/dashboard.png \
		$(GO) test -count=1 -run '^TestDashboardInChromium$$' ./cmd/lvs-sync

# How long each fuzz target runs: in `make fuzz`, and in `make test` (CI).
FUZZTIME ?= 20s
TEST_FUZZTIME ?= 10s

.PHONY: fuzz
fuzz: ## run every Go fuzz target (config, render, fallback) for FUZZTIME each (default 20s); a crasher lands in its testdata/fuzz
	@# Go <= 1.26 may fail a run at the -fuzztime deadline with a bare "context
	@# deadline exceeded" and no crasher (golang/go#75804, fixed in 1.27): that
	@# one, and only that one, is reported and not counted as a failure.
	@log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	for f in $$(git grep -l --untracked '^func Fuzz' -- '*_test.go'); do \
		dir=$$(dirname "$$f"); \
		for fn in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' "$$f" | cut -d' ' -f2); do \
			echo "fuzz $$fn in ./$$dir for $(FUZZTIME)"; \
			before=$$(ls "$$dir/testdata/fuzz/$$fn" 2>/dev/null | wc -l) || true; \
			rc=0; $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) "./$$dir" >"$$log" 2>&1 || rc=$$?; \
			awk '/^fuzz: elapsed/ { last = $$0; next } { print } END { if (last) print last }' "$$log"; \
			[ $$rc = 0 ] && continue; \
			after=$$(ls "$$dir/testdata/fuzz/$$fn" 2>/dev/null | wc -l) || true; \
			if [ "$$after" = "$$before" ] && grep -qx '    context deadline exceeded' "$$log" && ! grep -q 'Failing input written' "$$log"; then \
				echo "fuzz $$fn: Go's deadline race at the end of -fuzztime (golang/go#75804), no crasher: not a failure"; \
			else \
				exit 1; \
			fi; \
		done; \
	done

.PHONY: e2e
e2e: consul vm-assets ## only the real-kernel tests: boot Debian's kernel under qemu, real traffic (LVS_SYNC_KERNEL=linux-image-… for another build)
	@echo "vm: kernel $$(cat "$$(scripts/vm-assets.sh 2>/dev/null)/kernel.build")"
	LVS_SYNC_CONSUL=$$(scripts/build-tool.sh consul) $(GO) test -count=1 -timeout 30m -v -run TestInKernel ./e2e

.PHONY: vm-assets
vm-assets: ## install qemu and stage Debian's kernel, modules and tools into $(LVS_SYNC_CACHE), once
	@scripts/vm-assets.sh >/dev/null

.PHONY: lint
lint: ## gofmt, go vet, go mod tidy and hclfmt must change nothing
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	@for f in $(HCL_FILES); do \
		$(GO) tool hclfmt "$$f" | diff -u "$$f" - || { echo "hclfmt would change $$f"; exit 1; }; \
	done

.PHONY: bench
bench: consul vm-assets ## run the benchmarks: render on the host, the watcher against a real agent, netlink apply and the daemon in the VM's kernel
	LVS_SYNC_CONSUL=$$(scripts/build-tool.sh consul) $(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v '/e2e\|/internal/benchwatch')
	LVS_SYNC_CONSUL=$$(scripts/build-tool.sh consul) \
		$(GO) test -run '^$$' -bench Watch -benchtime 1x -timeout 60m ./internal/benchwatch
	LVS_SYNC_CONSUL=$$(scripts/build-tool.sh consul) $(GO) test -run '^$$' -bench InKernel -benchtime 1x -timeout 60m ./e2e

.PHONY: clean
clean: ## remove build output (the cache in $(LVS_SYNC_CACHE) stays)
	rm -rf bin

.PHONY: demo
demo: consul vm-assets ## the embedded demo: Consul on the host, lvs-sync and real traffic in a VM
	@echo "building lvs-sync and the VM's test binaries"
	@$(GO) mod download
	@# The console as it comes, less go test's own bookkeeping.
	@LVS_SYNC_CONSUL=$$(scripts/build-tool.sh consul) LVS_SYNC_E2E_RUN='^TestDemo$$' LVS_SYNC_E2E_RAW=1 \
		$(GO) test -count=1 -timeout 30m -v -run TestInKernel ./e2e 2>&1 | \
		grep --line-buffered -v '^=== RUN\|^--- PASS\|^PASS$$\|^ok \|^VMTEST-EXIT=\|^vmtest: e2e.test exited\|^ *vm_test.go:[0-9]*: vm: ' || \
		{ echo "demo: FAILED (see above)"; exit 1; }
	@echo "demo: passed: lvs-sync kept a real kernel's IPVS table in step with Consul, under real traffic (kernel $$(cat "$$(scripts/vm-assets.sh 2>/dev/null)/kernel.build"))"
