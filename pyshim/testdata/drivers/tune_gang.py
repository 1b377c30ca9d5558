"""TorchTrainer trials of 2 and 4 workers, each holding 3 of the node's 4
CPUs: no two fit at once, so they run one after the other."""
import json
import os
import time

import torch
import torch.distributed as dist

import rtrain
from rtrain import ScalingConfig, tune
from rtrain.torch import TorchTrainer


def train_func(config):
    t = torch.ones(1)
    dist.all_reduce(t)
    start = time.time()
    time.sleep(1)
    rtrain.report({"world": t.item(), "start": start, "end": time.time(), "lr": config["lr"]})


if __name__ == "__main__":
    rtrain.init(num_cpus=4)
    trainer = TorchTrainer(train_func, train_loop_config={"lr": 0.1},
                           scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1.5}))
    results = tune.Tuner(
        trainer,
        param_space={
            "train_loop_config": {"lr": tune.grid_search([0.1, 0.2])},
            "scaling_config": tune.grid_search([
                ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1.5}),
                ScalingConfig(num_workers=4, resources_per_worker={"CPU": 0.75}),
            ]),
        },
        run_config=rtrain.RunConfig(name="gang", storage_path=os.environ["STORAGE"]),
    ).fit()
    print(json.dumps({
        "runs": sorted([[r.metrics["world"], r.metrics["start"], r.metrics["end"], r.metrics["lr"]] for r in results], key=lambda x: x[1]),
        "errors": results.num_errors,
    }))
