"""Ray Tune's canonical program: 100 trials of a cheap trainable, each a
job on the sweep's cluster. Prints one JSON line of what the ResultGrid says."""
import json
import math
import os

import rtrain
from rtrain import tune


def train_model(lr, dropout):
    # A known optimum: lr = 1e-3, dropout = 0.25.
    return -((math.log10(lr) + 3) ** 2) - (dropout - 0.25) ** 2


def trainable(config):
    score = train_model(config["lr"], config["dropout"])
    tune.report(score=score)


if __name__ == "__main__":
    rtrain.init(num_cpus=int(os.environ.get("CPUS", "8")))
    tuner = tune.Tuner(
        trainable,
        param_space={
            "lr": tune.loguniform(1e-5, 1e-2),
            "dropout": tune.uniform(0, 0.5),
        },
        tune_config=tune.TuneConfig(num_samples=int(os.environ.get("SAMPLES", "100")), metric="score", mode="max"),
        run_config=rtrain.RunConfig(name="sweep", storage_path=os.environ["STORAGE"]),
    )
    results = tuner.fit()
    best = results.get_best_result()
    df = results.get_dataframe()
    print(json.dumps({
        "trials": len(results),
        "errors": results.num_errors,
        "terminated": results.num_terminated,
        "best_score": best.metrics["score"],
        "best_config": best.config,
        "iterations": sorted(set(df["training_iteration"])),
        "scores_match": all(
            abs(r.metrics["score"] - train_model(r.config["lr"], r.config["dropout"])) < 1e-12 for r in results
        ),
        "path": results.experiment_path,
        "lr_range": [min(df["config/lr"]), max(df["config/lr"])],
    }))
