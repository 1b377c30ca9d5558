"""rtrain.tune: Ray Tune's API (ray.tune becomes rtrain.tune).

This package holds Tune's decision logic, which runs no processes: the
search-space functions (uniform, choice, grid_search, ...), the searchers in
rtrain.tune.search and the schedulers in rtrain.tune.schedulers, over the
Trial of rtrain.tune.experiment. The trial runner (Tuner.fit) drives them
through the interfaces documented in rtrain/tune/search/searcher.py and
rtrain/tune/schedulers/trial_scheduler.py.

Everything here loads on first use: ``import rtrain.tune`` imports neither
numpy nor optuna (rtrain.tune.search.optuna alone imports optuna).
"""

import importlib
from typing import Any

__all__ = [
    # Search space (rtrain.tune.search.sample, .variant_generator).
    "choice",
    "grid_search",
    "lograndint",
    "loguniform",
    "qlograndint",
    "qloguniform",
    "qrandint",
    "qrandn",
    "quniform",
    "randint",
    "randn",
    "sample_from",
    "uniform",
    # Subpackages.
    "experiment",
    "schedulers",
    "search",
    # Shared names.
    "Trial",
    "TuneError",
    # The sweep and its trials.
    "Checkpoint",
    "CheckpointConfig",
    "FailureConfig",
    "ResultGrid",
    "RunConfig",
    "TuneConfig",
    "TuneContext",
    "Tuner",
    "get_checkpoint",
    "get_context",
    "report",
    "with_parameters",
    "with_resources",
]

_LAZY = {
    "choice": "rtrain.tune.search.sample",
    "lograndint": "rtrain.tune.search.sample",
    "loguniform": "rtrain.tune.search.sample",
    "qlograndint": "rtrain.tune.search.sample",
    "qloguniform": "rtrain.tune.search.sample",
    "qrandint": "rtrain.tune.search.sample",
    "qrandn": "rtrain.tune.search.sample",
    "quniform": "rtrain.tune.search.sample",
    "randint": "rtrain.tune.search.sample",
    "randn": "rtrain.tune.search.sample",
    "sample_from": "rtrain.tune.search.sample",
    "uniform": "rtrain.tune.search.sample",
    "grid_search": "rtrain.tune.search.variant_generator",
    "Trial": "rtrain.tune.experiment.trial",
    "TuneError": "rtrain.tune.error",
    "Tuner": "rtrain.tune.tuner",
    "TuneConfig": "rtrain.tune.tuner",
    "ResultGrid": "rtrain.tune.result_grid",
    "TuneContext": "rtrain.tune._session",
    "get_checkpoint": "rtrain.tune._session",
    "get_context": "rtrain.tune._session",
    "report": "rtrain.tune._session",
    "with_parameters": "rtrain.tune._session",
    "with_resources": "rtrain.tune._session",
    # Ray keeps these in ray.tune too.
    "Checkpoint": "rtrain._session",
    "CheckpointConfig": "rtrain._config",
    "FailureConfig": "rtrain._config",
    "RunConfig": "rtrain._config",
}

_SUBPACKAGES = ("experiment", "integration", "schedulers", "search")


def __getattr__(name: str) -> Any:
    # Lazy, so that a worker importing rtrain.tune for one name does not
    # pay for numpy and every scheduler.
    if name in _SUBPACKAGES:
        return importlib.import_module(f"rtrain.tune.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rtrain.tune' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
