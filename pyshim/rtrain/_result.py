"""Result: what a finished run leaves, with Ray Train's names."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

from rtrain._session import Checkpoint


class Result:
    """A finished run (Ray Train's Result).

    Attributes:
        metrics: rank 0's last reported metrics; None when it never reported.
        checkpoint: the latest committed checkpoint, the one a resume starts
            from; None when there is none.
        error: the exception the run failed with, None when it succeeded.
        path: where the run is stored: <storage_path>/<name>.
        best_checkpoints: the run's kept checkpoints with the metrics of the
            report that made each, (Checkpoint, metrics) pairs, oldest first.
        return_value: what rank 0's train function returned.
        name: the run's name; job_id: its id for `rtrain logs` and `rtrain stop`.
    """

    def __init__(
        self,
        metrics: Optional[Dict[str, Any]],
        checkpoint: Optional[Checkpoint],
        error: Optional[BaseException] = None,
        path: str = "",
        best_checkpoints: Optional[List[Tuple[Checkpoint, Dict[str, Any]]]] = None,
        history: Optional[List[Dict[str, Any]]] = None,
        name: str = "",
        job_id: str = "",
        return_value: Any = None,
    ) -> None:
        self.metrics = metrics
        self.checkpoint = checkpoint
        self.error = error
        self.path = path
        self.best_checkpoints = list(best_checkpoints or [])
        self.name = name
        self.job_id = job_id
        self.return_value = return_value
        self._history = list(history or [])

    @property
    def metrics_dataframe(self) -> Any:
        """Every report's metrics (rank 0's), one row each, as a pandas DataFrame."""
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "Result.metrics_dataframe needs pandas: apt install python3-pandas (in a venv: pip install pandas)"
            ) from None

        return pandas.DataFrame(self._history)

    @property
    def filesystem(self) -> None:
        """None: rtrain reads storage itself (Ray's pyarrow filesystem)."""
        return None

    def get_best_checkpoint(self, metric: str, mode: str) -> Optional[Checkpoint]:
        """The kept checkpoint whose report had the best value of metric.

        mode is "max" or "min". Raises RuntimeError when the run kept no
        checkpoint or none of them has the metric, as Ray does.
        """
        if not self.best_checkpoints:
            raise RuntimeError("No checkpoint exists in the trial directory!")
        if mode not in ("max", "min"):
            raise ValueError(f'Unsupported mode: {mode}. Please choose from ["min", "max"]!')
        scored = [(c, m[metric]) for c, m in self.best_checkpoints if isinstance(m.get(metric), (int, float))]
        if not scored:
            raise RuntimeError(f"Invalid metric name {metric}! You may choose from the following metrics: {sorted(self.metrics or {})}.")
        pick = max if mode == "max" else min
        return pick(scored, key=lambda cv: cv[1])[0]

    @classmethod
    def from_path(cls, path: "str | os.PathLike[str]") -> "Result":
        """The Result of the finished run stored in the local directory path
        (<storage_path>/<name>), from the result.json rtrain wrote there."""
        path = os.path.abspath(os.fspath(path))
        record = os.path.join(path, "result.json")
        try:
            with open(record, encoding="utf-8") as f:
                r = json.load(f)
        except FileNotFoundError:
            raise ValueError(f"rtrain.Result.from_path: {record} does not exist; is {path} a finished run's directory?") from None

        def ckpt(c: Optional[Dict[str, Any]]) -> Optional[Checkpoint]:
            if not c:
                return None
            return Checkpoint(os.path.join(path, c["path"]), index=c.get("index"))

        best = [(ckpt(c), c.get("metrics") or {}) for c in r.get("best_checkpoints") or []]
        latest = r.get("latest_checkpoint")
        if not best and latest:
            best = [(ckpt(latest), latest.get("metrics") or {})]
        error = RuntimeError(r["error"]) if r.get("error") else None
        return cls(
            metrics=r.get("metrics"),
            checkpoint=ckpt(latest),
            error=error,
            path=path,
            best_checkpoints=[(c, m) for c, m in best if c is not None],
            history=r.get("history"),
            name=r.get("name", ""),
        )

    def __repr__(self) -> str:
        parts = [f"metrics={self.metrics!r}", f"path={self.path!r}", f"checkpoint={self.checkpoint!r}"]
        if self.error is not None:
            parts.append(f"error={self.error!r}")
        return f"Result({', '.join(parts)})"
