# rtrain: `make run` sets up, builds and runs the example job on this machine;
# `make test` sets up and runs every test. Both install what is missing.

GO      ?= go
BIN     := bin/rtrain
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/rtrain/rtrain/internal/version.Version=$(VERSION)
# Tests that start real PyTorch jobs take a while on two cores.
TEST_TIMEOUT ?= 15m

.PHONY: all deps build run test test-short vet fmt bench clean proto

all: build

deps:
	@scripts/install-deps.sh

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/rtrain

run: deps build
	./$(BIN) fit --workers 4 examples/train_rtrain.py

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

test: deps vet
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

test-short:
	$(GO) test -short -count=1 ./...

# Micro-benchmarks, then rtrain-bench: launch time against torchrun and the
# floor, and checkpoint throughput (1 GiB to and from MinIO, and to a local
# directory) against a plain disk write and loopback TCP. It rewrites
# docs/BENCHMARKS.md, docs/bench-launch.svg and docs/bench-checkpoint.svg
# (about 10 minutes on 2 cores; `-only launch` or `-only checkpoint` runs one
# and keeps the other's section).
bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) run ./cmd/rtrain-bench -rtrain $(BIN) -out docs

clean:
	rm -rf bin

# Regenerates cluster/clusterpb from cluster.proto; the generated code is
# committed, so only changing the .proto needs this (and protoc, which it
# installs from Debian when missing).
proto:
	@scripts/proto.sh
