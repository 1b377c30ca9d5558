"""The errors a driver sees, with Ray Train's names."""

from __future__ import annotations

from typing import Dict, List, Optional


class TrainingFailedError(RuntimeError):
    """A run failed: a worker failed and the failure budget was spent.

    The message starts with the root cause rtrain found: the first rank that
    failed, how it exited, and the end of its traceback. worker_failures maps
    each rank that failed by itself to its failure (Ray Train V2's
    WorkerGroupError); ranks rtrain stopped because of it are not in it.
    """

    def __init__(self, message: str, worker_failures: Optional[Dict[int, Exception]] = None) -> None:
        super().__init__(message)
        self.worker_failures: Dict[int, Exception] = dict(worker_failures or {})


class WorkerFailure(RuntimeError):
    """One rank's failure, as TrainingFailedError.worker_failures holds it.

    The message is the failure's one line (the exception line of the rank's
    traceback, or how it exited); traceback is the end of its stderr.
    """

    def __init__(self, rank: int, message: str, traceback: Optional[List[str]] = None) -> None:
        super().__init__(message)
        self.rank = rank
        self.traceback: List[str] = list(traceback or [])
