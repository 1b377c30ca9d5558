"""The interface every search algorithm implements (Ray's Searcher).

The trial runner drives a searcher this way (Ray's order)::

    configure_searcher(searcher, metric, mode, param_space, num_samples=n)
    # per new trial, while the runner has room for one:
    config = searcher.suggest(trial_id)   # dict: run it; None: ask again
                                          # later; Searcher.FINISHED: no more
    searcher.on_trial_result(trial_id, result)        # each result
    searcher.on_trial_complete(trial_id, result, error)  # once, at the end

The runner picks trial_ids (unique strings), makes a Trial of each config
(BasicVariantGenerator.variant(trial_id) gives its tag and evaluated
params) and owns the trials; a searcher only sees ids, configs and results.
Results reach searchers and schedulers flattened, as in Ray: a reported
{"val": {"loss": x}} arrives as {"val/loss": x} (search.util.flatten_dict).

BasicVariantGenerator answers FINISHED itself once its variants are used
up; for every other searcher the runner stops asking after num_samples
configs (Ray's SearchGenerator), so the number of trials is
``total_trials(searcher, param_space, num_samples)``. save(path) writes the
searcher's whole state to one file and restore(path) reads it back, for
Tuner.restore: a restored searcher needs no set_search_properties again.
"""

from __future__ import annotations

import glob
import logging
import os
import uuid
from typing import Any, Dict, List, Optional, Union

logger = logging.getLogger(__name__)

UNRESOLVED_SEARCH_SPACE = (
    "You passed a `{par}` parameter to {cls} that contained unresolved search "
    "space definitions. {cls} should however be instantiated with fully "
    "configured search spaces only. To use Ray Tune's automatic search space "
    "conversion, pass the space definition as part of the `param_space` argument "
    "to `tune.Tuner()` instead."
)

UNDEFINED_SEARCH_SPACE = (
    "Trying to sample a configuration from {cls}, but no search "
    "space has been defined. Either pass the `{space}` argument when "
    "instantiating the search algorithm, or pass a `param_space` to "
    "`tune.Tuner()`."
)

UNDEFINED_METRIC_MODE = (
    "Trying to sample a configuration from {cls}, but the `metric` "
    "({metric}) or `mode` ({mode}) parameters have not been set. "
    "Either pass these arguments when instantiating the search algorithm, "
    "or pass them to `tune.TuneConfig()`."
)


class Searcher:
    """Base class of the algorithms that suggest configs.

    A subclass implements suggest and on_trial_complete, and
    set_search_properties if it can take its space from the Tuner's
    param_space; a subclass with its own __init__ calls this one's.

    Args:
        metric: the result key to optimize (a list for multi-objective
            searchers that support it).
        mode: "min" or "max" (a list matching metric's).
    """

    FINISHED = "FINISHED"
    CKPT_FILE_TMPL = "searcher-state-{}.pkl"

    def __init__(self, metric: Optional[Union[str, List[str]]] = None, mode: Optional[Union[str, List[str]]] = None):
        self._metric = metric
        self._mode = mode
        if not mode or not metric:
            return
        if not isinstance(metric, type(mode)):
            raise ValueError("metric and mode must be of the same type")
        if isinstance(mode, str):
            if mode not in ("min", "max"):
                raise ValueError("if `mode` is a str must be 'min' or 'max'!")
        elif isinstance(mode, list):
            if len(mode) != len(metric):
                raise ValueError("Metric and mode must be the same length")
            if not all(m in ("min", "max", "obs") for m in mode):
                raise ValueError("All of mode must be 'min' or 'max' or 'obs'!")
        else:
            raise ValueError("Mode most either be a list or string")

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        """Takes the Tuner's metric, mode and param_space.

        Args:
            metric, mode: TuneConfig's (None when not set there).
            config: the param_space.
            **spec: the rest of the experiment: num_samples, and anything a
                later version passes (ignore what you do not know).

        Returns:
            True if the searcher took them; False if it already has its own
            (a search space given to its constructor), which the runner turns
            into Ray's errors (see configure_searcher).
        """
        return False

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        """One intermediate result; it may lack the metric or hold NaN."""

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        """The trial ended: result is its last one (None if it had none);
        error is True when it failed."""
        raise NotImplementedError

    def suggest(self, trial_id: str) -> Optional[Union[Dict, str]]:
        """The config for a new trial named trial_id; None when there is none
        to give now (try again later); Searcher.FINISHED when there will be
        no more."""
        raise NotImplementedError

    def add_evaluated_point(
        self,
        parameters: Dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: Optional[List[float]] = None,
    ) -> None:
        """Tells the searcher about a point evaluated outside this run."""
        raise NotImplementedError

    def save(self, checkpoint_path: str) -> None:
        """Writes the searcher's state to the file checkpoint_path."""
        raise NotImplementedError

    def restore(self, checkpoint_path: str) -> None:
        """Reads the state save wrote to checkpoint_path."""
        raise NotImplementedError

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """True if the searcher limits concurrency itself (ConcurrencyLimiter
        then defers to it)."""
        return False

    def get_state(self) -> Dict:
        raise NotImplementedError

    def set_state(self, state: Dict) -> None:
        raise NotImplementedError

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """save() into checkpoint_dir under CKPT_FILE_TMPL, atomically (a
        temporary file renamed into place)."""
        file_name = self.CKPT_FILE_TMPL.format(session_str)
        tmp = os.path.join(checkpoint_dir, f".{uuid.uuid4()}-tmp-{file_name}")
        try:
            self.save(tmp)
        except NotImplementedError:
            logger.warning("save not implemented for Searcher. Skipping save.")
            return
        if os.path.exists(tmp):
            os.replace(tmp, os.path.join(checkpoint_dir, file_name))

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        """restore() from the newest file save_to_dir wrote in checkpoint_dir."""
        paths = glob.glob(os.path.join(checkpoint_dir, self.CKPT_FILE_TMPL.format("*")))
        if not paths:
            raise RuntimeError(f"Searcher unable to find checkpoint in {checkpoint_dir}")
        self.restore(max(paths))

    @property
    def metric(self) -> Any:
        """The result key optimized."""
        return self._metric

    @property
    def mode(self) -> Any:
        """"min" or "max"."""
        return self._mode


def _innermost(searcher: Any) -> Any:
    # ConcurrencyLimiter wraps a searcher in .searcher.
    while hasattr(searcher, "searcher") and isinstance(getattr(searcher, "searcher"), Searcher):
        searcher = searcher.searcher
    return searcher


def configure_searcher(
    searcher: Searcher,
    metric: Optional[str],
    mode: Optional[str],
    config: Dict,
    entrypoint: str = "Tuner(...)",
    search_space_arg: str = "param_space",
    **spec: Any,
) -> None:
    """Hands the Tuner's metric, mode and param_space to searcher, as Ray's
    tune.run does, raising Ray's errors.

    BasicVariantGenerator is always told (it needs num_samples even for an
    empty param_space); other searchers only for a non-empty one. A searcher
    that refuses because it has its own space is an error only when
    param_space still holds unresolved values.

    Args:
        entrypoint, search_space_arg: how the error names the user's call.
        **spec: num_samples and the rest of the experiment's public spec.
    """
    from rtrain.tune.search.basic_variant import BasicVariantGenerator
    from rtrain.tune.search.variant_generator import has_unresolved_values

    if mode and mode not in ("min", "max"):
        raise ValueError(f"The `mode` parameter passed to `{entrypoint}` must be one of ['min', 'max']")
    if not config and not isinstance(_innermost(searcher), BasicVariantGenerator):
        return
    if not searcher.set_search_properties(metric, mode, config, **spec) and has_unresolved_values(config):
        raise ValueError(
            f"You passed a `{search_space_arg}` parameter to `{entrypoint}` with "
            "unresolved parameters, but the search algorithm was already "
            "instantiated with a search space. Make sure that `config` "
            "does not contain any more parameter definitions - include "
            "them in the search algorithm's search space if necessary."
        )


def total_trials(searcher: Searcher, param_space: Dict, num_samples: int) -> int:
    """How many trials a run makes: BasicVariantGenerator's count of variants
    (grid combinations x num_samples, points_to_evaluate counted), or
    num_samples for any other searcher. num_samples=-1 means unbounded
    (sys.maxsize), as in Ray."""
    import sys

    from rtrain.tune.search.basic_variant import BasicVariantGenerator
    from rtrain.tune.search.variant_generator import count_variants

    if num_samples == -1:
        num_samples = sys.maxsize
    inner = _innermost(searcher)
    if isinstance(inner, BasicVariantGenerator):
        return count_variants(param_space, num_samples, inner._points_to_evaluate)
    return num_samples


__all__ = [
    "Searcher",
    "UNDEFINED_METRIC_MODE",
    "UNDEFINED_SEARCH_SPACE",
    "UNRESOLVED_SEARCH_SPACE",
    "configure_searcher",
    "total_trials",
]
