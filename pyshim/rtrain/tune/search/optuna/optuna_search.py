"""Optuna's samplers (TPE by default) as a Tune searcher, over Optuna's ask/tell."""

from __future__ import annotations

import functools
import logging
import pickle
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from rtrain.tune.result import DEFAULT_METRIC, TRAINING_ITERATION
from rtrain.tune.search.sample import Categorical, Domain, Float, Integer, LogUniform, Quantized, Uniform
from rtrain.tune.search.searcher import (
    UNDEFINED_METRIC_MODE,
    UNDEFINED_SEARCH_SPACE,
    UNRESOLVED_SEARCH_SPACE,
    Searcher,
)
from rtrain.tune.search.util import flatten_dict, unflatten_dict, validate_warmstart
from rtrain.tune.search.variant_generator import parse_spec_vars

try:
    import optuna as ot
    from optuna.distributions import BaseDistribution as OptunaDistribution
    from optuna.samplers import BaseSampler
    from optuna.storages import BaseStorage
    from optuna.trial import TrialState as OptunaTrialState
except ImportError:  # the error says what to install, on first use
    ot = None
    OptunaDistribution = BaseSampler = BaseStorage = OptunaTrialState = None

logger = logging.getLogger(__name__)

# A define-by-run function slower than this is doing work that belongs in
# the train function; say so.
DEFINE_BY_RUN_WARN_THRESHOLD_S = 1


class _OptunaTrialSuggestCaptor:
    """Wraps an optuna.Trial, noting what each suggest_* call returns."""

    def __init__(self, ot_trial: Any) -> None:
        self.ot_trial = ot_trial
        self.captured_values: Dict[str, Any] = {}

    def _wrap(self, func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            name = kwargs.get("name", args[0] if args else None)
            ret = func(*args, **kwargs)
            self.captured_values[name] = ret
            return ret

        return wrapper

    def __getattr__(self, item_name: str) -> Any:
        item = getattr(self.ot_trial, item_name)
        if item_name.startswith("suggest_") and callable(item):
            return self._wrap(item)
        return item


class OptunaSearch(Searcher):
    """Suggests configs with an Optuna sampler (Ray's OptunaSearch).

    The space comes from the Tuner's param_space (rtrain.tune domains,
    converted to Optuna distributions; grid_search is refused), or from
    ``space``: a dict of optuna distributions, or a define-by-run function
    of an optuna.Trial that calls its suggest_* methods (and may return a
    dict of constants). Nested param_spaces become "a/b" parameter names and
    nested configs again.

    Args:
        space: see above; None to take the Tuner's param_space.
        metric: the result key to optimize (a list for multi-objective);
            with only a mode given, Tune's default metric "_metric".
        mode: "min" or "max" (a list matching metric's).
        points_to_evaluate: configs to try first (enqueued in the study).
        sampler: an optuna sampler; None for TPESampler(seed=seed).
        study_name: the study's name (default "optuna").
        storage: an optuna storage; default in memory.
        seed: the default sampler's seed; ignored (with a warning) when a
            sampler is given.
        evaluated_rewards: the results of points_to_evaluate, which are then
            told to the study instead of run (needs a dict space).
    """

    def __init__(
        self,
        space: Optional[Union[Dict[str, Any], List[Tuple], Callable[[Any], Optional[Dict[str, Any]]]]] = None,
        metric: Optional[Union[str, List[str]]] = None,
        mode: Optional[Union[str, List[str]]] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        sampler: Optional[Any] = None,
        study_name: Optional[str] = None,
        storage: Optional[Any] = None,
        seed: Optional[int] = None,
        evaluated_rewards: Optional[List] = None,
    ):
        if ot is None:
            raise ImportError("OptunaSearch needs optuna: apt install python3-optuna (in a venv: pip install optuna)")
        super().__init__(metric=metric, mode=mode)

        if isinstance(space, dict) and space:
            _, domain_vars, grid_vars = parse_spec_vars(space)
            if domain_vars or grid_vars:
                logger.warning(UNRESOLVED_SEARCH_SPACE.format(par="space", cls=type(self).__name__))
                space = self.convert_search_space(space)
            else:
                space = flatten_dict(space, "/")
        self._space = space

        self._points_to_evaluate = points_to_evaluate or []
        self._evaluated_rewards = evaluated_rewards
        self._study_name = study_name or "optuna"

        if sampler and seed:
            logger.warning(
                "You passed an initialized sampler to `OptunaSearch`. The `seed` parameter has to be "
                "passed to the sampler directly and will be ignored."
            )
        elif sampler and not isinstance(sampler, BaseSampler):
            raise ValueError("You can only pass an instance of `optuna.samplers.BaseSampler` as a sampler to `OptunaSearcher`.")
        self._sampler = sampler
        self._seed = seed

        if storage and not isinstance(storage, BaseStorage):
            raise ValueError("The `storage` parameter in `OptunaSearcher` must be an instance of `optuna.samplers.BaseStorage`.")
        self._storage = storage or ot.storages.InMemoryStorage()

        self._completed_trials: set = set()
        self._ot_trials: Dict[str, Any] = {}
        self._ot_study = None
        if self._space:
            self._setup_study(mode)

    def _setup_study(self, mode: Union[str, list, None]) -> None:
        if self._metric is None and self._mode:
            if isinstance(self._mode, list):
                raise ValueError("If ``mode`` is a list (multi-objective optimization case), ``metric`` must be defined.")
            self._metric = DEFAULT_METRIC

        sampler = self._sampler or ot.samplers.TPESampler(seed=self._seed)
        if isinstance(mode, list):
            direction = dict(directions=["minimize" if m == "min" else "maximize" for m in mode])
        else:
            direction = dict(direction="minimize" if mode == "min" else "maximize")
        self._ot_study = ot.study.create_study(
            storage=self._storage,
            sampler=sampler,
            pruner=ot.pruners.NopPruner(),
            study_name=self._study_name,
            load_if_exists=True,
            **direction,
        )

        if self._points_to_evaluate:
            validate_warmstart(
                self._space,
                self._points_to_evaluate,
                self._evaluated_rewards,
                validate_point_name_lengths=not callable(self._space),
            )
            if self._evaluated_rewards:
                for point, reward in zip(self._points_to_evaluate, self._evaluated_rewards):
                    self.add_evaluated_point(point, reward)
            else:
                for point in self._points_to_evaluate:
                    self._ot_study.enqueue_trial(point)

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        if self._space:
            return False
        self._space = self.convert_search_space(config)
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self._setup_study(self._mode)
        return True

    def _suggest_from_define_by_run_func(self, func: Callable, ot_trial: Any) -> Dict:
        captor = _OptunaTrialSuggestCaptor(ot_trial)
        start = time.time()
        ret = func(captor)
        took = time.time() - start
        if took > DEFINE_BY_RUN_WARN_THRESHOLD_S:
            warnings.warn(
                f"Define-by-run function passed in the `space` argument took {took} seconds to run. "
                "Ensure that actual computation, training takes place inside Tune's train functions "
                "or Trainables passed to `tune.Tuner()`."
            )
        if ret is not None:
            if not isinstance(ret, dict):
                raise TypeError(
                    "The return value of the define-by-run function passed in the `space` argument should be "
                    f"either None or a `dict` with `str` keys. Got {type(ret)}."
                )
            if not all(isinstance(k, str) for k in ret):
                raise TypeError(
                    "At least one of the keys in the dict returned by the define-by-run function passed in "
                    "the `space` argument was not a `str`."
                )
        return {**captor.captured_values, **ret} if ret else captor.captured_values

    def _check_ready(self) -> None:
        if not self._space:
            raise RuntimeError(UNDEFINED_SEARCH_SPACE.format(cls=type(self).__name__, space="space"))
        if not self._metric or not self._mode:
            raise RuntimeError(UNDEFINED_METRIC_MODE.format(cls=type(self).__name__, metric=self._metric, mode=self._mode))

    def suggest(self, trial_id: str) -> Optional[Dict]:
        self._check_ready()
        if callable(self._space):
            if trial_id not in self._ot_trials:
                self._ot_trials[trial_id] = self._ot_study.ask()
            params = self._suggest_from_define_by_run_func(self._space, self._ot_trials[trial_id])
        else:
            if trial_id not in self._ot_trials:
                self._ot_trials[trial_id] = self._ot_study.ask(fixed_distributions=self._space)
            params = self._ot_trials[trial_id].params
        return unflatten_dict(params)

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        if isinstance(self.metric, list):
            # Optuna takes no intermediate values for multi-objective studies.
            return
        if trial_id in self._completed_trials:
            logger.warning(f"Received additional result for trial {trial_id}, but it already finished. Result: {result}")
            return
        # Results without the metric or an iteration cannot be reported to
        # Optuna (Ray would raise a KeyError); they are skipped.
        if self.metric not in result or TRAINING_ITERATION not in result or trial_id not in self._ot_trials:
            return
        self._ot_trials[trial_id].report(result[self.metric], result[TRAINING_ITERATION])

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        if trial_id in self._completed_trials:
            logger.warning(f"Received additional completion for trial {trial_id}, but it already finished. Result: {result}")
            return
        ot_trial = self._ot_trials[trial_id]
        if result:
            val = [result.get(m) for m in self.metric] if isinstance(self.metric, list) else result.get(self.metric)
        else:
            val = None
        state = OptunaTrialState.COMPLETE
        if val is None:
            state = OptunaTrialState.FAIL if error else OptunaTrialState.PRUNED
        try:
            self._ot_study.tell(ot_trial, val, state=state)
        except Exception as exc:  # e.g. a NaN value; the study goes on without it
            logger.warning(exc)
        self._completed_trials.add(trial_id)

    def add_evaluated_point(
        self,
        parameters: Dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: Optional[List[float]] = None,
    ) -> None:
        self._check_ready()
        if callable(self._space):
            raise TypeError(
                "Define-by-run function passed in `space` argument is not yet supported when using "
                "`evaluated_rewards`. Please provide an `OptunaDistribution` dict or pass a Ray Tune "
                "search space to `tune.Tuner()`."
            )
        state = OptunaTrialState.COMPLETE
        if error:
            state = OptunaTrialState.FAIL
        elif pruned:
            state = OptunaTrialState.PRUNED
        intermediate = dict(enumerate(intermediate_values)) if intermediate_values else None
        trial = ot.trial.create_trial(
            state=state,
            value=value,
            params=parameters,
            distributions=self._space,
            intermediate_values=intermediate,
        )
        self._ot_study.add_trial(trial)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(dict(self.__dict__), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    @staticmethod
    def convert_search_space(spec: Dict) -> Dict[str, Any]:
        """A param_space as Optuna distributions keyed by "a/b" paths.

        randint's exclusive upper bound becomes Optuna's inclusive upper - 1
        (qrandint's is kept: its rounding reaches it); quantization becomes
        step; loguniform becomes log=True (with its quantization dropped,
        with a warning). grid_search, randn and sample_from are refused.
        """
        _, domain_vars, grid_vars = parse_spec_vars(spec)
        if not domain_vars and not grid_vars:
            return {}
        if grid_vars:
            raise ValueError("Grid search parameters cannot be automatically converted to an Optuna search space.")

        spec = flatten_dict(spec, prevent_delimiter=True)
        _, domain_vars, _ = parse_spec_vars(spec)

        def resolve_value(domain: Domain) -> Any:
            quantize = None
            sampler = domain.get_sampler()
            if isinstance(sampler, Quantized):
                quantize = sampler.q
                sampler = sampler.sampler
                if isinstance(sampler, LogUniform):
                    logger.warning(
                        "Optuna does not handle quantization in loguniform sampling. The parameter will be "
                        "passed but it will probably be ignored."
                    )
            if isinstance(domain, Float):
                if isinstance(sampler, LogUniform):
                    if quantize:
                        logger.warning(
                            "Optuna does not support both quantization and sampling from LogUniform. "
                            "Dropped quantization."
                        )
                    return ot.distributions.FloatDistribution(domain.lower, domain.upper, log=True)
                if isinstance(sampler, Uniform):
                    if quantize:
                        return ot.distributions.FloatDistribution(domain.lower, domain.upper, step=quantize)
                    return ot.distributions.FloatDistribution(domain.lower, domain.upper)
            elif isinstance(domain, Integer):
                if isinstance(sampler, LogUniform):
                    return ot.distributions.IntDistribution(domain.lower, domain.upper - 1, step=quantize or 1, log=True)
                if isinstance(sampler, Uniform):
                    return ot.distributions.IntDistribution(
                        domain.lower, domain.upper - int(not quantize), step=quantize or 1
                    )
            elif isinstance(domain, Categorical):
                if isinstance(sampler, Uniform):
                    return ot.distributions.CategoricalDistribution(domain.categories)
            raise ValueError(
                "Optuna search does not support parameters of type `{}` with samplers of type `{}`".format(
                    type(domain).__name__, type(domain.sampler).__name__
                )
            )

        return {"/".join(str(p) for p in path): resolve_value(domain) for path, domain in domain_vars}


__all__ = ["OptunaSearch"]
