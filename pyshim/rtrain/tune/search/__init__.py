"""Search algorithms: what config each new trial gets (Ray's ray.tune.search).

The interface the trial runner drives is Searcher's (see searcher.py):
set_search_properties, suggest, on_trial_result, on_trial_complete, save and
restore. BasicVariantGenerator (grid and random search) is the default;
ConcurrencyLimiter caps any searcher's live trials; OptunaSearch is in
rtrain.tune.search.optuna, imported on its own so that optuna loads only
when it is used.
"""

from rtrain.tune.search.basic_variant import BasicVariantGenerator
from rtrain.tune.search.concurrency_limiter import ConcurrencyLimiter
from rtrain.tune.search.searcher import (
    UNDEFINED_METRIC_MODE,
    UNDEFINED_SEARCH_SPACE,
    UNRESOLVED_SEARCH_SPACE,
    Searcher,
    configure_searcher,
    total_trials,
)
from rtrain.tune.search.variant_generator import grid_search

__all__ = [
    "BasicVariantGenerator",
    "ConcurrencyLimiter",
    "Searcher",
    "UNDEFINED_METRIC_MODE",
    "UNDEFINED_SEARCH_SPACE",
    "UNRESOLVED_SEARCH_SPACE",
    "configure_searcher",
    "grid_search",
    "total_trials",
]
