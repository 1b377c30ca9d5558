"""PyTorch helpers: Ray Train's prepare_model and prepare_data_loader.

Imported on demand (rtrain.torch), so scripts that never use it never pay for
importing torch through rtrain.
"""

import os

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from rtrain import _env
from rtrain._context import get_context

__all__ = ["get_device", "prepare_data_loader", "prepare_model"]


def get_device():
    """The device this worker trains on: its own GPU, or the CPU.

    rtrain sets RTRAIN_CUDA_DEVICE to the worker's index among the GPUs it can
    see (CUDA_VISIBLE_DEVICES), whatever the isolation level.
    """
    index = os.environ.get(_env.CUDA_DEVICE, "")
    if index != "" and torch.cuda.is_available():
        return torch.device("cuda", int(index))
    return torch.device("cpu")


def _init_process_group(device):
    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://")


def prepare_model(model, move_to_device=True, parallel_strategy="ddp", parallel_strategy_kwargs=None):
    """Moves the model to this worker's device and wraps it in DDP.

    Initialises the process group (nccl on GPU, gloo on CPU) if the script has
    not. With one worker the model is returned unwrapped, as in Ray.
    """
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
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def prepare_data_loader(data_loader, add_dist_sampler=True, move_to_device=True):
    """Returns the same loader, sharded across workers by a DistributedSampler.

    Shuffling is kept when the loader shuffled. The sampler is the loader's
    `.sampler`, so `loader.sampler.set_epoch(epoch)` reshuffles per epoch as
    in Ray's examples. On a GPU worker batches are moved to its device.
    """
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
