"""Runs a train function a driver serialized, on one worker.

`rtrain fit --function FILE` starts `python -m rtrain._worker FILE` on every
worker. FILE holds two pickles: a header of plain values (the format's
version, the directories to put on sys.path so that the driver's own modules
import, how to set up torch.distributed), then the function and its config,
written with cloudpickle.
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import Any, Dict, List

FORMAT = 1

# What a return value may take, pickled: pyshim.MaxReturnBytes.
MAX_RETURN_BYTES = 1 << 20

# The driver's source directories this worker put on sys.path: a function
# that runs a fit() of its own (a sweep's trial) passes them on.
DRIVER_PATHS: List[str] = []


def _load(path: str) -> Dict[str, Any]:
    with open(path, "rb") as f:
        header = pickle.load(f)
        if header.get("format") != FORMAT:
            raise RuntimeError(
                f"rtrain: {path} is in function format {header.get('format')!r}, this rtrain reads {FORMAT}: "
                "the driver's rtrain package and the workers' rtrain differ in version"
            )
        paths: List[str] = header.get("sys_path", [])
        DRIVER_PATHS[:] = [os.path.abspath(p) for p in paths]
        for p in reversed(DRIVER_PATHS):
            if os.path.isdir(p) and p not in sys.path:
                sys.path.insert(0, p)
        try:
            import cloudpickle  # noqa: F401  (the body refers to it)
        except ImportError:
            raise RuntimeError(
                "rtrain: this worker's python cannot import cloudpickle, which runs a driver's train function; "
                "install it on every node that runs workers (Debian: apt install python3-cloudpickle)"
            ) from None
        body = pickle.load(f)
    body.update(header)
    return body


def _init_torch(torch_config: Dict[str, Any]) -> bool:
    """Sets up the process group before the function runs, as Ray's
    TorchTrainer does, so that it may call torch.distributed at once."""
    import datetime

    import torch
    import torch.distributed as dist

    from rtrain import _env

    backend = torch_config.get("backend")
    gpu = os.environ.get(_env.CUDA_DEVICE, "") != "" and torch.cuda.is_available()
    if not backend:
        backend = "nccl" if gpu else "gloo"
    if gpu:
        torch.cuda.set_device(int(os.environ[_env.CUDA_DEVICE]))
    if dist.is_initialized():
        return False
    timeout = datetime.timedelta(seconds=torch_config.get("timeout_s") or 1800)
    dist.init_process_group(backend=backend, init_method="env://", timeout=timeout)
    return True


def _keep_return(value: Any) -> None:
    """Leaves rank 0's return value for the driver's Result."""
    from rtrain import _env

    path = os.environ.pop(_env.RETURN_FILE, "")
    if value is None or not path or os.environ.get("RANK", "0") != "0":
        return
    import cloudpickle

    try:
        blob = cloudpickle.dumps(value)
    except Exception as err:  # noqa: BLE001: any pickling failure
        print(f"rtrain: the train function's return value cannot be pickled ({err}); Result.return_value is None", file=sys.stderr)
        return
    if len(blob) > MAX_RETURN_BYTES:
        print(
            f"rtrain: the train function returned {len(blob) / 2**20:.1f} MiB pickled, over the 1 MiB rtrain carries; "
            "Result.return_value is None: save large results to a file or a checkpoint",
            file=sys.stderr,
        )
        return
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)


def main(argv: List[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python -m rtrain._worker FILE")
    job = _load(argv[1])
    fn, config = job["func"], job["config"]
    torch_config = job.get("torch_config")
    made = torch_config is not None and _init_torch(torch_config)
    if job.get("takes_config"):
        value = fn(config if config is not None else {})
    else:
        value = fn()
    _keep_return(value)
    # Only after a clean return: tearing a group down while a peer has
    # failed can wait on that peer.
    if made:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv)
