"""The sweep benchmark's programs.

    python bench_tune.py sweep     BENCH_TRIALS trials of BENCH_LENGTH seconds each, on a node offering BENCH_CPUS
    python bench_tune.py first     the script for `rtrain fit`: stamps its first line

A trial stamps its first line and sleeps; the sweep prints one JSON line:
fit() wall time, its errors, and each trial's start latency (from the
moment the runner started the trial's job to the trainable's first line).
"""
import time

FIRST = time.time()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402


def trainable(config):
    first = time.time()
    from rtrain import tune
    from rtrain.tune import _session

    time.sleep(float(os.environ["BENCH_LENGTH"]))
    tune.report(first=first, scheduled=_session._trial.get("scheduled", 0.0))


def sweep():
    import rtrain
    from rtrain import tune

    rtrain.init(num_cpus=float(os.environ["BENCH_CPUS"]))
    n = int(os.environ["BENCH_TRIALS"])
    t0 = time.time()
    grid = tune.Tuner(
        trainable,
        param_space={"i": tune.grid_search(list(range(n)))},
        run_config=rtrain.RunConfig(name="bench", storage_path=os.environ["BENCH_STORAGE"]),
    ).fit()
    took = time.time() - t0
    runs = sorted((r.metrics["scheduled"], r.metrics["first"]) for r in grid if r.metrics and "first" in r.metrics)
    latency = [first - scheduled for scheduled, first in runs]
    # The first wave (as many as fit at once) never waits for room.
    wave = latency[: int(float(os.environ["BENCH_CPUS"]))]
    print(json.dumps({"fit": took, "trials": len(grid), "errors": grid.num_errors, "latency": latency, "wave": wave}))


if __name__ == "__main__":
    if sys.argv[1:] == ["sweep"]:
        sweep()
    elif sys.argv[1:] == ["first"]:
        print(f"BENCH first {FIRST:.6f}", flush=True)
    else:
        sys.exit("usage: bench_tune.py sweep|first")
