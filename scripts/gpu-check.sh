#!/usr/bin/env bash
# gpu-check.sh: what `make test` cannot show without a GPU, on a machine with
# an NVIDIA GPU, its driver, and a python whose torch has CUDA. Not part of
# make test; see docs/GPU.md. Build bin/rtrain first (make build) on a machine
# with Go: this one may have none. Run as root, so that the workers get their
# cgroups and the device rule is enforced.
#
#   scripts/gpu-check.sh            # RTRAIN=path/to/rtrain and RTRAIN_PYTHON=... override
#
# It prints every check as PASS or FAIL and exits 1 if any failed.
set -u
cd "$(dirname "$0")/.."
RTRAIN=${RTRAIN:-bin/rtrain}
fails=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
step() { echo; echo "== $*"; }

[ -x "$RTRAIN" ] || { echo "no $RTRAIN: run 'make build' (on a machine with Go) and copy it here"; exit 2; }
[ "$(id -u)" = 0 ] || echo "warning: not root: rtrain cannot make cgroups, so the device rule check will fail"
work=$(mktemp -d)
# The spare GPU node lives in /dev: /tmp may be mounted nodev. Its name is
# not nvidia<N>, so rtrain does not take it for a GPU.
spare_node=/dev/rtrain-gpu-check-spare
trap 'rm -rf "$work"; rm -f "$spare_node"' EXIT

step "rtrain doctor: cgroups, NVML and the driver, the GPUs, torch with CUDA and NCCL"
"$RTRAIN" doctor --storage "$work/storage" | tee "$work/doctor.txt"
grep -q '^ok    NVML' "$work/doctor.txt" && pass "NVML and the driver found" || fail "doctor found no NVML or driver"
grep -Eq '^ok    GPUs     [1-9]' "$work/doctor.txt" && pass "GPUs found" || fail "doctor found no GPU"
grep -Eq '^ok    python .*CUDA [0-9.]+, [1-9][0-9]* GPUs visible, NCCL ' "$work/doctor.txt" &&
    pass "torch has CUDA and NCCL" || fail "torch lacks CUDA, a visible GPU or NCCL"

# The GPUs as rtrain numbers them without NVML: /dev/nvidia<N> by minor.
mapfile -t nodes < <(ls /dev | grep -E '^nvidia[0-9]+$' | sed 's/^nvidia//' | sort -n | sed 's|^|/dev/nvidia|')
ngpu=${#nodes[@]}
[ "$ngpu" -gt 0 ] || { fail "no /dev/nvidia<N>"; echo "$fails checks failed"; exit 1; }
workers=$(( ngpu < 2 ? ngpu : 2 ))
# A GPU node no job holds: a minor no GPU here has. Allowed, it would fail
# with ENXIO (no such GPU); denied by the device rule, with EPERM.
for m in $(seq 253 -1 0); do [ -e "/dev/nvidia$m" ] || { spare=$m; break; }; done
rm -f "$spare_node"
mknod "$spare_node" c 195 "$spare" 2>/dev/null || fail "cannot mknod $spare_node (not root?)"

cat > "$work/train_gpu.py" <<'EOF'
"""Trains a small model on this worker's GPU with NCCL, then tries to open
each node in CHECK_NODES and prints the outcome."""
import errno
import os

import torch
import torch.distributed as dist

import rtrain
from rtrain.torch import get_device, prepare_model

rank = rtrain.get_context().get_world_rank()
device = get_device()
model = prepare_model(torch.nn.Linear(32, 1))  # DDP over NCCL when more than one worker
if not dist.is_initialized():
    dist.init_process_group("nccl")
opt = torch.optim.SGD(model.parameters(), lr=0.05)
x = torch.randn(256, 32, device=device)
y = x.sum(1, keepdim=True)
for _ in range(50):
    loss = ((model(x) - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
one = torch.ones(1, device=device)
dist.all_reduce(one)
print("rank %d: CUDA_VISIBLE_DEVICES=%s device=%s (%s) backend=%s all_reduce=%g loss=%.4f" % (
    rank, os.environ.get("CUDA_VISIBLE_DEVICES"), device,
    torch.cuda.get_device_name(device) if device.type == "cuda" else "-",
    dist.get_backend(), one.item(), loss.item()), flush=True)
for path in os.environ["CHECK_NODES"].split(","):
    try:
        os.close(os.open(path, os.O_RDWR))
        outcome = "opened"
    except OSError as e:
        outcome = errno.errorcode[e.errno]
    print("rank %d: open %s: %s" % (rank, path, outcome), flush=True)
rtrain.report({"loss": loss.item()})
EOF

check_nodes=$(IFS=,; echo "${nodes[*]},$spare_node")
for iso in job worker; do
    step "a $workers-worker --gpu job, --gpu-isolation=$iso, NCCL on CUDA"
    "$RTRAIN" fit --workers "$workers" --gpu --gpu-isolation "$iso" --results-dir "$work/results" \
        --env CHECK_NODES="$check_nodes" "$work/train_gpu.py" 2>&1 | tee "$work/fit-$iso.txt"
    out="$work/fit-$iso.txt"
    grep -q "succeeded in" "$out" && pass "$iso: the job succeeded" || fail "$iso: the job failed"
    grep -q 'rtrain: warning' "$out" && fail "$iso: rtrain could not isolate the workers (see the warning)"
    for r in $(seq 0 $((workers - 1))); do
        line=$(grep -E "^\[rank $r\] rank $r: CUDA_VISIBLE_DEVICES=" "$out")
        if [ "$iso" = job ]; then want=$(seq -s, 0 $((workers - 1))); dev="cuda:$r"; else want=$r; dev="cuda:0"; fi
        echo "$line" | grep -q "CUDA_VISIBLE_DEVICES=$want device=$dev " &&
            pass "$iso: rank $r sees CUDA_VISIBLE_DEVICES=$want and trains on $dev" ||
            fail "$iso: rank $r: want CUDA_VISIBLE_DEVICES=$want on $dev, got: $line"
        echo "$line" | grep -q "backend=nccl all_reduce=$workers " &&
            pass "$iso: rank $r all_reduce over NCCL" || fail "$iso: rank $r: no NCCL all_reduce: $line"
        grep -q "rank $r: open $spare_node: EPERM" "$out" &&
            pass "$iso: rank $r refused $spare_node (195:$spare), a GPU node not the job's" ||
            fail "$iso: rank $r could reach $spare_node (195:$spare): $(grep "rank $r: open $spare_node" "$out")"
        for g in $(seq 0 $((ngpu - 1))); do
            mine=no
            if [ "$iso" = job ] && [ "$g" -lt "$workers" ]; then mine=yes; fi
            if [ "$iso" = worker ] && [ "$g" = "$r" ]; then mine=yes; fi
            got=$(grep -E "^\[rank $r\] rank $r: open ${nodes[$g]}: " "$out" | sed 's/.*: //')
            if [ "$mine" = yes ]; then
                [ "$got" = opened ] && pass "$iso: rank $r opens ${nodes[$g]}, its own" || fail "$iso: rank $r cannot open its ${nodes[$g]}: $got"
            else
                [ "$got" = EPERM ] && pass "$iso: rank $r refused ${nodes[$g]}, not its own" || fail "$iso: rank $r opened ${nodes[$g]}: $got"
            fi
        done
    done
done

echo
if [ "$fails" -gt 0 ]; then echo "$fails checks FAILED"; exit 1; fi
echo "every check passed"
