"""A few DDP steps with gloo; every rank prints a checksum of its model's
parameters, which must agree across ranks after the all-reduces."""
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
model = DDP(torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
g = torch.Generator().manual_seed(rank)
for _ in range(3):
    x = torch.randn(16, 8, generator=g)
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
checksum = sum(p.detach().double().sum().item() for p in model.parameters())
print(f"rank {rank} of {world} master {os.environ['MASTER_ADDR']} checksum {checksum:.9f}", flush=True)
dist.barrier()
dist.destroy_process_group()
