"""PyTorch helpers: Ray Train's TorchTrainer, prepare_model and prepare_data_loader.

Imported on demand (rtrain.torch), so scripts that never use it never pay for
importing torch through rtrain. Importing it imports no torch either: the
helpers import it on their first call, so a driver that only runs
TorchTrainer(...).fit() never loads torch, which takes about a second on a
small machine before the job starts and some more to unload at exit; the
workers import it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from rtrain import _env
from rtrain._config import TorchConfig
from rtrain._context import get_context

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

    from rtrain._config import RunConfig, ScalingConfig
    from rtrain._result import Result
    from rtrain._session import Checkpoint

__all__ = ["TorchConfig", "TorchTrainer", "get_device", "get_devices", "prepare_data_loader", "prepare_model"]


class TorchTrainer:
    """Runs a train function on a group of workers wired for torch.distributed
    (Ray Train's TorchTrainer).

    fit() runs train_loop_per_worker(train_loop_config) on
    scaling_config.num_workers workers through the same engine as
    `rtrain fit`: gang-scheduled, isolated, their logs streamed here with
    rank prefixes, checkpoints stored under run_config.storage_path, and
    restarted within run_config.failure_config. Each worker's process group
    is set up before the function runs (torch_config).

    Args:
        train_loop_per_worker: a function of no arguments or of one, the
            config. It and the config are serialized with cloudpickle:
            functions from the driver's script travel by value, imported
            modules by name (the working directory is the driver's current
            one, shipped to a cluster's nodes).
        train_loop_config: passed to the function.
        torch_config: a TorchConfig.
        scaling_config: a ScalingConfig.
        run_config: a RunConfig.
        resume_from_checkpoint: a Checkpoint the workers start from
            (get_checkpoint() returns it) when the run has none of its own.
        metadata, datasets, dataset_config: accepted for Ray's sake;
            datasets are not supported (load data inside the function).
    """

    def __init__(
        self,
        train_loop_per_worker: Callable[..., Any],
        *,
        train_loop_config: Optional[Dict[str, Any]] = None,
        torch_config: Optional[TorchConfig] = None,
        scaling_config: Optional[ScalingConfig] = None,
        run_config: Optional[RunConfig] = None,
        resume_from_checkpoint: Optional[Checkpoint] = None,
        metadata: Optional[Dict[str, Any]] = None,
        datasets: Optional[Dict[str, Any]] = None,
        dataset_config: Any = None,
    ) -> None:
        from rtrain._config import RunConfig, ScalingConfig

        if datasets:
            raise ValueError("TorchTrainer(datasets=...): rtrain has no Ray Data; load the data inside the train function")
        if scaling_config is not None and not isinstance(scaling_config, ScalingConfig):
            raise ValueError(f"scaling_config must be an rtrain.ScalingConfig, got {type(scaling_config).__name__}")
        if run_config is not None and not isinstance(run_config, RunConfig):
            raise ValueError(f"run_config must be an rtrain.RunConfig, got {type(run_config).__name__}")
        if torch_config is not None and not isinstance(torch_config, TorchConfig):
            raise ValueError(f"torch_config must be an rtrain.torch.TorchConfig, got {type(torch_config).__name__}")
        if torch_config is not None and torch_config.backend not in (None, "nccl", "gloo"):
            raise ValueError(f"TorchConfig(backend={torch_config.backend!r}): want 'nccl' or 'gloo'")
        self.train_loop_per_worker = train_loop_per_worker
        self.train_loop_config = train_loop_config
        self.torch_config = torch_config or TorchConfig()
        self.scaling_config = scaling_config or ScalingConfig()
        self.run_config = run_config or RunConfig()
        self.resume_from_checkpoint = resume_from_checkpoint
        self.metadata = metadata

    def fit(self) -> Result:
        """Runs the job to its end and returns its rtrain.Result.

        Raises rtrain.TrainingFailedError when it fails: its message starts
        with the root cause (the first rank that failed, how, the end of its
        traceback) and worker_failures holds each failed rank's failure.
        Raises ValueError for bad input, before any worker starts.
        """
        from rtrain import _driver

        tc = self.torch_config
        return _driver.fit(
            self.train_loop_per_worker,
            self.train_loop_config,
            scaling_config=self.scaling_config,
            run_config=self.run_config,
            torch_config={"backend": tc.backend, "timeout_s": tc.timeout_s},
            resume_from_checkpoint=self.resume_from_checkpoint,
            default_name="TorchTrainer",
        )

    def __repr__(self) -> str:
        return f"TorchTrainer(scaling_config={self.scaling_config!r}, run_config={self.run_config!r})"


def get_device() -> torch.device:
    """The device this worker trains on: its own GPU, or the CPU.

    rtrain sets RTRAIN_CUDA_DEVICE to the worker's index among the GPUs it can
    see (CUDA_VISIBLE_DEVICES), whatever the isolation level.
    """
    import torch

    index = os.environ.get(_env.CUDA_DEVICE, "")
    if index != "" and torch.cuda.is_available():
        return torch.device("cuda", int(index))
    return torch.device("cpu")


def get_devices() -> list:
    """The devices of this worker: its GPU, or the CPU (Ray's get_devices)."""
    return [get_device()]


def _init_process_group(device):
    import torch.distributed as dist

    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://")


def prepare_model(
    model: torch.nn.Module,
    move_to_device: bool = True,
    parallel_strategy: Optional[str] = "ddp",
    parallel_strategy_kwargs: Optional[Dict[str, Any]] = None,
) -> torch.nn.Module:
    """Moves the model to this worker's device and wraps it in DDP.

    Initialises the process group (nccl on GPU, gloo on CPU) if the script has
    not. With one worker the model is returned unwrapped, as in Ray.
    """
    import torch

    device = get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if move_to_device:
        model = model.to(device)
    if get_context().get_world_size() <= 1 or parallel_strategy is None:
        return model
    _init_process_group(device)
    kwargs = dict(parallel_strategy_kwargs or {})
    if parallel_strategy != "ddp":
        raise ValueError(f"rtrain.torch.prepare_model: parallel_strategy {parallel_strategy!r}; only 'ddp' is supported")
    if device.type == "cuda":
        kwargs.setdefault("device_ids", [device.index])
        kwargs.setdefault("output_device", device.index)
    return torch.nn.parallel.DistributedDataParallel(model, **kwargs)


class _DeviceLoader:
    """Iterates a loader and moves every batch to the device."""

    def __init__(self, loader, device):
        self._loader = loader
        self._device = device

    def __len__(self):
        return len(self._loader)

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def __iter__(self):
        for batch in self._loader:
            yield _to_device(batch, self._device)


def _to_device(batch, device):
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def prepare_data_loader(data_loader: DataLoader, add_dist_sampler: bool = True, move_to_device: bool = True) -> DataLoader:
    """Returns the same loader, sharded across workers by a DistributedSampler.

    Shuffling is kept when the loader shuffled. The sampler is the loader's
    `.sampler`, so `loader.sampler.set_epoch(epoch)` reshuffles per epoch as
    in Ray's examples. On a GPU worker batches are moved to its device.
    """
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    ctx = get_context()
    loader = data_loader
    if add_dist_sampler and ctx.get_world_size() > 1 and not isinstance(data_loader.sampler, DistributedSampler):
        shuffle = isinstance(data_loader.sampler, RandomSampler)
        sampler = DistributedSampler(
            data_loader.dataset,
            num_replicas=ctx.get_world_size(),
            rank=ctx.get_world_rank(),
            shuffle=shuffle,
        )
        loader = DataLoader(
            data_loader.dataset,
            batch_size=data_loader.batch_size,
            sampler=sampler,
            num_workers=data_loader.num_workers,
            collate_fn=data_loader.collate_fn,
            pin_memory=data_loader.pin_memory,
            drop_last=data_loader.drop_last,
            timeout=data_loader.timeout,
            worker_init_fn=data_loader.worker_init_fn,
            multiprocessing_context=data_loader.multiprocessing_context,
            generator=data_loader.generator,
            prefetch_factor=data_loader.prefetch_factor,
            persistent_workers=data_loader.persistent_workers,
        )
    device = get_device()
    if move_to_device and device.type == "cuda":
        return _DeviceLoader(loader, device)
    return loader
