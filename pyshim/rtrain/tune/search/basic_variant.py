"""The default searcher: Tune's own variant generation (grid and random search)."""

from __future__ import annotations

import copy
import logging
import pickle
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Union

from rtrain.tune.search.sample import RandomState, _Rng
from rtrain.tune.search.searcher import Searcher
from rtrain.tune.search.variant_generator import (
    _preset_variants,
    count_spec_samples,
    count_variants,
    flatten_resolved_vars,
    format_vars,
    generate_variants,
)

logger = logging.getLogger(__name__)

# Above this many grid combinations per sample the variants are made one at
# a time instead of all at once, and the searcher can no longer be saved.
SERIALIZATION_THRESHOLD = 1e6


@dataclass
class Variant:
    """What BasicVariantGenerator made a trial of, for its name and results.

    Attributes:
        experiment_tag: Ray's trial tag, "<index>_<key=value,...>" of the
            sampled and grid values ("<index>" alone when there are none).
        evaluated_params: those values keyed by "a/b" paths.
    """

    experiment_tag: str
    evaluated_params: Dict[str, Any]


class BasicVariantGenerator(Searcher):
    """Grid search and random search over a param_space (Ray's default).

    Each of num_samples samples yields every grid_search combination (the
    first grid in path order changing fastest), with the random values
    sampled anew for each (or once per sample with constant_grid_search).
    points_to_evaluate come first, each replacing one sample: a point fixes
    the values it names, and the grids it leaves open still multiply it.
    With {"a": grid_search([1, 2]), "b": randint(0, 3)}, num_samples=4 and
    points [{"a": 2, "b": 2}, {"a": 1}, {"b": 2}]: 1 + 1 + 2 + 2 = 6 trials.

    The same random_state seed gives the same configs. The searcher itself
    says when it is done (suggest returns Searcher.FINISHED).

    Args:
        points_to_evaluate: configs (possibly partial) to run first.
        max_concurrent: at most this many trials suggested and not yet
            complete; 0 means no limit.
        constant_grid_search: sample the random values once per sample and
            keep them across that sample's grid combinations.
        random_state: a seed, numpy Generator or RandomState; None uses
            numpy's global generator.
    """

    CKPT_FILE_TMPL = "basic-variant-state-{}.json"

    def __init__(
        self,
        points_to_evaluate: Optional[List[Dict]] = None,
        max_concurrent: int = 0,
        constant_grid_search: bool = False,
        random_state: RandomState = None,
    ):
        super().__init__()
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 0:
            raise ValueError(f"BasicVariantGenerator(max_concurrent={max_concurrent!r}): give 0 (no limit) or more")
        self._points_to_evaluate: List[Dict] = list(points_to_evaluate or [])
        self.max_concurrent = max_concurrent
        self._constant_grid_search = constant_grid_search
        self._random_state = _Rng(random_state)
        self._param_space: Optional[Dict] = None
        self._num_samples = 0
        self._total_samples = 0
        self._points_left: List[Dict] = []
        self._samples_left = 0
        self._variants: Union[List, Iterator, None] = None
        self._lazy = False
        self._counter = 0
        self._finished = False
        self._live_trials: set = set()
        self._info: Dict[str, Variant] = {}

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        """Takes the param_space (config) and spec["num_samples"] (default 1,
        -1 for unbounded). metric and mode are not used. False if a
        param_space was taken already."""
        if self._param_space is not None:
            return False
        num_samples = spec.get("num_samples", 1)
        if num_samples == -1:
            num_samples = sys.maxsize
        self._param_space = copy.deepcopy(config or {})
        self._num_samples = num_samples
        self._samples_left = num_samples
        self._points_left = copy.deepcopy(self._points_to_evaluate)
        self._total_samples = count_variants(self._param_space, num_samples, self._points_left)
        grid = count_spec_samples(self._param_space, 1)
        self._lazy = grid > SERIALIZATION_THRESHOLD
        if self._lazy:
            warnings.warn(
                f"The number of pre-generated samples ({grid}) exceeds the serialization threshold "
                f"({int(SERIALIZATION_THRESHOLD)}). Resume ability is disabled. To fix this, reduce the number "
                "of dimensions/size of the provided grid search."
            )
        return True

    @property
    def total_samples(self) -> int:
        """How many trials this makes in all (0 before set_search_properties)."""
        return self._total_samples

    def is_finished(self) -> bool:
        return self._finished

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True

    def _next_variant(self) -> Optional[tuple]:
        while True:
            if self._variants is not None:
                if isinstance(self._variants, list):
                    if self._variants:
                        return self._variants.pop(0)
                else:
                    nxt = next(self._variants, None)
                    if nxt is not None:
                        return nxt
                self._variants = None
            if self._points_left:
                point = self._points_left.pop(0)
                self._samples_left -= 1
                gen = _preset_variants(self._param_space, point, self._constant_grid_search, self._random_state)
            elif self._samples_left > 0:
                self._samples_left -= 1
                gen = generate_variants(self._param_space, self._constant_grid_search, self._random_state)
            else:
                return None
            self._variants = gen if self._lazy else list(gen)

    def suggest(self, trial_id: str) -> Optional[Union[Dict, str]]:
        """The next variant's config; None while max_concurrent trials are
        live; Searcher.FINISHED once every variant was handed out."""
        if self._param_space is None:
            raise RuntimeError(
                "BasicVariantGenerator has no param_space: call set_search_properties(metric, mode, param_space, "
                "num_samples=...) first"
            )
        if self._finished:
            return Searcher.FINISHED
        if self.max_concurrent > 0 and len(self._live_trials) >= self.max_concurrent:
            return None
        nxt = self._next_variant()
        if nxt is None:
            self._finished = True
            return Searcher.FINISHED
        resolved_vars, config = nxt
        tag = str(self._counter)
        if resolved_vars:
            tag += "_" + format_vars(resolved_vars)
        self._counter += 1
        self._info[trial_id] = Variant(tag, flatten_resolved_vars(resolved_vars))
        self._live_trials.add(trial_id)
        return config

    def variant(self, trial_id: str) -> Variant:
        """The tag and evaluated params of the config suggested for trial_id."""
        return self._info[trial_id]

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        self._live_trials.discard(trial_id)

    def get_state(self) -> Dict:
        if self._lazy:
            raise NotImplementedError(
                "BasicVariantGenerator: a grid of more than 1e6 combinations is generated lazily and cannot be saved"
            )
        return dict(self.__dict__)

    def set_state(self, state: Dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        # cloudpickle, where it is installed, because sample_from lambdas in
        # the param_space defeat pickle.
        try:
            import cloudpickle as dumper
        except ImportError:
            dumper = pickle
        with open(checkpoint_path, "wb") as f:
            dumper.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


__all__ = ["BasicVariantGenerator", "Variant"]
