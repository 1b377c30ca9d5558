"""The report() benchmark's job: how long rtrain.report(checkpoint=...) holds
the training loop, next to a plain local copy of the same files.

Rank 0 writes a checkpoint directory of $BENCH_MB MiB (a few shards), then for
$BENCH_ROUNDS rounds times, in alternating order, shutil.copytree of the
directory (the anchor: what staging has to do at least) and report() with
the directory attached. Between rounds it waits $BENCH_GAP seconds, as
training would, so the previous upload is done. It prints one line per
measure: "BENCH copy <seconds>" or "BENCH report <seconds>".
"""
import os
import shutil
import tempfile
import time

import rtrain

rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
size = int(os.environ.get("BENCH_MB", "256")) << 20
gap = float(os.environ.get("BENCH_GAP", "1"))
rank = rtrain.get_context().get_world_rank()

src = tempfile.mkdtemp(prefix="bench-report-")
shards = 4
for i in range(shards):
    with open(os.path.join(src, f"shard_{i}.pt"), "wb") as f:
        f.write(os.urandom(size // shards))
    os.sync()


def copy():
    dst = tempfile.mkdtemp(prefix="bench-copy-")
    t0 = time.perf_counter()
    shutil.copytree(src, dst, dirs_exist_ok=True)
    took = time.perf_counter() - t0
    shutil.rmtree(dst)
    return took


def report(step):
    t0 = time.perf_counter()
    rtrain.report({"step": step}, checkpoint=rtrain.Checkpoint.from_directory(src) if rank == 0 else None)
    return time.perf_counter() - t0


for r in range(rounds):
    order = [("copy", copy), ("report", lambda: report(r))]
    if r % 2:
        order.reverse()
    for name, fn in order:
        took = fn()
        if rank == 0:
            print(f"BENCH {name} {took:.6f}", flush=True)
        time.sleep(gap)
shutil.rmtree(src)
