#!/usr/bin/env bash
# Regenerates cluster/clusterpb from cluster/clusterpb/cluster.proto with
# pinned code generators, installing protoc (Debian's protobuf-compiler)
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v protoc >/dev/null 2>&1; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "proto: protoc is missing; run: sudo apt-get install -y protobuf-compiler" >&2
		exit 1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
fi
gobin="$(go env GOPATH | cut -d: -f1)/bin"
GOBIN="$gobin" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN="$gobin" go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
cd cluster/clusterpb
PATH="$gobin:$PATH" protoc --go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative cluster.proto
echo "proto: regenerated cluster/clusterpb"
