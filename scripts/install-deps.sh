#!/usr/bin/env bash
# Installs what rtrain needs to build, run its example and run its tests on a
# Debian machine: Go must already be there; PyTorch (Debian's python3-torch)
# and the tools the tests use are installed when missing. Safe to re-run.
set -euo pipefail

need_apt=()

if ! command -v go >/dev/null 2>&1; then
	echo "install-deps: Go is missing; install Go 1.26 or newer (https://go.dev/doc/install) and re-run" >&2
	exit 1
fi

has_torch() {
	local py
	for py in "${RTRAIN_PYTHON:-}" $(type -ap python3) /usr/bin/python3; do
		[ -n "$py" ] && [ -x "$py" ] || continue
		if "$py" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)' 2>/dev/null; then
			return 0
		fi
	done
	return 1
}
has_torch || need_apt+=(python3-torch)

# The Python driver API (rtrain.TorchTrainer) ships the training function to
# the workers with cloudpickle: every node that runs workers needs it. The
# wheel's tests install it into venvs, which need venv (with ensurepip) and
# pip.
has_module() { /usr/bin/python3 -c "import $1" >/dev/null 2>&1; }
has_module cloudpickle || need_apt+=(python3-cloudpickle)
has_module ensurepip || need_apt+=(python3-venv)
has_module pip || need_apt+=(python3-pip)
# rtrain.tune's tests: numpy for the search spaces and schedulers, optuna for
# OptunaSearch (a user needs optuna only to use it).
has_module numpy || need_apt+=(python3-numpy)
has_module optuna || need_apt+=(python3-optuna)

# go-nvml (GPU discovery) and the race detector need cgo.
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)

# The tests look at the process table and cgroups with these.
command -v ps >/dev/null 2>&1 || need_apt+=(procps)
# The dashboard's browser test drives headless Chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The multi-host tests (internal/netns) build networks of namespaces with ip;
# a user's PATH may lack /usr/sbin, where it lives.
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need_apt+=(iproute2)
# `make bench` (RTRAIN_BENCH_DEPS=1): the checkpoint benchmark measures Debian's
# AWS CLI (/usr/bin/aws) and rclone beside rtrain; it leaves out one that is missing.
if [ "${RTRAIN_BENCH_DEPS:-}" = 1 ]; then
	[ -x /usr/bin/aws ] || need_apt+=(awscli)
	command -v rclone >/dev/null 2>&1 || need_apt+=(rclone)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing ${need_apt[*]}; run: sudo apt-get install -y ${need_apt[*]}" >&2
		exit 1
	fi
	echo "install-deps: installing ${need_apt[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The checkpoint tests run a real S3 server: MinIO, built from the Go module
# proxy once (about 5 minutes on 2 cores) and kept in $(go env GOPATH)/bin,
# outside the clone. Pinned so every machine tests against the same server.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
gobin="$(go env GOBIN)"
[ -n "$gobin" ] || gobin="$(go env GOPATH | cut -d: -f1)/bin"
if [ "${RTRAIN_SKIP_MINIO:-}" != 1 ] && ! command -v minio >/dev/null 2>&1 && [ ! -x "$gobin/minio" ]; then
	echo "install-deps: building the MinIO server for the S3 tests (once; a few minutes)" >&2
	start=$(date +%s)
	CGO_ENABLED=0 go install "github.com/minio/minio@$MINIO_VERSION"
	echo "install-deps: minio installed in $gobin after $(( $(date +%s) - start ))s" >&2
fi
