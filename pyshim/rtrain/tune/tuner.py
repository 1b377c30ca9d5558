"""Tuner and TuneConfig: a sweep, with Ray Tune's names and semantics."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pickle
from typing import Any, Dict, List, Optional

from rtrain._config import RunConfig
from rtrain.tune._cluster import SweepCluster
from rtrain.tune.experiment.trial import Trial
from rtrain.tune.result_grid import ResultGrid

# Files of an experiment's directory: what Tuner.restore reads.
_SPEC = "tuner.pkl"
_STATE = "experiment_state.json"
_SEARCHER = "searcher.pkl"
_SCHEDULER = "scheduler.pkl"


@dataclasses.dataclass
class TuneConfig:
    """How a sweep searches (Ray Tune's TuneConfig).

    Args:
        metric, mode: the metric to optimise and "min" or "max", for the
            searcher, the scheduler and ResultGrid.get_best_result.
        search_alg: a Searcher; None: BasicVariantGenerator (grid and
            random search).
        scheduler: a TrialScheduler; None: FIFOScheduler.
        num_samples: how many times to sample param_space (each grid
            combination that many times); -1: until time_budget_s.
        max_concurrent_trials: at most this many trials at once. Rarely
            needed: the cluster's scheduler starts no more trials than fit.
        time_budget_s: stop the sweep after this many seconds.
        reuse_actors, trial_name_creator, trial_dirname_creator: accepted
            for Ray's sake.
    """

    metric: Optional[str] = None
    mode: Optional[str] = None
    search_alg: Optional[Any] = None
    scheduler: Optional[Any] = None
    num_samples: int = 1
    max_concurrent_trials: Optional[int] = None
    time_budget_s: Optional[float] = None
    reuse_actors: Optional[bool] = None
    trial_name_creator: Optional[Any] = None
    trial_dirname_creator: Optional[Any] = None


class Tuner:
    """Runs a trainable over a param_space (Ray Tune's Tuner).

    Every trial is an rtrain job on one scheduler: a function trial holds 1
    CPU (tune.with_resources says otherwise), a TorchTrainer trial all of
    its workers' bundles at once; trials that do not fit yet wait in the
    cluster's queue, and the sweep starts no more than fit. Without an
    address (rtrain.init) the sweep runs on a private one-node cluster of
    this machine.

    Args:
        trainable: a function of the config that calls tune.report, or a
            TorchTrainer (whose train_loop_config param_space's
            "train_loop_config" entries fill in).
        param_space: the search space: values, search-space functions
            (tune.uniform, tune.grid_search, ...) and nested dicts.
        tune_config: a TuneConfig.
        run_config: an rtrain.RunConfig: name, storage_path (the experiment
            lives in <storage_path>/<name>), stop, failure_config (retries
            per trial), checkpoint_config.
    """

    def __init__(
        self,
        trainable: Any = None,
        *,
        param_space: Optional[Dict[str, Any]] = None,
        tune_config: Optional[TuneConfig] = None,
        run_config: Optional[RunConfig] = None,
    ) -> None:
        if trainable is None:
            raise ValueError("Tuner: give a trainable, a function or a TorchTrainer")
        self._trainable = trainable
        self._param_space = dict(param_space or {})
        self._tune_config = tune_config or TuneConfig()
        self._run_config = run_config or RunConfig()
        self._trials: List[Trial] = []
        self._restored: Optional[str] = None
        self._results: Optional[ResultGrid] = None
        name = self._run_config.name or f"{_name_of(trainable)}_{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}"
        self._name = name
        storage = self._run_config._storage() or os.path.join(os.path.expanduser("~"), "rtrain_results")
        self._path = storage.rstrip("/") + "/" + name if "://" in storage else os.path.join(storage, name)

    @classmethod
    def can_restore(cls, path: "str | os.PathLike[str]") -> bool:
        """Whether path holds a sweep Tuner.restore can continue."""
        return os.path.exists(os.path.join(os.fspath(path), _SPEC))

    @classmethod
    def restore(cls, path: "str | os.PathLike[str]", trainable: Any, **kwargs: Any) -> "Tuner":
        """The sweep stored at path, to be continued by fit(): finished
        trials stay as they are, unfinished ones resume from their latest
        checkpoints, and the searcher and scheduler (ASHA's rungs, say)
        go on from their saved state. resume_errored=True retries the
        trials that failed."""
        path = os.path.abspath(os.fspath(path))
        if not cls.can_restore(path):
            raise ValueError(f"Tuner.restore: {path} holds no sweep ({_SPEC} is missing); give the experiment's directory")
        with open(os.path.join(path, _SPEC), "rb") as f:
            spec = pickle.load(f)
        tuner = cls(trainable, param_space=spec["param_space"], tune_config=spec["tune_config"], run_config=spec["run_config"])
        tuner._name, tuner._path, tuner._restored = spec["name"], path, path
        with open(os.path.join(path, _STATE), encoding="utf-8") as f:
            state = json.load(f)
        for t in state["trials"]:
            trial = Trial(trial_id=t["trial_id"], config=t["config"], status=t["status"], last_result=t["last_result"],
                          checkpoint=t["checkpoint"], experiment_tag=t.get("experiment_tag", ""), experiment_path=path)
            if trial.status in (Trial.RUNNING, Trial.PAUSED) or (trial.status == Trial.ERROR and kwargs.get("resume_errored")):
                trial.status = Trial.PENDING
            tuner._trials.append(trial)
        return tuner

    def get_results(self) -> ResultGrid:
        """The ResultGrid of the last fit()."""
        if self._results is None:
            raise RuntimeError("Tuner.get_results: call fit() first")
        return self._results

    def fit(self) -> ResultGrid:
        """Runs the sweep to its end and returns its ResultGrid. A trial
        that fails is in ResultGrid.errors; the sweep goes on without it."""
        from rtrain.tune._runner import TrialRunner
        from rtrain.tune.schedulers.trial_scheduler import FIFOScheduler, configure_scheduler
        from rtrain.tune.search.basic_variant import BasicVariantGenerator
        from rtrain.tune.search.searcher import configure_searcher, total_trials

        tc = self._tune_config
        if tc.mode not in (None, "min", "max"):
            raise ValueError(f"TuneConfig(mode={tc.mode!r}): want 'min' or 'max'")
        searcher = tc.search_alg or BasicVariantGenerator(max_concurrent=tc.max_concurrent_trials or 0)
        scheduler = tc.scheduler or FIFOScheduler()
        num_samples = tc.num_samples
        configure_searcher(searcher, tc.metric, tc.mode, self._param_space, num_samples=num_samples)
        configure_scheduler(scheduler, tc.metric, tc.mode, num_samples=num_samples)
        if "://" not in self._path:
            os.makedirs(self._path, exist_ok=True)
        if self._restored:
            if os.path.exists(os.path.join(self._path, _SEARCHER)):
                searcher.restore(os.path.join(self._path, _SEARCHER))
            if os.path.exists(os.path.join(self._path, _SCHEDULER)):
                scheduler.restore(os.path.join(self._path, _SCHEDULER))
        self._save_spec()
        results_dir = self._path if "://" not in self._path else os.path.join(os.path.expanduser("~"), "rtrain_results")
        with SweepCluster(results_dir) as cluster:
            runner = TrialRunner(
                self._trainable, searcher=searcher, scheduler=scheduler,
                num_samples=total_trials(searcher, self._param_space, num_samples),
                experiment_name=self._name, experiment_path=self._path, cluster_flags=cluster.flags(),
                local=cluster.private,
                run_config=self._run_config, max_concurrent=tc.max_concurrent_trials or 0,
                metric=tc.metric or getattr(scheduler, "_metric", None),
                mode=tc.mode or getattr(scheduler, "_mode", None),
                time_budget_s=tc.time_budget_s, trials=self._trials, on_change=self._save_state,
            )
            if self._restored:
                for trial in runner.trials:
                    if trial.status == Trial.PENDING:
                        scheduler.on_trial_add(runner, trial)
            runner.run()
        self._save_state(runner)
        self._results = ResultGrid(runner, self._path, tc.metric, tc.mode)
        return self._results

    def _save_spec(self) -> None:
        import cloudpickle

        spec = {"name": self._name, "param_space": self._param_space, "tune_config": self._tune_config, "run_config": self._run_config}
        _write(os.path.join(self._path, _SPEC), cloudpickle.dumps(spec))

    def _save_state(self, runner: Any) -> None:
        state = {"name": self._name, "trials": [
            {"trial_id": t.trial_id, "config": t.config, "status": t.status, "last_result": t.last_result,
             "checkpoint": t.checkpoint, "experiment_tag": t.experiment_tag}
            for t in runner.trials
        ]}
        _write(os.path.join(self._path, _STATE), json.dumps(state, default=repr).encode())
        try:
            runner.search_alg.save(os.path.join(self._path, _SEARCHER))
        except (NotImplementedError, AttributeError, TypeError, pickle.PicklingError):
            pass
        try:
            runner.scheduler.save(os.path.join(self._path, _SCHEDULER))
        except (NotImplementedError, AttributeError, TypeError, pickle.PicklingError):
            pass


def _write(path: str, data: bytes) -> None:
    """Replaces path with data at once: a killed driver never leaves half."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _name_of(trainable: Any) -> str:
    from rtrain.tune._runner import _trainable_name

    return _trainable_name(trainable)
