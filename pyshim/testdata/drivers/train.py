"""A driver as a user writes one: TorchTrainer(...).fit(), checkpoints, resume.

EPOCHS and STORAGE come from the environment; it prints one JSON line of what
the Result said, last.
"""
import json
import os
import tempfile

import torch
import torch.distributed as dist

import rtrain
from rtrain import Checkpoint, RunConfig, ScalingConfig
from rtrain.torch import TorchTrainer, prepare_model


def train_func(config):
    model = prepare_model(torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"])
    start = 0
    ckpt = rtrain.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            start = torch.load(os.path.join(d, "state.pt"))["epoch"] + 1
    for epoch in range(start, config["epochs"]):
        loss = model(torch.randn(16, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        world = torch.ones(1)
        dist.all_reduce(world)
        with tempfile.TemporaryDirectory() as d:
            if rtrain.get_context().get_world_rank() == 0:
                torch.save({"epoch": epoch}, os.path.join(d, "state.pt"))
            rtrain.report({"epoch": epoch, "world": world.item()}, checkpoint=Checkpoint.from_directory(d))
        print(f"epoch {epoch} done", flush=True)
    return {"rank": rtrain.get_context().get_world_rank(), "last": config["epochs"] - 1}


if __name__ == "__main__":
    result = TorchTrainer(
        train_func,
        scaling_config=ScalingConfig(num_workers=2),
        train_loop_config={"lr": 0.1, "epochs": int(os.environ["EPOCHS"])},
        run_config=RunConfig(name="drv", storage_path=os.environ["STORAGE"]),
    ).fit()
    with result.checkpoint.as_directory() as d:
        saved = torch.load(os.path.join(d, "state.pt"))["epoch"]
    print(json.dumps({
        "metrics": result.metrics,
        "epochs": list(result.metrics_dataframe["epoch"]),
        "checkpoint": result.checkpoint.path,
        "saved_epoch": saved,
        "path": result.path,
        "best": len(result.best_checkpoints),
        "returned": result.return_value,
    }))
