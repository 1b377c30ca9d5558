"""The driver benchmark's job: one train function, two ways to run it.

    rtrain fit --workers 4 bench_driver.py     the script: train_func(CONFIG)
    python bench_driver.py driver              TorchTrainer(train_func, ...).fit()
    python bench_driver.py probe               what the driver does before rtrain fit starts

train_func is DDP on gloo (CPU): a small MLP, STEPS steps of an all-reduce
each, rtrain.report every REPORT_EVERY steps. Rank 0 appends
"EVENT UNIX_TIME" lines to $BENCH_STAMPS: body (train_func's first line)
and done (its last); the driver adds start (its first line) and fit (just
before fit() is called, its imports done). The probe prints "BENCH NAME SECONDS" lines, in a fresh
interpreter: importing rtrain.torch, then torch (what is left of it),
serializing train_func and its config with cloudpickle, and the binary's
version check.
"""
import time

T0 = time.time()

import os  # noqa: E402
import sys  # noqa: E402

import rtrain  # noqa: E402

# driver_report.go's text says what this is.
CONFIG = {"steps": 200, "report_every": 20, "batch": 64, "width": 128, "lr": 0.01}


def stamp(event, t=None):
    with open(os.environ["BENCH_STAMPS"], "a") as f:
        f.write(f"{event} {time.time() if t is None else t:.6f}\n")


def train_func(config):
    import torch

    import rtrain.torch

    rank = rtrain.get_context().get_world_rank()
    if rank == 0:
        stamp("body")
    torch.manual_seed(rank)
    w = config["width"]
    model = torch.nn.Sequential(torch.nn.Linear(w, w), torch.nn.ReLU(), torch.nn.Linear(w, w), torch.nn.ReLU(), torch.nn.Linear(w, 10))
    model = rtrain.torch.prepare_model(model)
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"])
    x, y = torch.randn(config["batch"], w), torch.randint(0, 10, (config["batch"],))
    for step in range(1, config["steps"] + 1):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if step % config["report_every"] == 0:
            rtrain.report({"step": step, "loss": loss.item()})
    if rank == 0:
        stamp("done")


def run_driver():
    stamp("start", T0)
    from rtrain.torch import TorchTrainer

    run = rtrain.RunConfig(name=os.environ["BENCH_RUN"], storage_path=os.environ["BENCH_STORAGE"])
    trainer = TorchTrainer(train_func, train_loop_config=CONFIG, scaling_config=rtrain.ScalingConfig(num_workers=4), run_config=run)
    stamp("fit")
    result = trainer.fit()
    if result.metrics.get("step") != CONFIG["steps"]:
        raise SystemExit(f"bench_driver: last report {result.metrics}, want step {CONFIG['steps']}")


def probe():
    t = time.perf_counter()
    import rtrain.torch  # noqa: F401

    print(f"BENCH import {time.perf_counter() - t:.6f}")
    t = time.perf_counter()
    import torch  # noqa: F401

    print(f"BENCH torch {time.perf_counter() - t:.6f}")
    import cloudpickle

    t = time.perf_counter()
    cloudpickle.dumps({"func": train_func, "config": CONFIG})
    print(f"BENCH pickle {time.perf_counter() - t:.6f}")
    from rtrain import _binary

    t = time.perf_counter()
    _binary.check_version()
    print(f"BENCH version {time.perf_counter() - t:.6f}")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "script"
    if mode == "driver":
        run_driver()
    elif mode == "probe":
        probe()
    else:
        import torch.distributed as dist

        train_func(CONFIG)
        # As rtrain's worker does after a train function returns.
        if dist.is_initialized():
            dist.destroy_process_group()
