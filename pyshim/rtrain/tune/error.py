"""Tune's error type (Ray's ray.tune.error)."""


class TuneError(Exception):
    """A tuning run cannot go on as configured; the message says why."""


__all__ = ["TuneError"]
