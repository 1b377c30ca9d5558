"""A fake trial runner for the scheduler tests: the contract of
rtrain/tune/schedulers/trial_scheduler.py, with no processes.

Trials "train" by the tests calling report(); FakeRunner applies each
decision as the real runner must and keeps a log of what happened.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from rtrain.tune.experiment import Trial
from rtrain.tune.schedulers import TrialScheduler


class FakeRunner:
    """TrialRunnerView over a list of Trials, applying decisions as Tuner would."""

    def __init__(self, scheduler: TrialScheduler, search_alg: Any = None):
        self.scheduler = scheduler
        self.search_alg = search_alg
        self.trials: List[Trial] = []
        self.log: List[tuple] = []

    # TrialRunnerView.
    def get_trials(self) -> List[Trial]:
        return list(self.trials)

    def get_live_trials(self) -> List[Trial]:
        return [t for t in self.trials if not t.is_finished()]

    def stop_trial(self, trial: Trial) -> None:
        if trial.is_finished():
            return
        if trial.status == Trial.RUNNING:
            trial.status = Trial.TERMINATED
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
        else:
            self.scheduler.on_trial_remove(self, trial)
            trial.status = Trial.TERMINATED
        self.log.append(("stopped", trial.trial_id, trial.last_result.get("training_iteration")))

    # Driving.
    def add(self, trial_id: str, config: Optional[Dict] = None, tag: str = "") -> Trial:
        t = Trial(trial_id, config=dict(config or {}), experiment_tag=tag or trial_id)
        self.trials.append(t)
        self.scheduler.on_trial_add(self, t)
        return t

    def trial(self, trial_id: str) -> Trial:
        return next(t for t in self.trials if t.trial_id == trial_id)

    def start(self, trial: Trial) -> None:
        assert trial.status in (Trial.PENDING, Trial.PAUSED), trial.status
        req = trial.take_restore_from()
        if req is not None:
            self.log.append(("restored", trial.trial_id, req.source_trial_id, req.checkpoint))
        trial.status = Trial.RUNNING

    def fill(self, capacity: int) -> List[Trial]:
        """Starts what choose_trial_to_run names until capacity trials run."""
        started = []
        while sum(t.status == Trial.RUNNING for t in self.trials) < capacity:
            t = self.scheduler.choose_trial_to_run(self)
            if t is None:
                break
            # choose_trial_to_run must not change anything: asking twice
            # gives the same trial.
            assert self.scheduler.choose_trial_to_run(self) is t
            self.start(t)
            started.append(t)
        return started

    def report(self, trial: Trial, result: Dict, checkpoint: Optional[str] = None) -> str:
        assert trial.status == Trial.RUNNING, (trial.trial_id, trial.status)
        trial.last_result = dict(result)
        if checkpoint is not None:
            trial.checkpoint = checkpoint
        decision = self.scheduler.on_trial_result(self, trial, trial.last_result)
        it = result.get("training_iteration")
        if decision == TrialScheduler.PAUSE:
            trial.status = Trial.PAUSED
            self.log.append(("exploit" if trial.restore_from else "paused", trial.trial_id, it))
        elif decision == TrialScheduler.STOP:
            trial.status = Trial.TERMINATED
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
            self.log.append(("stop", trial.trial_id, it))
        else:
            assert decision == TrialScheduler.CONTINUE, decision
        return decision

    def complete(self, trial: Trial) -> None:
        """The trial's train function returned."""
        trial.status = Trial.TERMINATED
        self.scheduler.on_trial_complete(self, trial, trial.last_result)
        self.log.append(("done", trial.trial_id, trial.last_result.get("training_iteration")))


def run_sequentially(
    runner: FakeRunner, curves: Dict[str, Callable[[int], float]], metric: str, max_iter: int
) -> Dict[str, int]:
    """Adds the trials of curves in order and runs each alone to the end:
    iteration 1.. max_iter unless the scheduler stops it. Returns each
    trial's last iteration."""
    last: Dict[str, int] = {}
    for tid, curve in curves.items():
        t = runner.add(tid)
        runner.fill(1)
        assert t.status == Trial.RUNNING
        for it in range(1, max_iter + 1):
            decision = runner.report(t, {"training_iteration": it, metric: curve(it)})
            last[tid] = it
            if decision == TrialScheduler.STOP:
                break
            assert decision == TrialScheduler.CONTINUE, (tid, it, decision)
        else:
            runner.complete(t)
    return last
