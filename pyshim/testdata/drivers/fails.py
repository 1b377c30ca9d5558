"""Rank 1 raises while the others wait in a collective."""
import json

import torch
import torch.distributed as dist

import rtrain
from rtrain import ScalingConfig, TrainingFailedError
from rtrain.torch import TorchTrainer


def train_func():
    if rtrain.get_context().get_world_rank() == 1:
        raise ValueError("bad batch on rank 1")
    t = torch.ones(1)
    dist.all_reduce(t)


if __name__ == "__main__":
    try:
        TorchTrainer(train_func, scaling_config=ScalingConfig(num_workers=3)).fit()
    except TrainingFailedError as e:
        print(json.dumps({"message": str(e), "failures": {str(k): str(v) for k, v in e.worker_failures.items()}}))
