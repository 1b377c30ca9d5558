"""rtrain: the worker side of rtrain, for scripts launched by `rtrain fit`.

The names mirror Ray Train's, so a Ray Train script ports by changing its
imports::

    import rtrain
    from rtrain.torch import prepare_model, prepare_data_loader

    ctx = rtrain.get_context()
    model = prepare_model(model)
    loader = prepare_data_loader(loader)
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        ...
        rtrain.report({"epoch": epoch, "loss": loss})

Importing this package imports nothing heavy: torch is loaded only by
rtrain.torch, so the package costs nothing on the launch path.
"""

from rtrain._context import TrainContext, get_context
from rtrain._session import Checkpoint, get_checkpoint, report

__all__ = ["Checkpoint", "TrainContext", "get_checkpoint", "get_context", "report", "torch"]


def __getattr__(name):
    # `import rtrain` then `rtrain.torch.prepare_model(...)` works as in Ray,
    # without importing torch for scripts that never touch it.
    if name == "torch":
        import importlib

        return importlib.import_module("rtrain.torch")
    raise AttributeError(f"module 'rtrain' has no attribute {name!r}")
