"""ASHA over four constant learning curves, one trial at a time."""
import json
import os
import time

import rtrain
from rtrain import tune
from rtrain.tune.schedulers import ASHAScheduler


def trainable(config):
    for _ in range(9):
        tune.report({"score": config["v"]})
        time.sleep(0.05)


if __name__ == "__main__":
    rtrain.init(num_cpus=4)
    results = tune.Tuner(
        trainable,
        param_space={"v": tune.grid_search([1, 4, 2, 3])},
        tune_config=tune.TuneConfig(
            metric="score", mode="max", max_concurrent_trials=1,
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=9, grace_period=1, reduction_factor=3),
        ),
        run_config=rtrain.RunConfig(name="asha", storage_path=os.environ["STORAGE"]),
    ).fit()
    print(json.dumps({
        "iterations": {str(r.config["v"]): r.metrics["training_iteration"] for r in results},
        "errors": results.num_errors,
        "best": results.get_best_result().config["v"],
    }))
