"""Passing a TorchTrainer's reports up to the Tune trial that runs it.

Ray Train V2's style: a trainable builds a TorchTrainer and calls fit().
The training run is a job of its own, on the sweep's cluster and in its
group; with this callback in its RunConfig, each report of its rank 0
becomes a tune.report of the trial, so schedulers and searchers see it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union


class TuneReportCallback:
    """Reports the training run's metrics to the Tune trial it runs in
    (Ray's ray.tune.integration.ray_train.TuneReportCallback).

    Args:
        metrics: None passes every metric on; a list passes those keys; a
            dict maps the name Tune sees to the training run's key.

    Outside a sweep it does nothing. Checkpoints stay with the training
    run: a trial that is paused, restarted or restored runs its trainable
    again, whose fit() (with the same RunConfig name) goes on from the
    run's latest checkpoint.
    """

    def __init__(self, metrics: Optional[Union[str, List[str], Dict[str, str]]] = None) -> None:
        if isinstance(metrics, str):
            metrics = [metrics]
        self._metrics = metrics

    def _rtrain_on_report(self, metrics: Dict[str, Any]) -> None:
        from rtrain.tune import _session

        if not _session._trial:
            return
        if self._metrics is None:
            out = dict(metrics)
        elif isinstance(self._metrics, dict):
            out = {name: metrics[key] for name, key in self._metrics.items() if key in metrics}
        else:
            out = {k: metrics[k] for k in self._metrics if k in metrics}
        # The trial counts its own iterations.
        out.pop("training_iteration", None)
        _session.report(out)


__all__ = ["TuneReportCallback"]
