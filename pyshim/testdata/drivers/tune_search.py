"""Optuna and HyperBand through the Tuner."""
import json
import os
import tempfile

import rtrain
from rtrain import tune


def quadratic(config):
    tune.report(score=-((config["x"] - 0.3) ** 2) - (config["y"] + 0.2) ** 2)


def curve(config):
    step = 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            step = int(open(os.path.join(d, "step")).read())
    start = step
    while step < 9:
        step += 1
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "step"), "w") as f:
                f.write(str(step))
            tune.report({"score": config["v"] * step, "resumed_from": start},
                        checkpoint=rtrain.Checkpoint.from_directory(d))


if __name__ == "__main__":
    rtrain.init(num_cpus=4)
    if os.environ["CASE"] == "optuna":
        from rtrain.tune.search import ConcurrencyLimiter
        from rtrain.tune.search.optuna import OptunaSearch

        results = tune.Tuner(
            quadratic,
            param_space={"x": tune.uniform(-1, 1), "y": tune.uniform(-1, 1)},
            tune_config=tune.TuneConfig(metric="score", mode="max", num_samples=20,
                                        search_alg=ConcurrencyLimiter(OptunaSearch(seed=7), max_concurrent=2)),
            run_config=rtrain.RunConfig(name="optuna", storage_path=os.environ["STORAGE"]),
        ).fit()
        best = results.get_best_result()
        print(json.dumps({"trials": len(results), "errors": results.num_errors, "best": best.metrics["score"]}))
    else:
        from rtrain.tune.schedulers import HyperBandScheduler

        results = tune.Tuner(
            curve,
            param_space={"v": tune.grid_search([1, 2, 3, 4, 5, 6, 7, 8, 9])},
            tune_config=tune.TuneConfig(metric="score", mode="max",
                                        scheduler=HyperBandScheduler(time_attr="training_iteration", max_t=9, reduction_factor=3)),
            run_config=rtrain.RunConfig(name="hyperband", storage_path=os.environ["STORAGE"]),
        ).fit()
        print(json.dumps({
            "iterations": {str(r.config["v"]): r.metrics["training_iteration"] for r in results},
            "resumed": {str(r.config["v"]): r.metrics["resumed_from"] for r in results if r.metrics.get("resumed_from")},
            "errors": results.num_errors,
            "best": results.get_best_result().config["v"],
        }))
