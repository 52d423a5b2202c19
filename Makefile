# rekey — build, test, benchmark, demo, fuzz.
GO        ?= go
PKGS      := ./...
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BIN       := bin/rekey
# Fuzz targets as package:FuzzName:count. `make fuzz` runs each for
# FUZZTIME; `make test` runs each for its count of inputs (one to three
# seconds each on two cores). The short run counts inputs rather than
# seconds because Go 1.26's fuzzing coordinator can fail a target with a
# bare "context deadline exceeded" when a -fuzztime duration ends while a
# worker is busy (golang/go#75804, fixed in Go 1.27); a count has no
# deadline to race. A bare deadline failure of `make fuzz` is that race,
# not a finding: a finding writes its input to testdata/fuzz.
FUZZ_TARGETS ?= agent/payload:FuzzParse:8000x agent/payload:FuzzDecrypt:1000x \
	agent/payload:FuzzParsePrivateKey:60000x agent/payload:FuzzCheckBounds:30000x
FUZZTIME     ?= 60s
CROSS     := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
# Linux packages (make package): semver from the last tag, for the host arch.
PKG_ARCH    ?= $(shell $(GO) env GOARCH)
PKG_TAG     := $(patsubst v%,%,$(shell git describe --tags --abbrev=0 2>/dev/null))
PKG_VERSION ?= $(if $(PKG_TAG),$(PKG_TAG),0.1.0)

.PHONY: all build tools test fmt-check vet staticcheck lint-ci unit cross fuzz fuzz-short bench bench-speed demo clean package package-check soak man

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/rekey

test: tools fmt-check vet staticcheck lint-ci unit cross fuzz-short

# The Debian tools the tests drive (age, openssl, python3, shellcheck, rpm,
# curl): installed with apt when missing and running as root, otherwise named.
tools:
	@.ci/tools

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) tool staticcheck $(PKGS)

# The GitHub Actions workflow, checked by actionlint (a Go tool in go.mod;
# it runs shellcheck on the run: scripts when shellcheck is installed).
lint-ci:
	$(GO) tool actionlint .github/workflows/ci.yml

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

cross:
	@set -e; for t in $(CROSS); do \
		echo "CGO_ENABLED=0 build $$t"; \
		CGO_ENABLED=0 GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build -o /dev/null ./...; \
	done

# make fuzz runs each target for FUZZTIME, make fuzz-short for its count.
fuzz: FUZZFOR = $(FUZZTIME)
fuzz-short: FUZZFOR = count
fuzz fuzz-short:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; budget=$(FUZZFOR); \
		[ "$$budget" = count ] && budget=$${rest#*:}; \
		echo "fuzz $$pkg:$$name for $$budget"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $$budget ./$$pkg; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m $(PKGS)

# The speed figures of docs/BENCHMARKS.md ("Speed"), each with the load
# average before it: push latency of the watcher, push → cut-over event,
# status during rotations (10,000 devices), device pages and status at
# 1,000,000 devices (each in the test process, then against `rekey run` in
# a process of its own), and an idle agent process over a minute. Run it on
# a quiet machine.
SPEED_BENCHES := ./agent/source/:PushLatency:300x ./agent/:PushToCutoverEvent:1x \
	./agent/:StatusDuringRotations:100000x ./agent/:StatusAgentProcess:100000x \
	./agent/:MillionDevices:100000x ./agent/:MillionDevicesAgentProcess:100000x ./agent/:IdleProcess:1x
bench-speed:
	@set -e; for t in $(SPEED_BENCHES); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; n=$${rest#*:}; \
		echo "loadavg before $$name: $$(cat /proc/loadavg 2>/dev/null)"; \
		$(GO) test -run '^$$' -bench "^Benchmark$$name\$$" -benchtime $$n -timeout 60m $$pkg; \
	done; echo "loadavg after: $$(cat /proc/loadavg 2>/dev/null)"

demo:
	$(GO) run ./cmd/rekey demo

# Soak and load (minutes; `make test` runs the same tests at a small count):
# SOAK_CHANGES payload changes with SIGKILLs of the agent process, then
# LOAD_ROTATIONS rotations under 200 API clients and 50 event subscribers.
# SOAK_FLAGS=-race adds the race detector (about ten times slower).
SOAK_CHANGES    ?= 2000
LOAD_ROTATIONS  ?= 300
LOAD_ITERATIONS ?= 50
SOAK_FLAGS      ?=
soak:
	REKEY_SOAK_CHANGES=$(SOAK_CHANGES) REKEY_LOAD_ROTATIONS=$(LOAD_ROTATIONS) REKEY_LOAD_ITERATIONS=$(LOAD_ITERATIONS) \
		$(GO) test $(SOAK_FLAGS) -count=1 -v -timeout 60m -run 'TestSoak|TestLoad' ./agent/soak/

clean:
	rm -rf bin dist

# The man page, generated from the command table (rekey's hidden 'man'
# command); flag defaults are this machine's platform's. Not committed:
# TestManPageDescribesEveryCommandFromTheTable checks what it is built from.
man:
	@mkdir -p dist
	$(GO) run ./cmd/rekey man > dist/rekey.1

# .deb and .rpm into dist/ with nfpm (a Go tool in go.mod: nothing else needed).
package: man
	CGO_ENABLED=0 GOOS=linux GOARCH=$(PKG_ARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/linux-$(PKG_ARCH)/rekey ./cmd/rekey
	@set -e; for p in deb rpm; do \
		VERSION=$(PKG_VERSION) ARCH=$(PKG_ARCH) $(GO) tool nfpm package --config packaging/linux/nfpm.yaml --packager $$p --target dist/; \
	done

# Installs the .deb on this machine (root), checks it, then purges it.
package-check: tools package
	packaging/linux/package-check.sh dist/rekey_$(PKG_VERSION)_$(PKG_ARCH).deb $(wildcard dist/rekey-$(PKG_VERSION)-1.*.rpm)
