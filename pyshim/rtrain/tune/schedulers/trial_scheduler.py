"""The scheduler interface, the runner view schedulers see, and FIFOScheduler.

A scheduler decides, from results, which trials go on, pause or stop, and
which waiting trial runs next. It never starts or stops a process: the trial
runner does, following this contract (Ray's TuneController's order).

Setup, once::

    configure_scheduler(scheduler, metric, mode)  # TuneConfig's; Ray's errors

For each new trial, before it starts (a scheduler may fill in its config)::

    scheduler.on_trial_add(runner, trial)          # trial.status == PENDING

Whenever the runner has room for another trial::

    trial = scheduler.choose_trial_to_run(runner)  # a PENDING or PAUSED trial, or None
    request = trial.take_restore_from()            # a PBT exploit, or None
    # start trial's job from request.checkpoint if request, else from
    # trial.checkpoint if it has one (a resumed trial); status = RUNNING

For each result of a RUNNING trial, after setting trial.last_result (and
trial.checkpoint, if the trial committed one with it)::

    decision = scheduler.on_trial_result(runner, trial, result)
    # (a result that meets the run's own stop criteria is STOP without asking)
    if decision != STOP: searcher.on_trial_result(trial.trial_id, result)

- CONTINUE: the job goes on.
- PAUSE: stop the job and set status PAUSED; it runs again only when
  choose_trial_to_run returns it, resuming from trial.checkpoint, so work
  since the trial's last committed checkpoint is lost: train functions run
  under pausing schedulers should checkpoint at the results where they may
  pause (HyperBand: at its milestones; PBT: every perturbation_interval).
  If trial.restore_from is set, the pause is PBT's exploit: stop without
  waiting for a checkpoint, the trial restarts from restore_from's.
- STOP: stop the job, set status TERMINATED, then
  scheduler.on_trial_complete(runner, trial, result) and
  searcher.on_trial_complete(trial.trial_id, result).

A trial whose train function returns: TERMINATED, then on_trial_complete on
both, with its last result. A trial that fails for good (no retries left):
status ERROR, scheduler.on_trial_error(runner, trial) and
searcher.on_trial_complete(trial.trial_id, error=True). A retried trial goes
back to PENDING with no scheduler call. A trial the runner drops while
PENDING or PAUSED (e.g. at the end of the run): on_trial_remove.

Before deleting a checkpoint (CheckpointConfig.num_to_keep), the runner
checks scheduler.checkpoints_in_use(). Schedulers call back into the runner
only through TrialRunnerView.
"""

from __future__ import annotations

import logging
import pickle
from typing import Any, Dict, List, Optional, Protocol, Set

from rtrain.tune.experiment.trial import Trial
from rtrain.tune.result import DEFAULT_METRIC

logger = logging.getLogger(__name__)


class TrialRunnerView(Protocol):
    """What a scheduler may ask of the trial runner.

    A runner may also have a ``search_alg`` attribute, its searcher:
    PopulationBasedTraining reads it to refuse searchers other than
    BasicVariantGenerator, as Ray does.
    """

    def get_trials(self) -> List[Trial]:
        """Every trial of the run, in the order they were added."""
        ...

    def get_live_trials(self) -> List[Trial]:
        """The trials not finished (neither TERMINATED nor ERROR)."""
        ...

    def stop_trial(self, trial: Trial) -> None:
        """Ends a trial other than the one whose result is being handled,
        before returning: a PAUSED or PENDING trial gets
        scheduler.on_trial_remove(runner, trial) and
        searcher.on_trial_complete(trial.trial_id) (no result: to a searcher
        it was pruned, as in Ray), then status TERMINATED; a RUNNING one is
        stopped as for a STOP decision; a finished one is left alone."""
        ...


class TrialScheduler:
    """Base of the schedulers: trial lifecycle callbacks and decisions."""

    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"

    _metric: Optional[str] = None
    _supports_buffered_results = True

    @property
    def metric(self) -> Optional[str]:
        return self._metric

    @property
    def supports_buffered_results(self) -> bool:
        """False when every single result must reach on_trial_result as it
        comes (HyperBand), so the runner must not batch them."""
        return self._supports_buffered_results

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec: Any) -> bool:
        """Takes TuneConfig's metric and mode; False if the scheduler has its
        own already (configure_scheduler turns that into Ray's error)."""
        if self._metric and metric:
            return False
        if metric:
            self._metric = metric
        if self._metric is None:
            self._metric = DEFAULT_METRIC
        return True

    def on_trial_add(self, tune_controller: TrialRunnerView, trial: Trial) -> None:
        """A new trial, not started yet."""
        raise NotImplementedError

    def on_trial_error(self, tune_controller: TrialRunnerView, trial: Trial) -> None:
        """A RUNNING trial failed for good."""
        raise NotImplementedError

    def on_trial_result(self, tune_controller: TrialRunnerView, trial: Trial, result: Dict) -> str:
        """A RUNNING trial's result: CONTINUE, PAUSE or STOP."""
        raise NotImplementedError

    def on_trial_complete(self, tune_controller: TrialRunnerView, trial: Trial, result: Dict) -> None:
        """A RUNNING trial ended, by itself or stopped."""
        raise NotImplementedError

    def on_trial_remove(self, tune_controller: TrialRunnerView, trial: Trial) -> None:
        """A PAUSED or PENDING trial was dropped."""
        raise NotImplementedError

    def choose_trial_to_run(self, tune_controller: TrialRunnerView) -> Optional[Trial]:
        """A PENDING or PAUSED trial to start, or None; without side effects,
        so the runner may ask again before it starts the one returned."""
        raise NotImplementedError

    def debug_string(self) -> str:
        """One line or a few on the scheduler's state, for progress output."""
        raise NotImplementedError

    def checkpoints_in_use(self) -> Set[str]:
        """Checkpoints (of any trial) that the runner's retention must not
        delete because a trial may yet start from them; PBT's exploits use
        other trials' checkpoints, other schedulers none."""
        return set()

    def save(self, checkpoint_path: str) -> None:
        """Writes the scheduler's state to the file checkpoint_path."""
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        """Reads the state save wrote."""
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class FIFOScheduler(TrialScheduler):
    """Runs trials in the order they were added and never stops one early."""

    def on_trial_add(self, tune_controller: TrialRunnerView, trial: Trial) -> None:
        pass

    def on_trial_error(self, tune_controller: TrialRunnerView, trial: Trial) -> None:
        pass

    def on_trial_result(self, tune_controller: TrialRunnerView, trial: Trial, result: Dict) -> str:
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: TrialRunnerView, trial: Trial, result: Dict) -> None:
        pass

    def on_trial_remove(self, tune_controller: TrialRunnerView, trial: Trial) -> None:
        pass

    def choose_trial_to_run(self, tune_controller: TrialRunnerView) -> Optional[Trial]:
        """The first PENDING trial, else the first PAUSED one."""
        trials = tune_controller.get_trials()
        for status in (Trial.PENDING, Trial.PAUSED):
            for trial in trials:
                if trial.status == status:
                    return trial
        return None

    def debug_string(self) -> str:
        return "Using FIFO scheduling algorithm."


class _MetricModeScheduler(FIFOScheduler):
    """The metric and mode handling Ray's early-stopping schedulers share."""

    def _init_metric_mode(self, metric: Optional[str], mode: Optional[str]) -> None:
        if mode and mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', got {mode!r}")
        self._metric = metric
        self._mode = mode
        self._set_metric_op()

    def _set_metric_op(self) -> None:
        # Scores are metric * op, so "better" is always "greater".
        self._metric_op = {"max": 1.0, "min": -1.0}.get(self._mode)

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self._set_metric_op()
        if self._metric is None and self._mode:
            self._metric = DEFAULT_METRIC
        return True

    def _require_metric_mode(self) -> None:
        if not self._metric or not self._metric_op:
            raise ValueError(
                "{} has been instantiated without a valid `metric` ({}) or "
                "`mode` ({}) parameter. Either pass these parameters when "
                "instantiating the scheduler, or pass them as parameters "
                "to `tune.TuneConfig()`".format(type(self).__name__, self._metric, self._mode)
            )


def configure_scheduler(
    scheduler: TrialScheduler,
    metric: Optional[str],
    mode: Optional[str],
    entrypoint: str = "Tuner(...)",
    **spec: Any,
) -> None:
    """Hands TuneConfig's metric and mode to scheduler, raising Ray's error
    when the scheduler was built with its own.

    A scheduler that needs a metric and mode and has neither from anywhere
    raises Ray's error at its first on_trial_add.

    Args:
        entrypoint: how the error names the user's call.
        **spec: the experiment's public spec (num_samples, ...).
    """
    if mode and mode not in ("min", "max"):
        raise ValueError(f"The `mode` parameter passed to `{entrypoint}` must be one of ['min', 'max']")
    if not scheduler.set_search_properties(metric, mode, **spec):
        raise ValueError(
            "You passed a `metric` or `mode` argument to "
            f"`{entrypoint}`, but "
            "the scheduler you are using was already instantiated with their "
            "own `metric` and `mode` parameters. Either remove the arguments "
            f"from your scheduler or from `{entrypoint}` args."
        )


__all__ = ["FIFOScheduler", "TrialRunnerView", "TrialScheduler", "configure_scheduler"]
