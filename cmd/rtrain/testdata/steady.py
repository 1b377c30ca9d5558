"""Deterministic DDP training: STEPS steps, a checkpoint every EVERY, PAUSE seconds a step; rank 0 prints its parameters' sum at the end.

Usage: steady.py STEPS EVERY PAUSE
"""
import os
import sys
import tempfile
import time

import torch
import torch.distributed as dist

import rtrain

steps, every, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = torch.nn.Linear(8, 1)
start = 0
ckpt = rtrain.get_checkpoint()
if ckpt:
    with ckpt.as_directory() as d:
        state = torch.load(os.path.join(d, "model.pt"))
    model.load_state_dict(state["model"])
    start = state["step"]
ddp = torch.nn.parallel.DistributedDataParallel(model)
opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
for step in range(start, steps):
    g = torch.Generator().manual_seed(step * 100 + rank)
    x = torch.randn(16, 8, generator=g)
    loss = (ddp(x) - x.sum(dim=1, keepdim=True)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    print(f"step {step + 1}", flush=True)
    metrics = {"step": step + 1, "loss": loss.item()}
    if (step + 1) % every == 0:
        with tempfile.TemporaryDirectory() as d:
            if rank == 0:
                torch.save({"model": model.state_dict(), "step": step + 1}, os.path.join(d, "model.pt"))
            rtrain.report(metrics, checkpoint=rtrain.Checkpoint.from_directory(d))
    else:
        rtrain.report(metrics)
    time.sleep(pause)
if rank == 0:
    total = sum(p.double().sum().item() for p in model.parameters())
    print(f"param_sum={total:.12f}", flush=True)
