"""A driver against a cluster: rtrain.init() takes RTRAIN_ADDRESS (and
RTRAIN_TOKEN), four workers of a core each fill two 2-core agents, and the
train function uses a module of the driver's own directory, which the
workers import from the working directory shipped to their node.

It prints one JSON line of what the Result said, last.
"""
import json
import os
import socket
import tempfile

import torch
import torch.distributed as dist

import helper
import rtrain
from rtrain import Checkpoint, RunConfig, ScalingConfig
from rtrain.torch import TorchTrainer


def own_addr():
    """This worker's address on the network its rank 0 is on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((os.environ["MASTER_ADDR"], 9))
        return s.getsockname()[0]


def train_func(config):
    ctx = rtrain.get_context()
    rank = ctx.get_world_rank()
    ranks = torch.ones(1)
    dist.all_reduce(ranks)
    print(f"rank {rank} of {ctx.get_world_size()} on {own_addr()} master {os.environ['MASTER_ADDR']} helper {helper.__file__}", flush=True)
    for epoch in range(config["epochs"]):
        with tempfile.TemporaryDirectory() as d:
            if rank == 0:
                with open(os.path.join(d, "epoch"), "w") as f:
                    f.write(str(epoch))
            rtrain.report(
                {"epoch": epoch, "ranks": ranks.item(), "world": ctx.get_world_size(), "scaled": helper.scale(epoch)},
                checkpoint=Checkpoint.from_directory(d),
            )
        print(f"epoch {epoch} done", flush=True)


if __name__ == "__main__":
    rtrain.init()
    result = TorchTrainer(
        train_func,
        train_loop_config={"epochs": 2},
        scaling_config=ScalingConfig(num_workers=4, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=os.environ["RUN_NAME"]),
    ).fit()
    print(json.dumps({
        "metrics": result.metrics,
        "checkpoint": result.checkpoint.path,
        "path": result.path,
        "job_id": result.job_id,
        "name": result.name,
    }))
