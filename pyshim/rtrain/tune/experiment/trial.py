"""Trial: one config's run, as the searchers and schedulers see it.

The trial runner creates and owns every Trial. It alone changes status,
last_result and checkpoint, and it keeps them current before each
scheduler call: a result first goes into last_result (and a checkpoint the
trial committed with it into checkpoint), then to on_trial_result.

Schedulers keep references to the runner's Trials and may set, besides
their own bookkeeping:

- config and evaluated_params, in on_trial_add only (PBT fills in the
  hyperparameters its mutations name when param_space lacks them), so the
  runner calls on_trial_add before it starts the trial;
- restore_from, to ask that the trial restart from another trial's
  checkpoint with a new config (PBT's exploit). The runner applies it with
  take_restore_from() when it next starts the trial.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, Optional


@dataclass
class RestoreFrom:
    """A scheduler's request that a trial restart from a checkpoint.

    Attributes:
        checkpoint: the committed checkpoint (path or URI) to start from;
            another trial's, so the runner must not delete it before the
            trial has started from it (see
            PopulationBasedTraining.checkpoints_in_use).
        config: the config the trial runs with from then on.
        source_trial_id: the trial the checkpoint belongs to.
        experiment_tag: the trial's new tag, which names the change.
        source_result: the result the source reported when its checkpoint
            was chosen, or None.
    """

    checkpoint: str
    config: Dict[str, Any]
    source_trial_id: str
    experiment_tag: str = ""
    source_result: Optional[Dict[str, Any]] = None


@dataclass(eq=False)
class Trial:
    """One trial. Compared and hashed by identity, as Ray's.

    Attributes:
        trial_id: unique in the run; what searchers are told.
        config: the resolved config the trial runs with.
        status: one of PENDING (not started, or to be resumed), RUNNING,
            PAUSED (stopped, to be resumed from checkpoint), TERMINATED
            (done, stopped or early-stopped) and ERROR (failed).
        last_result: the latest result, {} before the first.
        checkpoint: the latest checkpoint the trial committed (path or
            URI), None while it has none; after take_restore_from, the
            checkpoint it restarted from until it commits its own.
        experiment_tag: a short name for the config (e.g. "3_lr=0.0100").
        evaluated_params: the sampled and grid values, keyed "a/b".
        restore_from: set by a scheduler to restart the trial elsewhere;
            None otherwise (see RestoreFrom).
        experiment_path: the run's directory on local disk, where PBT (with
            log_config) appends its policy files; None to skip them.
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"

    trial_id: str
    config: Dict[str, Any] = field(default_factory=dict)
    status: str = "PENDING"
    last_result: Dict[str, Any] = field(default_factory=dict)
    checkpoint: Optional[str] = None
    experiment_tag: str = ""
    evaluated_params: Dict[str, Any] = field(default_factory=dict)
    restore_from: Optional[RestoreFrom] = None
    experiment_path: Optional[str] = None

    def is_finished(self) -> bool:
        """TERMINATED or ERROR: the trial will not run again."""
        return self.status in (Trial.TERMINATED, Trial.ERROR)

    def take_restore_from(self) -> Optional[RestoreFrom]:
        """Applies and clears restore_from: config, experiment_tag and
        checkpoint become the request's, which is returned (None when there
        was none). The runner calls this when it starts the trial, and
        starts it from the returned checkpoint."""
        req = self.restore_from
        if req is None:
            return None
        self.config = copy.deepcopy(req.config)
        if req.experiment_tag:
            self.experiment_tag = req.experiment_tag
        self.checkpoint = req.checkpoint
        self.restore_from = None
        return req

    def __str__(self) -> str:
        return self.trial_id


__all__ = ["RestoreFrom", "Trial"]
