#!/usr/bin/env bash
# Installs on a Debian machine what is missing for one make target:
#
#   scripts/install-deps.sh run     build rtrain and run its example (make run)
#   scripts/install-deps.sh test    that, and what the tests use (make test)
#   scripts/install-deps.sh bench   that of run, and what the benchmarks compare against (make bench)
#
# Go must already be there. What is there is left alone, so it is safe to
# re-run. A new dependency is one `need PACKAGE CHECK...` line in the set that
# uses it: PACKAGE (Debian's) is installed unless CHECK succeeds.
set -euo pipefail

usage() { echo "usage: $0 run|test|bench" >&2; exit 2; }
[ $# -eq 1 ] || usage

if ! command -v go >/dev/null 2>&1; then
	echo "install-deps: Go is missing; install Go 1.26 or newer (https://go.dev/doc/install) and re-run" >&2
	exit 1
fi

need_apt=()
need_minio=0

need() {
	local pkg=$1
	shift
	"$@" >/dev/null 2>&1 || need_apt+=("$pkg")
}
has_cmd() { command -v "$1"; }
# The python the Makefile lays the package out for and the tests run.
has_module() { /usr/bin/python3 -c "import $1"; }
# Whether python $1 can import torch; has_torch: any python rtrain fit
# would look at.
torch_in() { [ -x "$1" ] && "$1" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'; }
has_torch() {
	local py
	for py in "${RTRAIN_PYTHON:-}" $(type -ap python3) /usr/bin/python3; do
		[ -n "$py" ] && torch_in "$py" && return 0
	done
	return 1
}
has_ip() { has_cmd ip || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ]; }
has_etcd() { has_cmd etcd || [ -x /usr/bin/etcd ]; }

run_deps() {
	# go-nvml (GPU discovery) and the race detector need cgo.
	need gcc has_cmd gcc
	need libc6-dev test -e /usr/include/stdio.h
	need python3-torch has_torch
	# The Python driver API (rtrain.TorchTrainer, rtrain.tune) ships the
	# training function to the workers with cloudpickle: every node that
	# runs workers needs it.
	need python3-cloudpickle has_module cloudpickle
}

test_deps() {
	run_deps
	# The tests run /usr/bin/python3 (RTRAIN_TEST_PYTHON), which must have
	# torch even where another python3 on PATH has it.
	need python3-torch torch_in "${RTRAIN_TEST_PYTHON:-/usr/bin/python3}"
	# The wheel's tests install it into venvs, which need venv (with
	# ensurepip) and pip.
	need python3-venv has_module ensurepip
	need python3-pip has_module pip
	# rtrain.tune's: numpy for search spaces and schedulers, optuna for
	# OptunaSearch, pandas for the results' data frames (a user needs
	# optuna and pandas only to use those).
	need python3-numpy has_module numpy
	need python3-optuna has_module optuna
	need python3-pandas has_module pandas
	# A cluster test looks for leftover workers with pgrep.
	need procps has_cmd pgrep
	# The dashboard's browser test drives headless Chromium.
	need chromium has_cmd chromium
	# The multi-host tests (internal/netns) build networks of namespaces
	# with ip; a user's PATH may lack /usr/sbin, where it lives.
	need iproute2 has_ip
	# The head's etcd store (cluster/etcdstore) is tested against a real
	# etcd, Debian's 3.4 server, which internal/etcdserver starts itself
	# on free ports.
	need etcd-server has_etcd
	# The checkpoint tests run a real S3 server.
	need_minio=1
}

bench_deps() {
	run_deps
	# The driver benchmark pip-installs the wheel into a venv.
	need python3-venv has_module ensurepip
	need python3-pip has_module pip
	# Checkpoint throughput: to and from MinIO, beside the AWS CLI and
	# rclone moving the same bytes.
	need awscli has_cmd aws
	need rclone has_cmd rclone
	need_minio=1
}

case "$1" in
run) run_deps ;;
test) test_deps ;;
bench) bench_deps ;;
*) usage ;;
esac

if [ ${#need_apt[@]} -gt 0 ]; then
	mapfile -t need_apt < <(printf '%s\n' "${need_apt[@]}" | sort -u)
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing ${need_apt[*]}; run: sudo apt-get install -y --no-install-recommends ${need_apt[*]}" >&2
		exit 1
	fi
	echo "install-deps: installing ${need_apt[*]}" >&2
	start=$(date +%s)
	export DEBIAN_FRONTEND=noninteractive
	# No package may start a service: etcd-server's would listen on
	# 2379 and keep data in /var/lib/etcd; the tests start the servers
	# they use, on free ports (so one running anyway is no matter).
	# policy-rc.d is Debian's switch for that (101: forbidden);
	# one already there is left alone.
	no_services=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		no_services=1
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
	if [ "$no_services" = 1 ]; then
		rm -f /usr/sbin/policy-rc.d
		trap - EXIT
	fi
	echo "install-deps: installed in $(($(date +%s) - start))s" >&2
fi

# MinIO, built from the Go module proxy once (about 3 minutes on 2 cores)
# and kept in $(go env GOPATH)/bin, outside the clone. Pinned so every
# machine tests against the same server.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
gobin="$(go env GOBIN)"
[ -n "$gobin" ] || gobin="$(go env GOPATH | cut -d: -f1)/bin"
if [ "$need_minio" = 1 ] && [ "${RTRAIN_SKIP_MINIO:-}" != 1 ] && ! command -v minio >/dev/null 2>&1 && [ ! -x "$gobin/minio" ]; then
	echo "install-deps: building the MinIO server for the S3 tests and benchmarks (once; a few minutes)" >&2
	start=$(date +%s)
	CGO_ENABLED=0 go install "github.com/minio/minio@$MINIO_VERSION"
	echo "install-deps: minio installed in $gobin after $(($(date +%s) - start))s" >&2
fi
