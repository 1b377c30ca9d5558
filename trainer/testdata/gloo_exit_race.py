"""Every rank but rank 1 ends with a collective in flight whose tensor it
has let go of, so gloo's worker thread holds the tensor's last reference.
An atexit handler then holds the GIL in C for about a second: the
collective completes meanwhile, and the thread waits for the GIL to free
the tensor. If the interpreter starts finalizing first, Python ends that
thread with pthread_exit and the unwind through torch's destructors aborts
the rank ("terminate called without an active exception"), as under
torchrun or a plain launch."""
import atexit
import os
import time

# Registered before anything else of the program's, so it runs last of them.
atexit.register(sum, range(6 * 10**7))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

dist.init_process_group("gloo")
rank = dist.get_rank()
t = torch.randn(1 << 16)
if rank == 1:
    time.sleep(0.3)  # the others' all_reduce stays in flight
work = dist.all_reduce(t, async_op=True)
if rank == 1:
    work.wait()
else:
    del t, work
print(f"rank {rank} done", flush=True)
