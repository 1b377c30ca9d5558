"""The launch benchmark's job: DDP on gloo, a few steps of a small model.

Rank 0 appends the wall-clock time of its first completed training step (an
optimizer step after a gradient all-reduce) to $BENCH_STAMP, so the benchmark
can measure submit -> first step. It uses only torch.distributed and the env
contract, so rtrain, torchrun and a hand launch run it alike.
"""
import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("gloo")
torch.manual_seed(0)
model = DDP(torch.nn.Linear(64, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(32, 64), torch.randn(32, 1)
for step in range(5):
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    if step == 0 and dist.get_rank() == 0:
        with open(os.environ["BENCH_STAMP"], "a") as f:
            f.write(f"{time.time():.6f}\n")
dist.destroy_process_group()
