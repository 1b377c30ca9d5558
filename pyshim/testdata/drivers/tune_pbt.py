"""PBT on a toy where a higher lr scores more: the low-lr trials go on from
the checkpoints of better ones."""
import json
import os
import tempfile
import time

import rtrain
from rtrain import tune
from rtrain.tune.schedulers import PopulationBasedTraining


def trainable(config):
    me = tune.get_context().get_trial_id()
    step, origins = 0, []
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                state = json.load(f)
        step, origins = state["step"], state["origins"]
        if state["owner"] != me:
            origins = origins + [state["owner"]]
    while step < 12:
        step += 1
        # Slow enough that a trial started later reaches each perturbation
        # point before the first trial has passed the next one: PBT can
        # exploit only from trials that have recorded a checkpoint there.
        time.sleep(0.25)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"step": step, "owner": me, "origins": origins}, f)
            tune.report({"score": config["lr"] * 100, "origins": ",".join(origins)}, checkpoint=rtrain.Checkpoint.from_directory(d))


if __name__ == "__main__":
    rtrain.init(num_cpus=4)
    pbt = PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=3,
        hyperparam_mutations={"lr": [0.1, 0.2, 0.3, 0.4]}, quantile_fraction=0.25, resample_probability=0.0,
    )
    results = tune.Tuner(
        trainable,
        param_space={"lr": tune.grid_search([0.1, 0.2, 0.3, 0.4])},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=pbt),
        run_config=rtrain.RunConfig(name="pbt", storage_path=os.environ["STORAGE"],
                                    checkpoint_config=rtrain.CheckpointConfig(num_to_keep=1)),
    ).fit()
    print(json.dumps({
        "trials": [{"id": r.metrics["trial_id"], "origins": r.metrics["origins"], "score": r.metrics["score"],
                    "iteration": r.metrics["training_iteration"]} for r in results],
        "errors": results.num_errors,
        # What retention left: each trial's committed checkpoints.
        "kept": sorted(len([c for c in os.listdir(r.path) if c.startswith("checkpoint_")]) for r in results),
    }))
