"""A plain torchrun-style DDP script: only torch.distributed and the env contract.

Runs unchanged under `torchrun --nproc_per_node 4 train_torchrun.py` and under
`rtrain fit --workers 4 train_torchrun.py`. It fits a small MLP to synthetic
data (no downloads), prints rank 0's loss every epoch, and with --out DIR
writes each rank's final parameters to DIR/params_rank<R>.json.
"""
import argparse
import json
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


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

    dist.init_process_group(backend="gloo")  # env:// from MASTER_ADDR, RANK, ...
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ["LOCAL_RANK"])

    torch.manual_seed(0)
    model = DDP(torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)))
    data = synthetic_data()
    sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=0)
    loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss_fn = torch.nn.MSELoss()

    if rank == 0:
        print(f"training on {world} workers (local rank {local_rank})", flush=True)
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        total, batches = 0.0, 0
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item()
            batches += 1
        mean = torch.tensor([total / batches])
        dist.all_reduce(mean)
        if rank == 0:
            print(f"epoch {epoch} loss {mean.item() / world:.6f}", flush=True)

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        params = [p.detach().flatten().tolist() for p in model.module.parameters()]
        with open(os.path.join(args.out, f"params_rank{rank}.json"), "w") as f:
            json.dump(params, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
