"""A sweep on a cluster (RTRAIN_ADDRESS): three trials in the group named
after the experiment, each reporting score = 10 * lr three times."""
import json

from rtrain import tune


def trainable(config):
    for step in range(1, 4):
        tune.report(score=config["lr"] * 10 * step / 3)


if __name__ == "__main__":
    results = tune.Tuner(
        trainable,
        param_space={"lr": tune.grid_search([0.1, 0.2, 0.3])},
        tune_config=tune.TuneConfig(metric="score", mode="max"),
        run_config=tune.RunConfig(name="clsweep"),
    ).fit()
    print(json.dumps({"trials": len(results), "errors": results.num_errors,
                      "names": sorted(f"trainable_{r.metrics['trial_id']}" for r in results)}))
