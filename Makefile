# rtrain: `make run` sets up, builds and runs the example job on this machine;
# `make test` sets up and runs every test; `make bench` runs the benchmarks.
# Each installs what it is missing and nothing more (deps-run, deps-test,
# deps-bench: scripts/install-deps.sh says what each holds).
# `make wheel` builds the Python package with the binary in it, for pip.

GO      ?= go
BIN     := bin/rtrain
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/rtrain/rtrain/internal/version.Version=$(VERSION)
# The python that `make run` and `make wheel` use (Debian's, which has torch).
PYTHON  ?= /usr/bin/python3
# Tests that start real PyTorch jobs take a while on two cores.
TEST_TIMEOUT ?= 15m

.PHONY: all deps-run deps-test deps-bench build wheel python-path run test test-short vet fmt bench soak clean proto

all: build

deps-run deps-test deps-bench: deps-%:
	@scripts/install-deps.sh $*

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/rtrain

# dist/rtrain-<version>-py3-none-linux_<arch>.whl, the package and bin/rtrain:
# pip install dist/rtrain-*.whl (it needs no network).
wheel: build
	$(PYTHON) scripts/build-wheel.py --binary $(BIN) --version $(VERSION) --out dist

# `import rtrain` for $(PYTHON) without pip: the package as a wheel would
# install it, in build/python (bin/rtrain linked in as rtrain/_bin/rtrain),
# and rtrain.pth in that python's user site-packages putting build/python on
# its path (a venv's own site-packages, where pip puts the wheel, comes
# first). Re-running rewrites both.
python-path: build
	@$(PYTHON) scripts/build-wheel.py --binary $(BIN) --version $(VERSION) --tree build/python \
		--pth "$$($(PYTHON) -m site --user-site)/rtrain.pth" >/dev/null

run: deps-run build python-path
	./$(BIN) fit --workers 4 examples/train_rtrain.py

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

test: deps-test vet
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

test-short:
	$(GO) test -short -count=1 ./...

# Micro-benchmarks, then rtrain-bench, every figure beside its anchor
# measured in the same run: launch time against torchrun and the floor;
# checkpoint throughput (1 GiB to and from MinIO, and to a local directory)
# against a plain disk write and loopback TCP; report() against a copy; the
# scheduler at 10,000 nodes; heartbeat fan-in from 10,000 agents; recovery
# from a killed worker against torchrun --max_restarts; the Python driver's
# overhead, a 4-worker job through TorchTrainer.fit() against rtrain fit of
# the same script (the wheel built from bin/rtrain, in a venv). It rewrites
# docs/BENCHMARKS.md and its charts (about 30 minutes on 2 cores;
# `-only NAME` runs one section and keeps the others).
bench: deps-bench build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/rtrain-bench -rtrain $(BIN) -out docs

# The teardown soak: the same finished DDP job 100 times under rtrain and
# under torchrun, failures counted side by side, into BENCHMARKS.md's
# teardown section (about 20 minutes on 2 cores; SOAK_RUNS=N for more or
# fewer).
SOAK_RUNS ?= 100
soak: deps-run build
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/rtrain-bench -rtrain $(BIN) -out docs -only teardown -soak-runs $(SOAK_RUNS)

clean:
	rm -rf bin dist build

# Regenerates cluster/clusterpb from cluster.proto; the generated code is
# committed, so only changing the .proto needs this (and protoc, which it
# installs from Debian when missing).
proto:
	@scripts/proto.sh
