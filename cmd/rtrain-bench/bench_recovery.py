"""The recovery benchmark's job: DDP on gloo that loses a rank and resumes.

rtrain-bench runs it under `rtrain fit --workers 2 --max-failures 1` and
under torchrun `--nproc_per_node 2 --max_restarts 1`. Both ranks train a
small model; at step CKPT_STEP they checkpoint (through rtrain.report under
rtrain, with torch.save to $BENCH_CKPT under torchrun), and at step
KILL_STEP of the first attempt rank 1 waits $BENCH_KILL_DELAY seconds
(so that the death falls anywhere between a launcher's polls) and SIGKILLs
itself. The restarted
attempt loads the checkpoint, takes one step and ends.

Every rank appends "EVENT RANK ATTEMPT UNIX_TIME [EXTRA]" lines to
$BENCH_STAMPS: death (just before the kill), then in every attempt start
(the script's first line), imported (torch imported), ready
(init_process_group returned), loaded (checkpoint loaded; EXTRA is the step
it resumes at) and, in a restarted attempt, step (its first step done).
"""
import time

T0 = time.time()

import os  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402

CKPT_STEP, KILL_STEP, STEPS = 5, 25, 1000
RANK = int(os.environ["RANK"])
ATTEMPT = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
UNDER_RTRAIN = "RTRAIN_AGENT_ADDR" in os.environ


def stamp(event, t=None, extra=""):
    line = f"{event} {RANK} {ATTEMPT} {time.time() if t is None else t:.6f} {extra}".rstrip()
    with open(os.environ["BENCH_STAMPS"], "a") as f:
        f.write(line + "\n")


stamp("start", T0)
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

stamp("imported")
dist.init_process_group("gloo")
stamp("ready")
if UNDER_RTRAIN:
    import rtrain

torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1))
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

state = None
if UNDER_RTRAIN:
    ckpt = rtrain.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            state = torch.load(os.path.join(d, "state.pt"))
elif os.path.exists(os.environ["BENCH_CKPT"]):
    state = torch.load(os.environ["BENCH_CKPT"])
start = 0
if state is not None:
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optim"])
    start = state["step"] + 1
stamp("loaded", extra=str(start))


def save(step):
    state = {"model": net.state_dict(), "optim": opt.state_dict(), "step": step}
    if UNDER_RTRAIN:
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if RANK == 0:
                torch.save(state, os.path.join(d, "state.pt"))
                checkpoint = rtrain.Checkpoint.from_directory(d)
            rtrain.report({"step": step}, checkpoint=checkpoint)
    elif RANK == 0:
        tmp = os.environ["BENCH_CKPT"] + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, os.environ["BENCH_CKPT"])


model = DDP(net)
x, y = torch.randn(64, 1024), torch.randn(64, 1)
for step in range(start, STEPS):
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    if ATTEMPT > 0:
        stamp("step")
        break
    if step == CKPT_STEP:
        save(step)
    if RANK == 1 and step == KILL_STEP:
        time.sleep(float(os.environ.get("BENCH_KILL_DELAY", "0")))
        stamp("death")
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
dist.destroy_process_group()
