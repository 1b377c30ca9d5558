"""The Trial the searchers and schedulers see (Ray's ray.tune.experiment)."""

from rtrain.tune.experiment.trial import RestoreFrom, Trial

__all__ = ["RestoreFrom", "Trial"]
