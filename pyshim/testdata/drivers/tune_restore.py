"""A sweep whose driver may be killed, and restored: each trial counts to
STEPS, one checkpoint a step, resuming from its checkpoint."""
import json
import os
import tempfile
import time

import rtrain
from rtrain import tune


def counter(config):
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            start = int(open(os.path.join(d, "n")).read())
    for n in range(start + 1, config["steps"] + 1):
        time.sleep(0.2)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "n"), "w") as f:
                f.write(str(n))
            tune.report({"n": n, "started_at": start}, checkpoint=rtrain.Checkpoint.from_directory(d))
        print(f"step {n}", flush=True)


if __name__ == "__main__":
    rtrain.init(num_cpus=2)
    path = os.path.join(os.environ["STORAGE"], "restore")
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, counter)
    else:
        tuner = tune.Tuner(
            counter,
            param_space={"steps": 10, "i": tune.grid_search([0, 1, 2, 3])},
            run_config=rtrain.RunConfig(name="restore", storage_path=os.environ["STORAGE"]),
        )
    results = tuner.fit()
    print(json.dumps({
        "n": sorted(r.metrics["n"] for r in results),
        "resumed": sorted(r.metrics["started_at"] for r in results),
        "errors": results.num_errors,
        "trials": len(results),
    }))
