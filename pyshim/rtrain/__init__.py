"""rtrain: Ray Train's API on rtrain's engine.

A Ray Train program runs on rtrain after one rewrite: ray.train becomes
rtrain, ray.tune becomes rtrain.tune and ray becomes rtrain::

    import rtrain
    from rtrain import ScalingConfig
    from rtrain.torch import TorchTrainer, prepare_model

    def train_func(config):
        model = prepare_model(...)
        for epoch in range(config["epochs"]):
            ...
            rtrain.report({"epoch": epoch, "loss": loss})

    result = TorchTrainer(
        train_func,
        scaling_config=ScalingConfig(num_workers=4),
        train_loop_config={"epochs": 3},
    ).fit()

The worker side (report, get_checkpoint, get_context, rtrain.torch's
prepare_*) also serves scripts that `rtrain fit` launches. Importing this
package imports nothing heavy: torch is loaded only by rtrain.torch, the
driver's parts on first use.
"""

from rtrain._context import TrainContext, get_context
from rtrain._session import Checkpoint, get_checkpoint, report

__all__ = [
    "Checkpoint",
    "CheckpointConfig",
    "FailureConfig",
    "Result",
    "RunConfig",
    "ScalingConfig",
    "TrainContext",
    "TrainingFailedError",
    "WorkerFailure",
    "get_checkpoint",
    "get_context",
    "init",
    "is_initialized",
    "report",
    "shutdown",
    "torch",
]

_LAZY = {
    "CheckpointConfig": "rtrain._config",
    "FailureConfig": "rtrain._config",
    "RunConfig": "rtrain._config",
    "ScalingConfig": "rtrain._config",
    "Result": "rtrain._result",
    "TrainingFailedError": "rtrain._errors",
    "WorkerFailure": "rtrain._errors",
    "init": "rtrain._driver",
    "is_initialized": "rtrain._driver",
    "shutdown": "rtrain._driver",
}


def __getattr__(name):
    # `import rtrain` then `rtrain.torch.prepare_model(...)` (or
    # `rtrain.tune.uniform(...)`) works as in Ray, without importing torch
    # (or numpy) for scripts that never touch it; the driver's
    # names load on first use, so a worker that only reports never pays.
    import importlib

    if name in ("torch", "tune"):
        return importlib.import_module("rtrain." + name)
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "__version__":
        try:
            return importlib.import_module("rtrain._version").__version__
        except ImportError:
            return "0.0.0.dev0"
    raise AttributeError(f"module 'rtrain' has no attribute {name!r}")
