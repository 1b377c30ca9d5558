"""What a trainable calls inside a trial (Ray Tune's report, get_checkpoint,
get_context), and the wrappers that shape a trainable (with_parameters,
with_resources).

A trial runs as an rtrain job, so tune.report is rtrain.report: the
reports of every trial reach the sweep's driver as its job's events.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Dict, Optional

from rtrain import _session
from rtrain._session import Checkpoint

# Set by the trial's entry (_trial_main) in the worker: who this trial is.
_trial: Dict[str, Any] = {}

# The file in a trial's checkpoint that holds the training_iteration it was
# made at, so that a trial resumed from it (after a pause, a restart or a
# PBT exploit) counts on from there, as Ray's function trainables do.
_ITERATION_FILE = ".tune_iteration"

# This process's training_iteration; None until the first report.
_iteration: Optional[int] = None


def _last_iteration() -> int:
    global _iteration
    if _iteration is None:
        _iteration = 0
        ckpt = _session.get_checkpoint()
        if ckpt is not None:
            try:
                with open(os.path.join(ckpt.path, _ITERATION_FILE), encoding="utf-8") as f:
                    _iteration = int(f.read().strip() or 0)
            except (OSError, ValueError):
                pass
    return _iteration


def report(metrics: Optional[Dict[str, Any]] = None, *, checkpoint: Optional[Checkpoint] = None, **kwargs: Any) -> None:
    """Reports a trial's metrics, and optionally a checkpoint.

    Both Ray forms work: tune.report({"score": s}, checkpoint=...) and the
    old keyword form tune.report(score=s). training_iteration is filled in,
    counting on from the checkpoint the trial started from.
    """
    global _iteration
    if metrics is None:
        metrics = kwargs
    elif kwargs:
        raise TypeError("tune.report: give the metrics as a dict or as keywords, not both")
    it = _last_iteration() + 1
    metrics = dict(metrics)
    metrics.setdefault("training_iteration", it)
    if checkpoint is not None:
        path = checkpoint.path if isinstance(checkpoint, Checkpoint) else os.fspath(checkpoint)
        if os.path.isdir(path):
            with open(os.path.join(path, _ITERATION_FILE), "w", encoding="utf-8") as f:
                f.write(str(it))
    _session.report(metrics, checkpoint=checkpoint)
    _iteration = it


def get_checkpoint() -> Optional[Checkpoint]:
    """The checkpoint the trial resumes from (after a pause, a restart or a
    PBT exploit), None on a fresh start."""
    return _session.get_checkpoint()


class TuneContext:
    """What a trial knows about itself (Ray's TuneContext)."""

    def get_trial_id(self) -> Optional[str]:
        """The trial's id; None outside a sweep."""
        return _trial.get("trial_id")

    def get_trial_name(self) -> Optional[str]:
        """The trial's name, also its run's name."""
        return _trial.get("trial_name")

    def get_trial_dir(self) -> Optional[str]:
        """Where the trial's run is stored."""
        return _trial.get("trial_dir")

    def get_experiment_name(self) -> Optional[str]:
        return _trial.get("experiment_name")

    def get_trial_resources(self) -> Dict[str, float]:
        return dict(_trial.get("resources") or {})

    def get_world_rank(self) -> int:
        from rtrain import get_context as train_context

        return train_context().get_world_rank()


_CONTEXT = TuneContext()


def get_context() -> TuneContext:
    """This trial's TuneContext."""
    return _CONTEXT


def _trial_main(trainable: Callable[..., Any], trial: Dict[str, Any], config: Dict[str, Any]) -> Any:
    """A trial's function on its worker: tells the session who it is, then
    runs the trainable."""
    _trial.clear()
    _trial.update(trial)
    from rtrain._driver import _use_trial_cluster, check_train_func

    if trial.get("where") is not None:
        _use_trial_cluster(trial["where"], bool(trial.get("local")))

    if check_train_func(trainable, "trainable"):
        return trainable(config)
    return trainable()


def with_parameters(trainable: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
    """The trainable with large objects bound to it (Ray's with_parameters).

    The objects are serialized once with the trainable and passed to every
    trial as keyword arguments.
    """

    @functools.wraps(trainable)
    def bound(config: Dict[str, Any]) -> Any:
        return trainable(config, **kwargs)

    bound._rtrain_resources = getattr(trainable, "_rtrain_resources", None)  # type: ignore[attr-defined]
    return bound


def with_resources(trainable: Any, resources: Any) -> Any:
    """The trainable with what each of its trials reserves (Ray's
    with_resources): {"cpu": 2, "gpu": 1, "memory": bytes, custom...}, or a
    function of the config that returns that. Without it a function trial
    reserves 1 CPU, as Ray's."""

    @functools.wraps(trainable)
    def sized(*args: Any, **kw: Any) -> Any:
        return trainable(*args, **kw)

    sized._rtrain_resources = resources  # type: ignore[attr-defined]
    return sized
