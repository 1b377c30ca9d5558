"""Synchronous HyperBand: trials pause at bracket milestones and the best go on.

How the runner sees it: a trial that reaches its bracket's milestone while
others of the bracket have not gets PAUSE. When the last one reaches it, the
bracket halves: the worst are stopped (PAUSED ones through the runner's
stop_trial, the reporting one by a STOP decision), the best continue (the
reporting one by CONTINUE; PAUSED ones become eligible again, and
choose_trial_to_run returns them). So the runner resumes PAUSED trials only
when choose_trial_to_run names them: it returns PENDING trials and PAUSED
trials a halving let through, bracket by bracket, the least complete
bracket of the oldest band first, never other PAUSED ones.
"""

from __future__ import annotations

import collections
import logging
from typing import Dict, List, Optional, Tuple

import numpy as np

from rtrain.tune.error import TuneError
from rtrain.tune.experiment.trial import Trial
from rtrain.tune.schedulers.trial_scheduler import TrialRunnerView, TrialScheduler, _MetricModeScheduler

logger = logging.getLogger(__name__)


class HyperBandScheduler(_MetricModeScheduler):
    """HyperBand (Li et al., https://arxiv.org/abs/1603.06560), synchronous.

    With s_max = round(log(max_t) / log(reduction_factor)), a band holds
    s_max + 1 brackets, s = 0 .. s_max, filled in that order as trials are
    added: bracket s takes up to ceil((s_max + 1) / (s + 1) * eta**s)
    trials (eta being reduction_factor) and runs them to
    r0 = int(max_t * eta**-s) before its first halving; each of its s
    halvings keeps the best ceil(n / eta) and multiplies the milestone by
    eta (at most max_t). A full band starts a new one. For max_t=81, eta=3
    the brackets take (5, 8, 15, 34, 81) trials with first milestones
    (81, 27, 9, 3, 1). A trial at max_t is stopped (unless
    stop_last_trials is False). See the module docstring for what the
    runner does on PAUSE.

    Args:
        time_attr: the result key that measures progress; it must grow.
        metric: the result key compared; with only a mode, "_metric".
        mode: "min" or "max".
        max_t: the most time a trial may run.
        reduction_factor: eta above.
        stop_last_trials: stop trials at max_t.
    """

    _supports_buffered_results = False

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        max_t: int = 81,
        reduction_factor: float = 3,
        stop_last_trials: bool = True,
    ):
        if not max_t > 0:
            raise ValueError(f"Max (time_attr) not valid! max_t={max_t}")
        super().__init__()
        self._init_metric_mode(metric, mode)
        self._eta = reduction_factor
        self._s_max_1 = int(np.round(np.log(max_t) / np.log(reduction_factor))) + 1
        self._max_t_attr = max_t
        self._hyperbands: List[List[Optional[_Bracket]]] = [[]]
        self._trial_info: Dict[Trial, Tuple[_Bracket, int]] = {}
        self._state: Dict = {"bracket": None, "band_idx": 0}
        self._num_stopped = 0
        self._time_attr = time_attr
        self._stop_last_trials = stop_last_trials

    def _get_n0(self, s: int) -> int:
        """Bracket s's most trials."""
        return int(np.ceil(self._s_max_1 / (s + 1) * self._eta**s))

    def _get_r0(self, s: int) -> int:
        """Bracket s's first milestone."""
        return int(self._max_t_attr * self._eta ** (-s))

    def on_trial_add(self, tune_controller: TrialRunnerView, trial: Trial) -> None:
        """Puts trial in the current bracket, or in a new one when that is
        full (in a new band when the band is full)."""
        self._require_metric_mode()
        cur_bracket = self._state["bracket"]
        cur_band = self._hyperbands[self._state["band_idx"]]
        if cur_bracket is None or cur_bracket.filled():
            while True:
                if self._cur_band_filled():
                    cur_band = []
                    self._hyperbands.append(cur_band)
                    self._state["band_idx"] += 1
                s = len(cur_band)
                if self._get_r0(s) == 0:
                    # Milestones below one time unit: a placeholder keeps
                    # the band's count of brackets right.
                    logger.info("Bracket too small - Retrying...")
                    cur_bracket = None
                    cur_band.append(cur_bracket)
                    continue
                cur_bracket = _Bracket(
                    time_attr=self._time_attr,
                    max_trials=self._get_n0(s),
                    init_t_attr=self._get_r0(s),
                    max_t_attr=self._max_t_attr,
                    eta=self._eta,
                    s=s,
                    stop_last_trials=self._stop_last_trials,
                )
                cur_band.append(cur_bracket)
                break
            self._state["bracket"] = cur_bracket
        self._state["bracket"].add_trial(trial)
        self._trial_info[trial] = (cur_bracket, self._state["band_idx"])

    def _cur_band_filled(self) -> bool:
        return len(self._hyperbands[self._state["band_idx"]]) == self._s_max_1

    def on_trial_result(self, tune_controller: TrialRunnerView, trial: Trial, result: Dict) -> str:
        """CONTINUE below the bracket's milestone; at it, PAUSE until the
        whole bracket is there, then the halving's verdict."""
        bracket, _ = self._trial_info[trial]
        bracket.update_trial_stats(trial, result)
        if bracket.continue_trial(trial):
            return TrialScheduler.CONTINUE
        action = self._process_bracket(tune_controller, bracket)
        logger.debug(f"{action} for {trial} on {self._time_attr}={result.get(self._time_attr)}")
        return action

    def _process_bracket(self, tune_controller: TrialRunnerView, bracket: "_Bracket") -> str:
        """When every live trial of bracket is at its milestone, halves it.

        Only the trial being processed can be RUNNING then: the others
        reached the milestone earlier and were paused, or have finished.
        """
        action = TrialScheduler.PAUSE
        if not bracket.cur_iter_done():
            return action
        if bracket.finished():
            bracket.cleanup_full(tune_controller)
            return TrialScheduler.STOP
        # stop_trial calls back into on_trial_remove, which must not start
        # another halving of this bracket meanwhile.
        bracket.is_being_processed = True
        good, bad = bracket.successive_halving(self._metric, self._metric_op)
        self._num_stopped += len(bad)
        for t in bad:
            if t.status == Trial.PAUSED:
                tune_controller.stop_trial(t)
            elif t.status == Trial.RUNNING:
                bracket.cleanup_trial(t)
                action = TrialScheduler.STOP
            else:
                raise TuneError(f"Trial with unexpected bad status encountered: {t} is {t.status}")
        for t in good:
            if bracket.continue_trial(t):
                if t.is_finished():
                    raise TuneError(f"Good trial {t.trial_id} is in an invalid state: {t.status}")
                if t.status == Trial.PAUSED:
                    bracket.trials_to_unpause.add(t)
                elif t.status == Trial.RUNNING:
                    action = TrialScheduler.CONTINUE
            elif bracket.finished() and bracket.stop_last_trials:
                if t.status == Trial.PAUSED:
                    tune_controller.stop_trial(t)
                elif t.status == Trial.RUNNING:
                    bracket.cleanup_trial(t)
                    action = TrialScheduler.STOP
        bracket.is_being_processed = False
        return action

    def on_trial_remove(self, tune_controller: TrialRunnerView, trial: Trial) -> None:
        """Drops trial from its bracket, which may complete a halving."""
        bracket, _ = self._trial_info[trial]
        bracket.cleanup_trial(trial)
        if not bracket.finished() and not bracket.is_being_processed:
            self._process_bracket(tune_controller, bracket)

    def on_trial_complete(self, tune_controller: TrialRunnerView, trial: Trial, result: Dict) -> None:
        self.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: TrialRunnerView, trial: Trial) -> None:
        self.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: TrialRunnerView) -> Optional[Trial]:
        """A PENDING trial or a PAUSED one a halving let through, from the
        least complete bracket first, oldest band first."""
        for band in self._hyperbands:
            for bracket in sorted((b for b in band if b is not None), key=lambda b: b.completion_percentage()):
                for trial in bracket.current_trials():
                    if trial.status == Trial.PENDING or (
                        trial.status == Trial.PAUSED and trial in bracket.trials_to_unpause
                    ):
                        return trial
        return None

    def debug_string(self) -> str:
        out = "Using HyperBand: num_stopped={} total_brackets={}".format(
            self._num_stopped, sum(len(band) for band in self._hyperbands)
        )
        for i, band in enumerate(self._hyperbands):
            out += f"\nRound #{i}:"
            for bracket in band:
                if bracket:
                    out += f"\n  {bracket}"
        return out

    def state(self) -> Dict[str, int]:
        return {"num_brackets": sum(len(band) for band in self._hyperbands), "num_stopped": self._num_stopped}


class _Bracket:
    """One bracket's trials, milestone and halvings left."""

    def __init__(
        self,
        time_attr: str,
        max_trials: int,
        init_t_attr: int,
        max_t_attr: int,
        eta: float,
        s: int,
        stop_last_trials: bool = True,
    ):
        self._live_trials: Dict[Trial, Optional[Dict]] = {}  # trial -> its latest result
        self._all_trials: List[Trial] = []
        self._time_attr = time_attr
        self._n = self._n0 = max_trials
        self._r = self._r0 = init_t_attr
        self._max_t_attr = max_t_attr
        self._cumul_r = self._r0
        self._eta = eta
        self._halves = s
        self._total_work = self._calculate_total_work(self._n0, self._r0, s)
        self._completed_progress = 0
        self.stop_last_trials = stop_last_trials
        self.is_being_processed = False
        self.trials_to_unpause: set = set()

    @property
    def milestone(self) -> int:
        """The time the live trials run to before the next halving."""
        return self._cumul_r

    def add_trial(self, trial: Trial) -> None:
        if self.filled():
            raise TuneError("Cannot add trial to filled bracket!")
        self._live_trials[trial] = None
        self._all_trials.append(trial)

    def cur_iter_done(self) -> bool:
        return all(self._get_result_time(r) >= self._cumul_r for r in self._live_trials.values())

    def finished(self) -> bool:
        if not self.stop_last_trials:
            return False
        return self._halves == 0 and self.cur_iter_done()

    def current_trials(self) -> List[Trial]:
        return list(self._live_trials)

    def continue_trial(self, trial: Trial) -> bool:
        result = self._live_trials[trial]
        if not self.stop_last_trials and self._halves == 0:
            return True
        return self._get_result_time(result) < self._cumul_r

    def filled(self) -> bool:
        """New trials join only at the first milestone, so a bracket takes
        no more once it has its n."""
        return len(self._live_trials) == self._n

    def successive_halving(self, metric: str, metric_op: float) -> Tuple[List[Trial], List[Trial]]:
        if self._halves == 0 and not self.stop_last_trials:
            return list(self._live_trials), []
        assert self._halves > 0
        self._halves -= 1
        self._n = int(np.ceil(self._n / self._eta))
        self._r *= self._eta
        self._r = int(min(self._r, self._max_t_attr))
        self._cumul_r = self._r
        ranked = sorted(self._live_trials, key=lambda t: metric_op * self._live_trials[t][metric])
        return ranked[-self._n :], ranked[: -self._n]

    def update_trial_stats(self, trial: Trial, result: Dict) -> None:
        if trial not in self._live_trials:
            raise TuneError(f"Trial {trial} is not in this bracket")
        observed = self._get_result_time(result)
        last = self._get_result_time(self._live_trials[trial])
        delta = observed - last
        if delta <= 0:
            logger.info(f"Restoring from a previous point in time. Previous={last}; Now={observed}")
        self._completed_progress += delta
        self._live_trials[trial] = result
        self.trials_to_unpause.discard(trial)

    def cleanup_trial(self, trial: Trial) -> None:
        self._live_trials.pop(trial, None)

    def cleanup_full(self, tune_controller: TrialRunnerView) -> None:
        """Stops the PAUSED trials of a finished bracket; the reporting one
        gets STOP."""
        for trial in self.current_trials():
            if trial.status == Trial.PAUSED:
                tune_controller.stop_trial(trial)

    def completion_percentage(self) -> float:
        if self.finished():
            return 1.0
        return min(self._completed_progress / self._total_work, 1.0)

    def _get_result_time(self, result: Optional[Dict]) -> float:
        return 0 if result is None else result[self._time_attr]

    def _calculate_total_work(self, n: int, r: float, s: int) -> int:
        work = 0
        cumulative_r = r
        for _ in range(s + 1):
            work += int(n) * int(r)
            n = int(np.ceil(n / self._eta))
            r *= self._eta
            r = int(min(r, self._max_t_attr - cumulative_r))
        return work

    def __repr__(self) -> str:
        status = ", ".join(
            [
                f"Max Size (n)={self._n}",
                f"Milestone (r)={self._cumul_r}",
                f"completed={self.completion_percentage():.1%}",
            ]
        )
        counts = collections.Counter(t.status for t in self._all_trials)
        statuses = ", ".join(sorted(f"{k}: {v}" for k, v in counts.items()))
        return f"Bracket({status}): {{{statuses}}} "


__all__ = ["HyperBandScheduler"]
