"""A Ray Train program, as Ray's docs teach them: a linear model fit by
TorchTrainer, with a --smoke-test mode that calls ray.init(num_cpus=3).

It imports Ray on purpose. rtrain runs it after the porting rule's one
mechanical rewrite (port.sh does it; see the README):

    ray.train -> rtrain,  ray.tune -> rtrain.tune,  ray -> rtrain
"""

import argparse
import os
import tempfile

import numpy as np
import torch
from torch import nn

import ray.train as train
from ray.train import Checkpoint, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer


class Line(torch.utils.data.Dataset):
    """Points on y = slope * x + intercept."""

    def __init__(self, slope, intercept, n):
        xs = np.linspace(0, 4, n, dtype=np.float32)
        self.x = torch.from_numpy(xs)[:, None]
        self.y = slope * self.x + intercept

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def train_func(config):
    train_data = torch.utils.data.DataLoader(Line(3, 1, config["points"]), batch_size=config["batch_size"], shuffle=True)
    val_data = torch.utils.data.DataLoader(Line(3, 1, 64), batch_size=config["batch_size"])
    train_data = train.torch.prepare_data_loader(train_data)
    val_data = train.torch.prepare_data_loader(val_data)
    model = train.torch.prepare_model(nn.Linear(1, 1))
    loss_fn = nn.MSELoss()
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"])

    for epoch in range(config["epochs"]):
        if train.get_context().get_world_size() > 1:
            train_data.sampler.set_epoch(epoch)
        model.train()
        for x, y in train_data:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = sum(loss_fn(model(x), y).item() for x, y in val_data) / len(val_data)
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(model.state_dict(), os.path.join(tmp, "model.pt"))
            train.report({"epoch": epoch, "loss": val}, checkpoint=Checkpoint.from_directory(tmp))


def train_linear(num_workers=2, use_gpu=False, epochs=3, storage_path=None):
    trainer = TorchTrainer(
        train_loop_per_worker=train_func,
        train_loop_config={"lr": 0.02, "batch_size": 8, "points": 256, "epochs": epochs},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(storage_path=storage_path),
    )
    result = trainer.fit()
    print(result.metrics)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", help="the cluster to run on")
    parser.add_argument("--num-workers", "-n", type=int, default=2)
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--storage-path")
    parser.add_argument("--smoke-test", action="store_true", help="finish quickly")
    args, _ = parser.parse_known_args()

    import ray

    if args.smoke_test:
        # Two workers and the trainer, as Ray counts them.
        ray.init(num_cpus=3)
        train_linear(storage_path=args.storage_path)
    else:
        ray.init(address=args.address)
        train_linear(num_workers=args.num_workers, use_gpu=args.use_gpu, epochs=args.epochs, storage_path=args.storage_path)
