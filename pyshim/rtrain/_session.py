"""report() and checkpoints: what a worker tells rtrain as training goes."""

import math
import numbers
import os

from rtrain import _channel
from rtrain._context import get_context


class Checkpoint:
    """A directory of files that make up a checkpoint (Ray Train's Checkpoint)."""

    def __init__(self, path):
        self.path = os.fspath(path)

    @classmethod
    def from_directory(cls, path):
        return cls(path)

    def __repr__(self):
        return f"Checkpoint(path={self.path!r})"


def _plain(value, key):
    """Turns a metric value into something JSON carries."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()  # a 0-d torch tensor or numpy scalar
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, key) for k, v in value.items()}
    raise TypeError(f"rtrain.report: metric {key!r} is a {type(value).__name__}; use numbers, strings, lists or dicts")


def report(metrics, checkpoint=None):
    """Reports this worker's metrics (and, later, checkpoint) to rtrain.

    Every rank calls report at the same point of its loop, as in Ray Train.
    Rank 0's metrics are the job's metrics: rtrain shows them as they arrive.
    Outside rtrain (plain python or torchrun) it prints rank 0's metrics.
    """
    if not isinstance(metrics, dict):
        raise TypeError(f"rtrain.report: metrics must be a dict, got {type(metrics).__name__}")
    if checkpoint is not None:
        raise NotImplementedError(
            "rtrain.report: checkpoints are not supported by this rtrain version yet; "
            "call report(metrics) without checkpoint="
        )
    plain = {str(k): _plain(v, k) for k, v in metrics.items()}
    ch = _channel.channel()
    if ch is None:
        if get_context().get_world_rank() == 0:
            print(f"rtrain.report: {plain}", flush=True)
        return
    ch.call({"op": "report", "rank": get_context().get_world_rank(), "metrics": plain})


def get_checkpoint():
    """The checkpoint to resume from, or None on a fresh run."""
    return None
