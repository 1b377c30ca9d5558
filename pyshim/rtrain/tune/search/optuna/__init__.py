"""OptunaSearch: Optuna's samplers as a Tune searcher.

Importing this package imports optuna; nothing else in rtrain.tune does.
"""

from rtrain.tune.search.optuna.optuna_search import OptunaSearch

__all__ = ["OptunaSearch"]
