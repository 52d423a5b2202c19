# rekey — build, test, benchmark, demo, fuzz.
GO        ?= go
PKGS      := ./...
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BIN       := bin/rekey
# Fuzz targets as package:FuzzName; each runs FUZZTIME under `make fuzz`
# and FUZZTIME_SHORT under `make test`.
FUZZ_TARGETS   ?= agent/payload:FuzzParse agent/payload:FuzzDecrypt agent/payload:FuzzParsePrivateKey
FUZZTIME       ?= 60s
FUZZTIME_SHORT ?= 3s
CROSS     := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64

.PHONY: all build test fmt-check vet staticcheck unit cross fuzz fuzz-short bench demo clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/rekey

test: fmt-check vet staticcheck unit cross fuzz-short

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) tool staticcheck $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

cross:
	@set -e; for t in $(CROSS); do \
		echo "CGO_ENABLED=0 build $$t"; \
		CGO_ENABLED=0 GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build -o /dev/null ./...; \
	done

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) ./$${t%:*}; \
	done

fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_SHORT)

bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m $(PKGS)

demo:
	$(GO) run ./cmd/rekey demo

clean:
	rm -rf bin dist
