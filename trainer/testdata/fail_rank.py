"""Rank FAIL_RANK raises while every other rank waits in a collective.

With FAIL_SLOW_EXIT set, the failing rank is still exiting when its peers
fail; with FAIL_EXIT_HANGS, it never finishes exiting and its peers hang."""
import os
import sys
import time

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank = dist.get_rank()
fail = int(os.environ.get("FAIL_RANK", "1"))
if rank == fail:
    time.sleep(0.5)
    if os.environ.get("FAIL_SLOW_EXIT"):
        # After the traceback, close the peers' connections and linger, as
        # a process slow to finalise does: its peers die of "Connection
        # closed by peer" before it has exited.
        import atexit
        atexit.register(lambda: (dist.destroy_process_group(), time.sleep(60)))
    if os.environ.get("FAIL_EXIT_HANGS"):
        # Stuck in its exit with its connections open, as a process whose
        # NCCL teardown hangs: its peers wait in the collective for ever.
        import atexit
        atexit.register(lambda: time.sleep(60))
    raise ValueError(f"boom from rank {rank}")
print(f"rank {rank} waiting in all_reduce", flush=True)
t = torch.ones(1)
dist.all_reduce(t)  # never completes: rank FAIL_RANK is gone
print("all_reduce returned", flush=True)
sys.exit(3)
