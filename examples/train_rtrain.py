"""An rtrain-style DDP script: the rtrain package does the distributed wiring.

    rtrain fit --workers 4 examples/train_rtrain.py

Mirrors Ray Train's API (get_context, report, prepare_model,
prepare_data_loader), so a Ray Train script ports by changing its imports.
It fits a small MLP to synthetic data (no downloads) and reports the loss of
every epoch with a checkpoint (model, optimizer, epoch), so

    rtrain fit --workers 4 --name demo examples/train_rtrain.py
    rtrain fit --workers 4 --name demo --resume examples/train_rtrain.py -- --epochs 10

continues where the first run ended. With --out DIR each rank writes its final
parameters to DIR/params_rank<R>.json.
"""
import argparse
import json
import os
import tempfile

import torch
from torch.utils.data import DataLoader, TensorDataset

import rtrain
from rtrain.torch import prepare_data_loader, prepare_model


def synthetic_data(n=4096, features=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    true_w = torch.randn(features, 1, generator=g)
    y = torch.tanh(x @ true_w) + 0.05 * torch.randn(n, 1, generator=g)
    return TensorDataset(x, y)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    ctx = rtrain.get_context()
    torch.manual_seed(0)
    model = prepare_model(torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)))
    loader = prepare_data_loader(DataLoader(synthetic_data(), batch_size=args.batch_size, shuffle=True))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = torch.nn.MSELoss()
    net = model.module if hasattr(model, "module") else model

    start = 0
    ckpt = rtrain.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            net.load_state_dict(torch.load(os.path.join(d, "model.pt")))
            opt.load_state_dict(torch.load(os.path.join(d, "optim.pt")))
            with open(os.path.join(d, "meta.json")) as f:
                start = json.load(f)["epoch"] + 1
        if ctx.get_world_rank() == 0:
            print(f"resuming from {ckpt.uri or ckpt.path} at epoch {start}", flush=True)

    for epoch in range(start, args.epochs):
        if ctx.get_world_size() > 1:
            loader.sampler.set_epoch(epoch)
        total, batches = 0.0, 0
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item()
            batches += 1
        metrics = {"epoch": epoch, "loss": total / batches}
        # Every rank reports; rank 0 alone holds the (replicated) state.
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if ctx.get_world_rank() == 0:
                torch.save(net.state_dict(), os.path.join(d, "model.pt"))
                torch.save(opt.state_dict(), os.path.join(d, "optim.pt"))
                with open(os.path.join(d, "meta.json"), "w") as f:
                    json.dump({"epoch": epoch}, f)
                checkpoint = rtrain.Checkpoint.from_directory(d)
            rtrain.report(metrics, checkpoint=checkpoint)

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        params = [p.detach().flatten().tolist() for p in net.parameters()]
        with open(os.path.join(args.out, f"params_rank{ctx.get_world_rank()}.json"), "w") as f:
            json.dump(params, f)


if __name__ == "__main__":
    main()
