"""The teardown soak's job: DDP on gloo with the model a module global,
three short epochs each ending with the mean loss all-reduced for the log
(a tensor Python lets go of at once), every rank's parameter checksum
printed, then destroy_process_group. The model outlives
destroy_process_group (DDP holds the process group), so its gloo threads
live until Python shuts down: one that is still freeing the last epoch's
tensor then can abort the process."""
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
model = DDP(torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)))
g = torch.Generator().manual_seed(0)
data = TensorDataset(torch.randn(1024, 16, generator=g), torch.randn(1024, 1, generator=g))
sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=0)
loader = DataLoader(data, batch_size=32, sampler=sampler)
opt = torch.optim.SGD(model.parameters(), lr=0.05)


def mean(x):
    t = x.detach().clone()
    dist.all_reduce(t)
    return t.item() / world


for epoch in range(3):
    sampler.set_epoch(epoch)
    for x, y in loader:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    m = mean(loss)
    if rank == 0:
        print(f"epoch {epoch} loss {m:.6f}", flush=True)
checksum = sum(p.detach().double().sum().item() for p in model.parameters())
print(f"rank {rank} of {world} checksum {checksum:.9f}", flush=True)
dist.destroy_process_group()
