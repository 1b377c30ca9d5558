"""A wrapper that caps how many of a searcher's trials run at once."""

from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List, Optional, Union

from rtrain.tune.search.searcher import Searcher

logger = logging.getLogger(__name__)


class ConcurrencyLimiter(Searcher):
    """Suggests nothing (None) while max_concurrent of searcher's trials are
    live, i.e. suggested and not yet complete.

    A searcher that limits concurrency itself (set_max_concurrency returns
    True, as BasicVariantGenerator's does) is given max_concurrent and left
    to do it.

    Args:
        searcher: the searcher to wrap.
        max_concurrent: the most live trials, 1 or more.
        batch: hold the completions back until every live trial is
            complete, then tell the searcher all of them, so it learns from
            whole batches.
    """

    def __init__(self, searcher: Searcher, max_concurrent: int, batch: bool = False):
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"ConcurrencyLimiter(max_concurrent={max_concurrent!r}): give a whole number, 1 or more")
        if not isinstance(searcher, Searcher):
            raise RuntimeError(
                f"The `ConcurrencyLimiter` only works with `Searcher` objects (got {type(searcher)}). "
                "Please try to pass `max_concurrent` to the search generator directly."
            )
        self.searcher = searcher
        self.max_concurrent = max_concurrent
        self.batch = batch
        self.live_trials: set = set()
        self.num_unfinished_live_trials = 0
        self.cached_results: Dict[str, tuple] = {}
        self._limit_concurrency = True
        self._set_searcher_max_concurrency()
        super().__init__(metric=self.searcher.metric, mode=self.searcher.mode)

    def _set_searcher_max_concurrency(self) -> None:
        self._limit_concurrency = not self.searcher.set_max_concurrency(self.max_concurrent)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        self._set_searcher_max_concurrency()
        ok = self.searcher.set_search_properties(metric, mode, config, **spec)
        self._metric, self._mode = self.searcher.metric, self.searcher.mode
        return ok

    def suggest(self, trial_id: str) -> Optional[Union[Dict, str]]:
        if not self._limit_concurrency:
            return self.searcher.suggest(trial_id)
        if trial_id in self.live_trials:
            raise ValueError(f"Trial ID {trial_id} must be unique: already found in set.")
        if len(self.live_trials) >= self.max_concurrent:
            logger.debug(
                "Not providing a suggestion for %s due to concurrency limit: %s/%s.",
                trial_id,
                len(self.live_trials),
                self.max_concurrent,
            )
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion is not None and suggestion != Searcher.FINISHED:
            self.live_trials.add(trial_id)
            self.num_unfinished_live_trials += 1
        return suggestion

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        if not self._limit_concurrency:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        if trial_id not in self.live_trials:
            return
        if not self.batch:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            self.live_trials.remove(trial_id)
            self.num_unfinished_live_trials -= 1
            return
        self.cached_results[trial_id] = (result, error)
        self.num_unfinished_live_trials -= 1
        if self.num_unfinished_live_trials > 0:
            return
        # The whole batch is in: the searcher learns of all of it at once,
        # and only then are new suggestions allowed.
        for tid, (res, err) in self.cached_results.items():
            self.searcher.on_trial_complete(tid, result=res, error=err)
            self.live_trials.remove(tid)
        self.cached_results = {}
        self.num_unfinished_live_trials = 0

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def add_evaluated_point(
        self,
        parameters: Dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: Optional[List[float]] = None,
    ) -> None:
        return self.searcher.add_evaluated_point(parameters, value, error, pruned, intermediate_values)

    def get_state(self) -> Dict:
        state = dict(self.__dict__)
        del state["searcher"]
        return copy.deepcopy(state)

    def set_state(self, state: Dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        """Saves the wrapped searcher's state only, as Ray does: a restored
        limiter counts no live trials."""
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)


__all__ = ["ConcurrencyLimiter"]
