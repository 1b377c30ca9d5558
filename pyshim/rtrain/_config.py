"""The driver's configuration classes, with Ray Train's names and defaults."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Optional, Union

_PLACEMENTS = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


@dataclasses.dataclass
class ScalingConfig:
    """How many workers a run has and what each one holds (Ray's ScalingConfig).

    Args:
        num_workers: the number of workers (ranks).
        use_gpu: give each worker a GPU.
        resources_per_worker: what each worker reserves: "CPU" (cores),
            "GPU", "memory" (bytes) and custom resources by name. Without it a
            worker reserves one GPU when use_gpu and no cores: the workers of
            a node share its cores, as `rtrain fit`'s do. (Ray reserves one
            core per worker, so 4 workers wait forever on a 2-core laptop;
            rtrain runs them.)
        placement_strategy: how workers spread over nodes: "PACK" (the
            default), "SPREAD", "STRICT_PACK" or "STRICT_SPREAD".
        trainer_resources, accelerator_type: accepted for Ray's sake; the
            driver needs no resources of its own, and accelerator_type becomes
            the custom resource "accelerator_type:<type>".
    """

    num_workers: int = 1
    use_gpu: bool = False
    resources_per_worker: Optional[Dict[str, float]] = None
    placement_strategy: str = "PACK"
    trainer_resources: Optional[Dict[str, float]] = None
    accelerator_type: Optional[str] = None

    def _validate(self) -> None:
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int):
            raise ValueError(f"ScalingConfig(num_workers={self.num_workers!r}): give a whole number of workers, 1 or more")
        if self.num_workers < 1:
            raise ValueError(f"ScalingConfig(num_workers={self.num_workers}): a run needs at least 1 worker")
        if self.placement_strategy not in _PLACEMENTS:
            raise ValueError(
                f"ScalingConfig(placement_strategy={self.placement_strategy!r}): want one of {', '.join(_PLACEMENTS)}"
            )
        for k, v in (self.resources_per_worker or {}).items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"ScalingConfig(resources_per_worker): {k!r} must be a number of 0 or more, got {v!r}")

    def _gpus(self) -> int:
        res = self.resources_per_worker or {}
        if "GPU" in res:
            gpus = res["GPU"]
            if gpus != int(gpus):
                raise ValueError(f"ScalingConfig(resources_per_worker): GPU {gpus} is not a whole number; rtrain gives whole GPUs")
            if gpus > 0 and not self.use_gpu:
                raise ValueError("ScalingConfig: resources_per_worker asks for GPUs but use_gpu is False; set use_gpu=True")
            return int(gpus)
        return 1 if self.use_gpu else 0

    def _flags(self) -> List[str]:
        self._validate()
        res = dict(self.resources_per_worker or {})
        flags = ["--workers", str(self.num_workers)]
        gpus = self._gpus()
        if gpus:
            flags += ["--gpus-per-worker", str(gpus)]
        res.pop("GPU", None)
        cpus = res.pop("CPU", None)
        if cpus:
            flags += ["--cpus-per-worker", repr(float(cpus))]
        memory = res.pop("memory", None)
        if memory:
            flags += ["--memory-per-worker", str(int(memory))]
        if self.accelerator_type:
            res[f"accelerator_type:{self.accelerator_type}"] = 0.001
        if res:
            flags += ["--resources-per-worker", ",".join(f"{k}={v}" for k, v in res.items())]
        if self.placement_strategy != "PACK":
            flags += ["--placement", self.placement_strategy]
        return flags


@dataclasses.dataclass
class FailureConfig:
    """How many worker failures a run survives (Ray's FailureConfig).

    Args:
        max_failures: failures to survive; each restarts every worker from the
            latest checkpoint. 0 (the default) never restarts; -1 always.
        fail_fast: accepted for Ray's sake.
    """

    max_failures: int = 0
    fail_fast: Union[bool, str] = False


@dataclasses.dataclass
class CheckpointConfig:
    """Which checkpoints a run keeps (Ray's CheckpointConfig).

    Args:
        num_to_keep: checkpoints to keep; None keeps all. The latest is always
            kept, so a run can resume.
        checkpoint_score_attribute: the reported metric that ranks them; None
            keeps the newest.
        checkpoint_score_order: "max" (the default) or "min".
    """

    num_to_keep: Optional[int] = None
    checkpoint_score_attribute: Optional[str] = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: Optional[bool] = None

    def _flags(self) -> List[str]:
        if self.num_to_keep is not None and (not isinstance(self.num_to_keep, int) or self.num_to_keep < 1):
            raise ValueError(f"CheckpointConfig(num_to_keep={self.num_to_keep!r}): keep 1 or more, or None for all")
        if self.checkpoint_score_order not in ("max", "min"):
            raise ValueError(f"CheckpointConfig(checkpoint_score_order={self.checkpoint_score_order!r}): want 'max' or 'min'")
        flags: List[str] = []
        if self.num_to_keep is not None:
            flags += ["--checkpoint-keep", str(self.num_to_keep)]
        if self.checkpoint_score_attribute:
            flags += ["--checkpoint-score", self.checkpoint_score_attribute, "--checkpoint-order", self.checkpoint_score_order]
        return flags


@dataclasses.dataclass
class RunConfig:
    """Where a run keeps its results and how it survives failures (Ray's RunConfig).

    Args:
        name: the run's name. A fit() whose name and storage_path name an
            existing run continues it from its latest checkpoint (Ray Train
            V2's rule). None: "TorchTrainer_<date>_<time>".
        storage_path: a directory or s3://BUCKET/PREFIX; the run lives in
            <storage_path>/<name>. None: ~/rtrain_results.
        failure_config: see FailureConfig.
        checkpoint_config: see CheckpointConfig.
        callbacks, verbose, stop, sync_config, progress_reporter: accepted for
            Ray's sake; rtrain shows the workers' logs and metrics itself.
    """

    name: Optional[str] = None
    storage_path: Optional[str] = None
    failure_config: Optional[FailureConfig] = None
    checkpoint_config: Optional[CheckpointConfig] = None
    callbacks: Optional[List[Any]] = None
    verbose: Optional[int] = None
    stop: Optional[Any] = None
    sync_config: Optional[Any] = None
    progress_reporter: Optional[Any] = None
    log_to_file: Any = False
    storage_filesystem: Optional[Any] = None

    def _storage(self) -> Optional[str]:
        if self.storage_path is None:
            return None
        path = os.fspath(self.storage_path)
        scheme, sep, _ = path.partition("://")
        if sep and scheme not in ("s3", "file"):
            raise ValueError(
                f"RunConfig(storage_path={path!r}): rtrain stores runs in a directory or in S3 "
                f"(s3://BUCKET/PREFIX), not {scheme}://"
            )
        if not sep:
            path = os.path.abspath(os.path.expanduser(path))
        return path

    def _flags(self) -> List[str]:
        flags: List[str] = []
        storage = self._storage()
        if storage:
            flags += ["--storage", storage]
        if self.failure_config is not None:
            flags += ["--max-failures", str(self.failure_config.max_failures)]
        if self.checkpoint_config is not None:
            flags += self.checkpoint_config._flags()
        return flags


@dataclasses.dataclass
class TorchConfig:
    """How the workers' torch.distributed process group is set up (Ray's TorchConfig).

    Args:
        backend: "nccl" or "gloo"; None picks nccl for GPU workers, gloo for CPU.
        init_method: "env" (the default; rtrain sets torchrun's variables).
        timeout_s: the process group's timeout in seconds.
    """

    backend: Optional[str] = None
    init_method: str = "env"
    timeout_s: int = 1800
