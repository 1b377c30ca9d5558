"""The median stopping rule: stop a trial whose best is below the others' median."""

from __future__ import annotations

import collections
import logging
from typing import Dict, List, Optional

import numpy as np

from rtrain.tune.experiment.trial import Trial
from rtrain.tune.schedulers.trial_scheduler import TrialRunnerView, TrialScheduler, _MetricModeScheduler

logger = logging.getLogger(__name__)


class MedianStoppingRule(_MetricModeScheduler):
    """Vizier's median stopping rule (https://research.google.com/pubs/pub46180.html).

    At a result at time t >= grace_period, the other trials that have
    reported up to t or later are compared: each one's running mean is the
    mean of its metric over its results with grace_period <= time <= t (a
    completed trial's last result counts twice there, as Ray's does: it is
    recorded again at completion). If the trial's best metric so far is
    strictly worse than the median of those means, it stops (pauses, with
    hard_stop=False, and then runs on undisturbed when resumed).

    With fewer than min_samples_required others to compare, the trial goes
    on, or PAUSEs to yield to waiting trials: when some trial is PENDING or
    PAUSED and more than min_time_slice has passed since its last such pause.

    Args:
        time_attr: the result key that measures progress; it must grow.
        metric: the result key compared; with only a mode, "_metric".
        mode: "min" or "max".
        grace_period: no judging before this time; the means start here.
        min_samples_required: the fewest other trials to take a median of.
        min_time_slice: the least time a trial runs between yields.
        hard_stop: STOP a trial below the median; False to PAUSE it instead.
    """

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        grace_period: float = 60.0,
        min_samples_required: int = 3,
        min_time_slice: int = 0,
        hard_stop: bool = True,
    ):
        super().__init__()
        self._init_metric_mode(metric, mode)
        self._stopped_trials: set = set()
        self._grace_period = grace_period
        self._min_samples_required = min_samples_required
        self._min_time_slice = min_time_slice
        self._time_attr = time_attr
        self._hard_stop = hard_stop
        self._last_pause: Dict[str, float] = collections.defaultdict(lambda: float("-inf"))
        self._results: Dict[str, List[Dict]] = collections.defaultdict(list)

    def on_trial_add(self, tune_controller: TrialRunnerView, trial: Trial) -> None:
        self._require_metric_mode()

    def on_trial_result(self, tune_controller: TrialRunnerView, trial: Trial, result: Dict) -> str:
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        if trial.trial_id in self._stopped_trials:
            # Only reachable with hard_stop=False: a resumed trial runs FIFO.
            return TrialScheduler.CONTINUE

        time = result[self._time_attr]
        self._results[trial.trial_id].append(result)
        if time < self._grace_period:
            return TrialScheduler.CONTINUE

        others = [tid for tid in self._trials_beyond_time(time) if tid != trial.trial_id]
        if len(others) < self._min_samples_required:
            action = self._on_insufficient_samples(tune_controller, trial, time)
            if action == TrialScheduler.PAUSE:
                self._last_pause[trial.trial_id] = time
            logger.debug(
                "MedianStoppingRule: insufficient samples=%d to evaluate trial %s at t=%s. %s",
                len(others),
                trial.trial_id,
                time,
                "Yielding time to other trials." if action == TrialScheduler.PAUSE else "Continuing anyways.",
            )
            return action

        median = np.median([self._running_mean(tid, time) for tid in others])
        best = self._best_result(trial.trial_id)
        logger.debug("Trial %s best res=%s vs median res=%s at t=%s", trial, best, median, time)
        if self._metric_op * best < self._metric_op * median:
            logger.debug("MedianStoppingRule: early stopping %s", trial)
            self._stopped_trials.add(trial.trial_id)
            return TrialScheduler.STOP if self._hard_stop else TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: TrialRunnerView, trial: Trial, result: Dict) -> None:
        if result and self._time_attr in result and self._metric in result:
            self._results[trial.trial_id].append(result)

    def debug_string(self) -> str:
        return f"Using MedianStoppingRule: num_stopped={len(self._stopped_trials)}."

    def _on_insufficient_samples(self, tune_controller: TrialRunnerView, trial: Trial, time: float) -> str:
        pause = time - self._last_pause[trial.trial_id] > self._min_time_slice
        pause = pause and any(t.status in (Trial.PENDING, Trial.PAUSED) for t in tune_controller.get_live_trials())
        return TrialScheduler.PAUSE if pause else TrialScheduler.CONTINUE

    def _trials_beyond_time(self, time: float) -> List[str]:
        return [tid for tid, results in self._results.items() if results[-1][self._time_attr] >= time]

    def _running_mean(self, trial_id: str, time: float) -> float:
        scoped = [r for r in self._results[trial_id] if self._grace_period <= r[self._time_attr] <= time]
        return float(np.mean([r[self._metric] for r in scoped]))

    def _best_result(self, trial_id: str) -> float:
        values = [r[self._metric] for r in self._results[trial_id]]
        return max(values) if self._mode == "max" else min(values)


__all__ = ["MedianStoppingRule"]
