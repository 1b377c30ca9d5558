# One rank of a gloo job rendezvousing through env:// (MASTER_ADDR,
# MASTER_PORT, RANK, WORLD_SIZE and, for the agent store,
# TORCHELASTIC_USE_AGENT_STORE and TORCHELASTIC_RESTART_COUNT from the
# environment). Prints one JSON line: the all_reduce result and wall-clock
# nanoseconds when torch was imported and when init_process_group returned.
import json
from datetime import timedelta
import time

import torch
import torch.distributed as dist

imported = time.time_ns()
dist.init_process_group("gloo", timeout=timedelta(seconds=60))
initialized = time.time_ns()

rank = dist.get_rank()
x = torch.tensor([float(rank + 1)])
dist.all_reduce(x)
dist.barrier()
print(json.dumps({
    "rank": rank,
    "world_size": dist.get_world_size(),
    "sum": x.item(),
    "imported_ns": imported,
    "initialized_ns": initialized,
}), flush=True)
dist.destroy_process_group()
