"""ResultGrid: the results of a sweep's trials (Ray Tune's ResultGrid)."""

from __future__ import annotations

import math
from typing import Any, Dict, Iterator, List, Optional

from rtrain._result import Result


class ResultGrid:
    """The Results of a sweep's trials, in the order they were created.

    Each Result has metrics (the trial's last result, with
    training_iteration, time_total_s, trial_id and done filled in),
    config, checkpoint (its latest), error (None unless it failed), path
    and metrics_dataframe.
    """

    def __init__(self, runner: Any, experiment_path: str, metric: Optional[str], mode: Optional[str]) -> None:
        self._metric, self._mode = metric, mode
        self.experiment_path = experiment_path
        self._results: List[Result] = []
        for trial in runner.trials:
            r = runner.results.get(trial.trial_id) or Result(metrics=None, checkpoint=None)
            if trial.last_result:
                r.metrics = dict(trial.last_result)
            r.config = trial.config  # type: ignore[attr-defined]
            r.error = runner.errors.get(trial.trial_id)
            if not r.path:
                r.path = experiment_path.rstrip("/") + "/" + runner.trial_name(trial)
            self._results.append(r)

    def __len__(self) -> int:
        return len(self._results)

    def __getitem__(self, i: int) -> Result:
        return self._results[i]

    def __iter__(self) -> Iterator[Result]:
        return iter(self._results)

    @property
    def errors(self) -> List[BaseException]:
        """The exceptions of the trials that failed."""
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    @property
    def num_terminated(self) -> int:
        """The trials that did not fail."""
        return len(self._results) - self.num_errors

    def get_best_result(
        self,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        scope: str = "last",
        filter_nan_and_inf: bool = True,
    ) -> Result:
        """The trial whose metric was best (Ray's rules).

        scope: "last" compares each trial's last value, "all" its best
        value ever, "last-5-avg" / "last-10-avg" the mean of its last 5 or 10.
        """
        metric = metric or self._metric
        mode = mode or self._mode
        if not metric or not mode:
            raise ValueError(
                "No metric is provided. Either pass in a `metric` arg to "
                "`get_best_result` or specify a metric in the `TuneConfig` of your `Tuner`."
                if not metric else
                "No mode is provided. Either pass in a `mode` arg to "
                "`get_best_result` or specify a mode in the `TuneConfig` of your `Tuner`."
            )
        if mode not in ("min", "max"):
            raise ValueError(f"ResultGrid.get_best_result: mode must be 'min' or 'max', got {mode!r}")
        if scope not in ("last", "all", "last-5-avg", "last-10-avg"):
            raise ValueError(f"ResultGrid.get_best_result: scope {scope!r}: want last, all, last-5-avg or last-10-avg")
        best, best_value = None, None
        for r in self._results:
            value = _score(r, metric, mode, scope)
            if value is None or (filter_nan_and_inf and not math.isfinite(value)):
                continue
            if best_value is None or (value > best_value if mode == "max" else value < best_value):
                best, best_value = r, value
        if best is None:
            raise RuntimeError(
                f"No best trial found for the given metric: {metric}. This means that no trial has reported this metric, "
                "or all values reported for this metric are NaN. To not ignore NaN values, you can set the "
                "`filter_nan_and_inf` arg to False."
            )
        return best

    def get_dataframe(self, filter_metric: Optional[str] = None, filter_mode: Optional[str] = None) -> Any:
        """One row a trial: its last result, config values as config/<key>.
        With filter_metric and filter_mode, each trial's row is the result
        where that metric was best instead."""
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "ResultGrid.get_dataframe needs pandas: apt install python3-pandas (in a venv: pip install pandas)"
            ) from None

        rows: List[Dict[str, Any]] = []
        for r in self._results:
            row: Dict[str, Any] = {}
            if filter_metric and filter_mode and r._history:
                scored = [h for h in r._history if isinstance(h.get(filter_metric), (int, float))]
                if scored:
                    pick = max if filter_mode == "max" else min
                    row.update(pick(scored, key=lambda h: h[filter_metric]))
            if not row:
                row.update({k: v for k, v in (r.metrics or {}).items() if k != "config"})
            for k, v in _flatten(getattr(r, "config", {}) or {}).items():
                row["config/" + k] = v
            row["logdir"] = r.path
            rows.append(row)
        return pandas.DataFrame(rows)

    def __repr__(self) -> str:
        return f"ResultGrid<{len(self)} trials, {self.num_errors} errors>"


def _score(r: Result, metric: str, mode: str, scope: str) -> Optional[float]:
    values = [h[metric] for h in r._history if isinstance(h.get(metric), (int, float))]
    last = (r.metrics or {}).get(metric)
    if not values and isinstance(last, (int, float)):
        values = [last]
    if not values:
        return None
    if scope == "last":
        return float(values[-1])
    if scope == "all":
        return float(max(values) if mode == "max" else min(values))
    n = 5 if scope == "last-5-avg" else 10
    tail = values[-n:]
    return float(sum(tail) / len(tail))


def _flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out
