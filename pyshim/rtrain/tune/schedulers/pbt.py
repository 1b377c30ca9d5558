"""Population Based Training: poor trials restart from good ones' checkpoints
with perturbed hyperparameters.

How an exploit reaches the runner. rtrain's trials commit their own
checkpoints (rtrain.report(..., checkpoint=...)); the runner keeps the latest
committed one in trial.checkpoint. When a trial in the bottom quantile
reaches its perturbation time, PBT picks a trial of the top quantile that
has a checkpoint, explores that trial's config and sets::

    trial.restore_from = RestoreFrom(checkpoint=<the top trial's checkpoint>,
                                     config=<explored config>,
                                     source_trial_id=..., experiment_tag=...)

and on_trial_result returns PAUSE. The runner stops the trial's job (no
checkpoint needed: its state is being replaced) and marks it PAUSED; when
choose_trial_to_run returns it, the runner calls trial.take_restore_from(),
which applies the new config and tag and sets trial.checkpoint to the
source's, and starts the job from that checkpoint. In synch mode PBT may set
restore_from on trials that are already PAUSED; the same rule covers them:
check take_restore_from whenever a trial starts.

The checkpoint used for a top trial is the one it had committed when it was
last scored at a perturbation time (Ray instead asks it to save then). A top
trial that has committed none is never a source: it is logged and skipped,
and when no top trial has one the exploit waits for the next interval
(ray#27170). So train functions under PBT should checkpoint at least every
perturbation_interval.

Another trial's checkpoint may be needed after its own trial has moved on:
checkpoints_in_use() names every checkpoint a pending or possible exploit
relies on, and the runner's retention (CheckpointConfig.num_to_keep) must
not delete those (ray#9036).

PBT draws its random choices from Python's random module (and a Domain's
resampling from numpy's global generator), as Ray does: seed those for
reproducible runs.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import shutil
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

from rtrain.tune.error import TuneError
from rtrain.tune.experiment.trial import RestoreFrom, Trial
from rtrain.tune.result import TRAINING_ITERATION
from rtrain.tune.schedulers.trial_scheduler import TrialRunnerView, TrialScheduler, _MetricModeScheduler
from rtrain.tune.search.sample import Domain, Function
from rtrain.tune.search.variant_generator import format_vars

logger = logging.getLogger(__name__)


class _PBTTrialState:
    """What PBT tracks per trial."""

    def __init__(self, trial: Trial):
        self.orig_tag = trial.experiment_tag
        self.last_score: Optional[float] = None
        # The trial's committed checkpoint when it was last scored in the
        # top quantile; None otherwise. Exploits clone from it.
        self.last_checkpoint: Optional[str] = None
        self.last_perturbation_time: float = 0
        self.last_train_time: float = 0
        self.last_result: Optional[Dict] = None

    def __repr__(self) -> str:
        return str((self.last_score, self.last_checkpoint, self.last_train_time, self.last_perturbation_time))


def _explore(
    config: Dict,
    mutations: Dict,
    resample_probability: float,
    perturbation_factors: Tuple[float, ...],
    custom_explore_fn: Optional[Callable],
) -> Tuple[Dict, Dict]:
    """(new config, {key: the operation applied}) for a perturbed copy of config.

    Per key of mutations (nested dicts recursively): a list or tuple of
    values resamples one at random with resample_probability (or when the
    current value is not in it), else moves to the left or right neighbour,
    clamped at the ends; a Domain or function resamples with
    resample_probability, else multiplies the value by one of
    perturbation_factors; a value that was an int stays one (truncated).
    custom_explore_fn then gets the new config and returns the final one.
    """
    operations: Dict[str, Any] = {}
    new_config = copy.deepcopy(config)
    for key, distribution in mutations.items():
        if isinstance(distribution, dict):
            nested, nested_ops = _explore(config[key], distribution, resample_probability, perturbation_factors, None)
            new_config[key] = nested
            operations[key] = nested_ops
        elif isinstance(distribution, (list, tuple)):
            if random.random() < resample_probability or config[key] not in distribution:
                new_config[key] = random.choice(distribution)
                operations[key] = "resample"
            else:
                shift = random.choice([-1, 1])
                old_idx = list(distribution).index(config[key])
                new_idx = min(max(old_idx + shift, 0), len(distribution) - 1)
                new_config[key] = distribution[new_idx]
                operations[key] = f"shift {'left' if shift == -1 else 'right'}{' (noop)' if old_idx == new_idx else ''}"
        elif isinstance(distribution, Domain) or callable(distribution):
            if random.random() < resample_probability:
                new_config[key] = distribution.sample(None) if isinstance(distribution, Domain) else distribution()
                operations[key] = "resample"
            else:
                factor = random.choice(perturbation_factors)
                new_config[key] = config[key] * factor
                operations[key] = f"* {factor}"
            if isinstance(config[key], int):
                new_config[key] = int(new_config[key])
        else:
            raise ValueError(f"Unsupported hyperparameter distribution type: {type(distribution)}")
    if custom_explore_fn:
        new_config = custom_explore_fn(new_config)
        if new_config is None:
            raise ValueError("Custom explore fn failed to return new config")
    return new_config, operations


def _make_experiment_tag(orig_tag: str, config: Dict, mutations: Dict) -> str:
    """orig_tag with the mutated values, e.g. "3_lr=0.1@perturbed[lr=0.0800]"."""
    resolved = {("config", k): config[k] for k in mutations}
    return f"{orig_tag}@perturbed[{format_vars(resolved)}]"


def _fill_config(config: Dict, attr: str, search_space: Union[dict, list, tuple, Callable, Domain]) -> None:
    """Samples a value for attr from search_space into config."""
    if isinstance(search_space, Domain):
        config[attr] = search_space.sample(None)
    elif isinstance(search_space, (list, tuple)):
        config[attr] = random.choice(search_space)
    elif isinstance(search_space, dict):
        config[attr] = {}
        for k, v in search_space.items():
            _fill_config(config[attr], k, v)
    elif callable(search_space):
        config[attr] = search_space()


def _filter_mutated_params_from_config(config: Dict, hyperparam_mutations: Dict) -> Dict:
    """The part of config that hyperparam_mutations names, nested dicts included."""
    out: Dict = {}
    for name in config:
        if name not in hyperparam_mutations:
            continue
        if isinstance(config[name], dict):
            out[name] = _filter_mutated_params_from_config(config[name], hyperparam_mutations[name])
        else:
            out[name] = config[name]
    return out


def _json_fallback(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


class PopulationBasedTraining(_MetricModeScheduler):
    """PBT (Jaderberg et al., https://arxiv.org/abs/1711.09846), Ray's rules.

    Every perturbation_interval of time_attr (after burn_in_period), a
    trial's score is recorded; the trials with a score are ranked, and the
    bottom quantile_fraction (at most half, rounded up) exploits the top as
    the module docstring describes: a trial's config becomes a top trial's,
    explored (each key of hyperparam_mutations resampled with
    resample_probability, else perturbed: floats and ints times 1.2 or 0.8,
    lists to a neighbouring value), and it restarts from that trial's
    checkpoint. Top trials keep going; so do the rest.

    Asynchronous by default: each trial is judged on its own schedule, and a
    trial at its perturbation time PAUSEs to yield when others are waiting.
    With synch=True every trial PAUSEs at each perturbation time until all
    live ones are there; they are judged together, and choose_trial_to_run
    resumes them.

    Args:
        time_attr: the result key that measures progress; it must grow.
        metric: the result key compared; with only a mode, "_metric".
        mode: "min" or "max".
        perturbation_interval: time between a trial's perturbations; > 0.
        burn_in_period: no perturbation before this time.
        hyperparam_mutations: key -> a list/tuple of values, a Domain
            (rtrain.tune.uniform, ...; not sample_from), a function of no
            arguments, or a dict of the same for a nested config. A key
            missing from a trial's config is sampled from it at on_trial_add.
        quantile_fraction: the fraction of trials in each of the top and
            bottom quantiles, 0 to 0.5 (0: no exploits).
        resample_probability: the chance to resample a mutated key rather
            than perturb it.
        perturbation_factors: the factors continuous values are perturbed by.
        custom_explore_fn: f(config) -> config, applied after the mutations.
            At least one of hyperparam_mutations and custom_explore_fn is
            needed.
        log_config: append each exploit to pbt_global.txt and
            pbt_policy_<trial_id>.txt in trial.experiment_path (where set),
            for PopulationBasedTrainingReplay.
        require_attrs: a result without time_attr or metric is an error
            (with False: a warning, and the result is ignored).
        synch: the synchronous variant above.
    """

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        perturbation_interval: float = 60.0,
        burn_in_period: float = 0.0,
        hyperparam_mutations: Optional[Dict[str, Union[dict, list, tuple, Callable, Domain]]] = None,
        quantile_fraction: float = 0.25,
        resample_probability: float = 0.25,
        perturbation_factors: Tuple[float, float] = (1.2, 0.8),
        custom_explore_fn: Optional[Callable] = None,
        log_config: bool = True,
        require_attrs: bool = True,
        synch: bool = False,
    ):
        hyperparam_mutations = hyperparam_mutations or {}
        for value in hyperparam_mutations.values():
            if not (isinstance(value, (dict, list, tuple, Domain)) or callable(value)):
                raise TypeError(
                    "`hyperparam_mutation` values must be either a List, Tuple, Dict, a tune search space object, "
                    "or a callable."
                )
            if isinstance(value, Function):
                raise ValueError(
                    "arbitrary tune.sample_from objects are not supported for `hyperparam_mutation` values. "
                    "You must use other built in primitives like tune.uniform, tune.loguniform, etc."
                )
        if not hyperparam_mutations and not custom_explore_fn:
            raise TuneError("You must specify at least one of `hyperparam_mutations` or `custom_explore_fn` to use PBT.")
        if quantile_fraction > 0.5 or quantile_fraction < 0:
            raise ValueError(
                f"You must set `quantile_fraction` to a value between 0 and 0.5. Current value: '{quantile_fraction}'"
            )
        if perturbation_interval <= 0:
            raise ValueError(
                "perturbation_interval must be a positive number greater than 0. "
                f"Current value: '{perturbation_interval}'"
            )
        super().__init__()
        self._init_metric_mode(metric, mode)
        self._time_attr = time_attr
        self._perturbation_interval = perturbation_interval
        self._burn_in_period = burn_in_period
        self._hyperparam_mutations = hyperparam_mutations
        self._quantile_fraction = quantile_fraction
        self._resample_probability = resample_probability
        self._perturbation_factors = perturbation_factors
        self._custom_explore_fn = custom_explore_fn
        self._log_config = log_config
        self._require_attrs = require_attrs
        self._synch = synch
        self._trial_state: Dict[Trial, _PBTTrialState] = {}
        self._next_perturbation_sync = max(self._perturbation_interval, self._burn_in_period)
        # trial_id -> the checkpoint it was restored from, until it commits
        # one of its own: a restart before then needs the source again.
        self._restored_from: Dict[str, str] = {}
        self._warned: Set[str] = set()
        self._num_checkpoints = 0
        self._num_perturbations = 0

    def on_trial_add(self, tune_controller: TrialRunnerView, trial: Trial) -> None:
        """Refuses a searcher other than BasicVariantGenerator (Ray's rule:
        PBT's exploits replace configs a searcher would not know of), and
        samples the mutated keys that trial.config lacks."""
        from rtrain.tune.search.basic_variant import BasicVariantGenerator
        from rtrain.tune.search.searcher import Searcher, _innermost

        search_alg = getattr(tune_controller, "search_alg", None)
        if isinstance(search_alg, Searcher) and not isinstance(_innermost(search_alg), BasicVariantGenerator):
            raise ValueError(
                f"Search algorithms cannot be used with {type(self).__name__} schedulers. Please remove {search_alg}."
            )
        self._require_metric_mode()
        self._trial_state[trial] = _PBTTrialState(trial)
        for attr in self._hyperparam_mutations:
            if attr not in trial.config:
                logger.debug("Cannot find %s in config. Using search space provided by hyperparam_mutations.", attr)
                _fill_config(trial.config, attr, self._hyperparam_mutations[attr])
                trial.evaluated_params[attr] = trial.config[attr]

    def _check_attr(self, name: str, what: str, result: Dict) -> None:
        msg = (
            f"Cannot find {what} {name} in trial result {result}. Make sure that this attribute is returned "
            "in the results of your Trainable."
        )
        if self._require_attrs:
            raise RuntimeError(
                msg + " If this error is expected, you can change this to a warning message by setting "
                "PBT(require_attrs=False)"
            )
        if what not in self._warned:
            self._warned.add(what)
            logger.warning(msg)

    def on_trial_result(self, tune_controller: TrialRunnerView, trial: Trial, result: Dict) -> str:
        """CONTINUE between perturbation times. At one: PAUSE with
        trial.restore_from set when the trial exploits; otherwise PAUSE if
        other trials wait to run (synch: always), else CONTINUE."""
        if self._time_attr not in result:
            self._check_attr(self._time_attr, "time_attr", result)
        if self._metric not in result:
            self._check_attr(self._metric, "metric", result)
        if self._metric not in result or self._time_attr not in result:
            return TrialScheduler.CONTINUE

        restored = self._restored_from.get(trial.trial_id)
        if restored is not None and trial.restore_from is None and trial.checkpoint not in (None, restored):
            # The trial committed a checkpoint of its own: the source's is
            # no longer what it would restart from.
            del self._restored_from[trial.trial_id]

        time = result[self._time_attr]
        state = self._trial_state[trial]
        if time < self._burn_in_period:
            return TrialScheduler.CONTINUE
        if time - state.last_perturbation_time < self._perturbation_interval:
            return TrialScheduler.CONTINUE

        state.last_score = self._metric_op * result[self._metric]
        state.last_train_time = time
        state.last_result = result

        if not self._synch:
            state.last_perturbation_time = time
            lower, upper = self._quantiles()
            waiting = any(t.status in (Trial.PENDING, Trial.PAUSED) for t in tune_controller.get_trials())
            self._checkpoint_or_exploit(trial, upper, lower)
            if trial.restore_from is not None or waiting:
                return TrialScheduler.PAUSE
            return TrialScheduler.CONTINUE

        if any(
            self._trial_state[t].last_train_time < self._next_perturbation_sync and t is not trial
            for t in tune_controller.get_live_trials()
        ):
            logger.debug("Sync: other trials are not at perturb time yet; pausing %s to wait.", trial)
        else:
            lower, upper = self._quantiles()
            middle = [t for t in tune_controller.get_trials() if t not in lower and t not in upper]
            # The top first: their checkpoints are recorded before the
            # bottom looks for one.
            for t in upper + middle + lower:
                self._trial_state[t].last_perturbation_time = time
                self._checkpoint_or_exploit(t, upper, lower)
            latest = max(self._trial_state[t].last_train_time for t in tune_controller.get_trials())
            self._next_perturbation_sync = max(self._next_perturbation_sync + self._perturbation_interval, latest)
            logger.debug("Next perturb at time %s", self._next_perturbation_sync)
        return TrialScheduler.PAUSE

    def _checkpoint_or_exploit(self, trial: Trial, upper: List[Trial], lower: List[Trial]) -> None:
        """Records a top trial's checkpoint; makes a bottom trial exploit."""
        state = self._trial_state[trial]
        if trial in upper:
            state.last_checkpoint = trial.checkpoint
            if trial.checkpoint is None:
                # A warning, once a trial, where Ray only logs: a sweep
                # whose trials never checkpoint never exploits (ray#27170),
                # and its user should hear why.
                what = f"no-checkpoint:{trial.trial_id}"
                (logger.warning if what not in self._warned else logger.info)(
                    f"[pbt]: trial {trial} is in the top quantile but has not committed a checkpoint, so it cannot "
                    "be exploited: report a checkpoint at least every perturbation_interval"
                )
                self._warned.add(what)
            else:
                self._num_checkpoints += 1
        else:
            state.last_checkpoint = None
        if trial not in lower:
            return
        sources = [t for t in upper if t is not trial and self._trial_state[t].last_checkpoint]
        if not sources:
            logger.info(
                f"[pbt]: no trial of the top quantile ({', '.join(str(t) for t in upper)}) has a checkpoint. "
                f"Skip exploit for trial {trial}"
            )
            return
        self._exploit(trial, random.choice(sources))

    def _summarize_hyperparam_changes(
        self, old_params: Dict, new_params: Dict, operations: Optional[Dict] = None, prefix: str = ""
    ) -> str:
        """Lines "key : old --- (op) --> new", nested dicts indented."""
        out = ""
        operations = operations or {}
        for name, old in old_params.items():
            new = new_params[name]
            out += f"{prefix}{name} : "
            if isinstance(old, dict):
                out += "\n" + self._summarize_hyperparam_changes(old, new, operations.get(name, {}), prefix + " " * 4)
            else:
                op = operations.get(name)
                arrow = f"--- ({op}) -->" if op else "----->"
                out += f"{old} {arrow} {new}\n"
        return out

    def _log_config_on_step(
        self, trial_state: _PBTTrialState, new_state: _PBTTrialState, trial: Trial, trial_to_clone: Trial, new_config: Dict
    ) -> None:
        """Appends [tag, clone's tag, iteration, clone's iteration, clone's
        config, new config] to pbt_global.txt and to the trial's policy
        file (which first takes a copy of the clone's: its history)."""
        if not trial.experiment_path:
            return
        policy = [
            trial_state.orig_tag,
            new_state.orig_tag,
            (trial_state.last_result or trial.last_result or {}).get(TRAINING_ITERATION, 0),
            (new_state.last_result or trial_to_clone.last_result or {}).get(TRAINING_ITERATION, 0),
            trial_to_clone.config,
            new_config,
        ]
        line = json.dumps(policy, default=_json_fallback) + "\n"
        os.makedirs(trial.experiment_path, exist_ok=True)
        with open(os.path.join(trial.experiment_path, "pbt_global.txt"), "a+") as f:
            f.write(line)
        trial_path = os.path.join(trial.experiment_path, f"pbt_policy_{trial.trial_id}.txt")
        clone_path = os.path.join(trial.experiment_path, f"pbt_policy_{trial_to_clone.trial_id}.txt")
        if os.path.exists(clone_path):
            shutil.copyfile(clone_path, trial_path)
        with open(trial_path, "a+") as f:
            f.write(line)

    def _get_new_config(self, trial: Trial, trial_to_clone: Trial) -> Tuple[Dict, Dict]:
        return _explore(
            trial_to_clone.config,
            self._hyperparam_mutations,
            self._resample_probability,
            self._perturbation_factors,
            self._custom_explore_fn,
        )

    def _exploit(self, trial: Trial, trial_to_clone: Trial) -> None:
        """Sets trial.restore_from: trial_to_clone's checkpoint and its config, explored."""
        trial_state = self._trial_state[trial]
        new_state = self._trial_state[trial_to_clone]
        name = type(self).__name__
        logger.info(
            f"[{name}] [Exploit] Cloning trial {trial_to_clone.trial_id} (score = {new_state.last_score:4f}) "
            f"into trial {trial.trial_id} (score = {trial_state.last_score:4f})"
        )
        new_config, operations = self._get_new_config(trial, trial_to_clone)
        old_params = _filter_mutated_params_from_config(trial_to_clone.config, self._hyperparam_mutations)
        new_params = _filter_mutated_params_from_config(new_config, self._hyperparam_mutations)
        summary = self._summarize_hyperparam_changes(old_params, new_params, operations) or "No hyperparameters mutated."
        logger.info(f"[{name}] [Explore] Perturbed the hyperparameter config of trial {trial.trial_id}:\n{summary}")
        if self._log_config:
            self._log_config_on_step(trial_state, new_state, trial, trial_to_clone, new_config)

        if trial.status == Trial.PAUSED and not self._synch:
            raise TuneError(
                "Trials should be paused here only if in synchronous mode. If you encounter this error "
                "please raise an issue."
            )
        checkpoint = new_state.last_checkpoint
        trial.restore_from = RestoreFrom(
            checkpoint=checkpoint,
            config=new_config,
            source_trial_id=trial_to_clone.trial_id,
            experiment_tag=_make_experiment_tag(trial_state.orig_tag, new_config, self._hyperparam_mutations),
            source_result=copy.deepcopy(new_state.last_result),
        )
        self._restored_from[trial.trial_id] = checkpoint
        self._num_perturbations += 1
        # The trial now stands where its source stood.
        trial_state.last_perturbation_time = new_state.last_perturbation_time
        trial_state.last_train_time = new_state.last_train_time

    def _quantiles(self) -> Tuple[List[Trial], List[Trial]]:
        """(bottom, top) among the unfinished trials with a score; empty
        lists when fewer than two have one."""
        trials = [t for t, s in self._trial_state.items() if s.last_score is not None and not t.is_finished()]
        trials.sort(key=lambda t: self._trial_state[t].last_score)
        if len(trials) <= 1:
            return [], []
        n = int(math.ceil(len(trials) * self._quantile_fraction))
        if n > len(trials) / 2:
            n = int(math.floor(len(trials) / 2))
        if n == 0:
            return [], []
        return trials[:n], trials[-n:]

    def checkpoints_in_use(self) -> Set[str]:
        """The checkpoints an exploit may still start from, which retention
        must keep: each unfinished top trial's recorded checkpoint, each
        pending restore_from's, and each source a restored trial would
        restart from until it commits a checkpoint of its own."""
        used: Set[str] = set()
        for trial, state in self._trial_state.items():
            if trial.is_finished():
                continue
            if state.last_checkpoint:
                used.add(state.last_checkpoint)
            if trial.restore_from is not None and trial.restore_from.checkpoint:
                used.add(trial.restore_from.checkpoint)
        used.update(c for c in self._restored_from.values() if c)
        return used

    def _forget(self, trial: Trial) -> None:
        self._restored_from.pop(trial.trial_id, None)

    def on_trial_complete(self, tune_controller: TrialRunnerView, trial: Trial, result: Dict) -> None:
        self._forget(trial)

    def on_trial_error(self, tune_controller: TrialRunnerView, trial: Trial) -> None:
        self._forget(trial)

    def on_trial_remove(self, tune_controller: TrialRunnerView, trial: Trial) -> None:
        self._forget(trial)

    def choose_trial_to_run(self, tune_controller: TrialRunnerView) -> Optional[Trial]:
        """The PENDING or PAUSED trial that has trained least (synch: of
        those not yet at the next perturbation time), so the population
        advances evenly even when it does not fit the cluster at once."""
        candidates = []
        for trial in tune_controller.get_trials():
            if trial.status not in (Trial.PENDING, Trial.PAUSED):
                continue
            state = self._trial_state.get(trial)
            if state is None:
                continue
            if not self._synch or state.last_train_time < self._next_perturbation_sync:
                candidates.append(trial)
        candidates.sort(key=lambda t: self._trial_state[t].last_train_time)
        return candidates[0] if candidates else None

    def debug_string(self) -> str:
        return f"PopulationBasedTraining: {self._num_checkpoints} checkpoints, {self._num_perturbations} perturbs"


__all__ = ["PopulationBasedTraining"]
