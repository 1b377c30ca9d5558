"""Ray Train V2's style: each trial's trainable builds a TorchTrainer and
calls fit(); TuneReportCallback passes the training run's reports up."""
import json
import os

import torch
import torch.distributed as dist

import rtrain
from rtrain import ScalingConfig, tune
from rtrain.torch import TorchTrainer
from rtrain.tune.integration.ray_train import TuneReportCallback


def train_func(config):
    t = torch.ones(1)
    dist.all_reduce(t)
    ctx = rtrain.get_context()
    for epoch in range(3):
        rtrain.report({"loss": config["lr"] * (3 - epoch), "world": t.item(),
                       "inner_trial_id": ctx.get_trial_id()})


def trainable(config):
    trial_id = rtrain.get_context().get_trial_id()
    trainer = TorchTrainer(
        train_func, train_loop_config={"lr": config["lr"]},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=rtrain.RunConfig(storage_path=os.environ["STORAGE"], callbacks=[TuneReportCallback()]),
    )
    result = trainer.fit()
    tune.report({"final": result.metrics["loss"], "outer_trial_id": trial_id,
                 "train_run": os.path.basename(result.path)})


if __name__ == "__main__":
    rtrain.init(num_cpus=4)
    results = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 0}),
        param_space={"lr": tune.grid_search([0.1, 0.2])},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=rtrain.RunConfig(name="v2", storage_path=os.environ["STORAGE"]),
    ).fit()
    outside = rtrain.get_context().get_trial_id()
    print(json.dumps({
        "trials": [{
            "id": r.metrics["trial_id"], "iteration": r.metrics["training_iteration"],
            "final": r.metrics.get("final"), "outer": r.metrics.get("outer_trial_id"),
            "run": r.metrics.get("train_run"), "lr": r.config["lr"],
        } for r in results],
        "losses": sorted(r.metrics_dataframe["loss"].dropna().tolist() for r in results),
        "errors": results.num_errors,
        "outside": outside,
    }))
