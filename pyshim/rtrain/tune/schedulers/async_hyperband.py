"""Asynchronous successive halving (ASHA): stop trials below a rung's cutoff."""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

import numpy as np

from rtrain.tune.experiment.trial import Trial
from rtrain.tune.schedulers.trial_scheduler import TrialRunnerView, TrialScheduler, _MetricModeScheduler

logger = logging.getLogger(__name__)


class AsyncHyperBandScheduler(_MetricModeScheduler):
    """Asynchronous successive halving (Li et al., https://arxiv.org/abs/1810.05934).

    A bracket s has rungs at grace_period * reduction_factor**(k + s) for
    k = 0, 1, ... while that stays within max_t: with the defaults (1, 100,
    4) the rungs are at 1, 4, 16 and 64. The first result of a trial at or
    past a rung's milestone (the highest such rung it has no score in yet)
    is compared with the scores recorded there so far: below their
    (1 - 1/reduction_factor) quantile (numpy's nanpercentile, linear
    interpolation) the trial stops. Its score is recorded either way. A
    result at max_t stops the trial (unless stop_last_trials is False).
    Scores are metric for mode "max" and -metric for "min". Nothing pauses:
    trials never wait for each other.

    With several brackets a new trial joins one at random, with
    probability proportional to e**(its number of rungs).

    Args:
        time_attr: the result key that measures progress; it must grow.
        metric: the result key compared; with only a mode, "_metric".
        mode: "min" or "max".
        max_t: the most time a trial may run (in time_attr's units).
        grace_period: no trial stops before this much time.
        reduction_factor: 1/reduction_factor of trials go past each rung.
        brackets: the number of brackets, each starting its rungs a factor
            reduction_factor later than the one before.
        stop_last_trials: stop trials at max_t.
    """

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        max_t: int = 100,
        grace_period: int = 1,
        reduction_factor: float = 4,
        brackets: int = 1,
        stop_last_trials: bool = True,
    ):
        if not max_t > 0:
            raise ValueError(f"Max (time_attr) not valid! max_t={max_t}")
        if not max_t >= grace_period:
            raise ValueError(f"grace_period must be <= max_t! grace_period={grace_period}, max_t={max_t}")
        if not grace_period > 0:
            raise ValueError(f"grace_period must be positive! got {grace_period}")
        if not reduction_factor > 1:
            raise ValueError(f"Reduction Factor not valid! reduction_factor={reduction_factor}, want > 1")
        if not brackets > 0:
            raise ValueError(f"brackets must be positive! got {brackets}")
        super().__init__()
        self._init_metric_mode(metric, mode)
        self._reduction_factor = reduction_factor
        self._max_t = max_t
        self._trial_info: Dict[str, _Bracket] = {}
        self._brackets = [
            _Bracket(grace_period, max_t, reduction_factor, s, stop_last_trials=stop_last_trials) for s in range(brackets)
        ]
        self._num_stopped = 0
        self._time_attr = time_attr
        self._stop_last_trials = stop_last_trials

    def on_trial_add(self, tune_controller: TrialRunnerView, trial: Trial) -> None:
        self._require_metric_mode()
        sizes = np.array([len(b._rungs) for b in self._brackets])
        probs = np.e ** (sizes - sizes.max())
        idx = np.random.choice(len(self._brackets), p=probs / probs.sum())
        self._trial_info[trial.trial_id] = self._brackets[idx]

    def on_trial_result(self, tune_controller: TrialRunnerView, trial: Trial, result: Dict) -> str:
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        if result[self._time_attr] >= self._max_t and self._stop_last_trials:
            action = TrialScheduler.STOP
        else:
            bracket = self._trial_info[trial.trial_id]
            action = bracket.on_result(trial, result[self._time_attr], self._metric_op * result[self._metric])
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller: TrialRunnerView, trial: Trial, result: Dict) -> None:
        if not result or self._time_attr not in result or self._metric not in result:
            return
        bracket = self._trial_info.pop(trial.trial_id, None)
        if bracket is not None:
            bracket.on_result(trial, result[self._time_attr], self._metric_op * result[self._metric])

    def on_trial_remove(self, tune_controller: TrialRunnerView, trial: Trial) -> None:
        self._trial_info.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        out = f"Using AsyncHyperBand: num_stopped={self._num_stopped}"
        return out + "\n" + "\n".join(b.debug_str() for b in self._brackets)


class _Bracket:
    """One bracket's rungs: (milestone, {trial_id: score}), highest first,
    so the first rung a result has reached is the one to judge it at."""

    def __init__(self, min_t: float, max_t: float, reduction_factor: float, s: int, stop_last_trials: bool = True):
        self.rf = reduction_factor
        max_rungs = int(np.log(max_t / min_t) / np.log(self.rf) - s + 1)
        self._rungs: List[Tuple[float, Dict[str, float]]] = [
            (min_t * self.rf ** (k + s), {}) for k in reversed(range(max_rungs))
        ]
        self._stop_last_trials = stop_last_trials

    def cutoff(self, recorded: Dict[str, float]) -> Optional[float]:
        if not recorded:
            return None
        return np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100)

    def on_result(self, trial: Trial, cur_iter: float, cur_rew: Optional[float]) -> str:
        action = TrialScheduler.CONTINUE
        for milestone, recorded in self._rungs:
            if cur_iter >= milestone and trial.trial_id in recorded and not self._stop_last_trials:
                # Judged at this rung already, and trials at max_t run on:
                # the decision to continue stands.
                break
            if cur_iter < milestone or trial.trial_id in recorded:
                continue
            cutoff = self.cutoff(recorded)
            if cutoff is not None and cur_rew < cutoff:
                action = TrialScheduler.STOP
            if cur_rew is None:
                logger.warning("Reward attribute is None! Consider reporting using a different field.")
            else:
                recorded[trial.trial_id] = cur_rew
            break
        return action

    def debug_str(self) -> str:
        return "Bracket: " + " | ".join(f"Iter {m:.3f}: {self.cutoff(r)}" for m, r in self._rungs)


ASHAScheduler = AsyncHyperBandScheduler

__all__ = ["ASHAScheduler", "AsyncHyperBandScheduler"]
