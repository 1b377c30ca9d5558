"""The worker's place in the job, read from the torchrun environment rtrain sets."""

import os
import sys
from typing import Any, Dict, Optional

from rtrain import _env


def _tune_trial() -> Dict[str, Any]:
    # Only a trial's process has imported the Tune session.
    session = sys.modules.get("rtrain.tune._session")
    return getattr(session, "_trial", {}) if session is not None else {}


def _int(name: str, default: int = 0) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return int(value)


class TrainContext:
    """What a worker knows about itself, as Ray Train's TrainContext."""

    def get_world_rank(self) -> int:
        return _int("RANK")

    def get_local_rank(self) -> int:
        return _int("LOCAL_RANK")

    def get_node_rank(self) -> int:
        return _int("GROUP_RANK", _int("NODE_RANK"))

    def get_world_size(self) -> int:
        return _int("WORLD_SIZE", 1)

    def get_local_world_size(self) -> int:
        return _int("LOCAL_WORLD_SIZE", 1)

    def get_trial_name(self) -> str:
        return _tune_trial().get("trial_name") or os.environ.get(_env.RUN_NAME, "")

    def get_experiment_name(self) -> str:
        return self.get_trial_name()

    def get_trial_id(self) -> Optional[str]:
        """The Tune trial this process runs in; None outside a sweep."""
        return _tune_trial().get("trial_id")

    def get_trial_dir(self) -> Optional[str]:
        return _tune_trial().get("trial_dir")

    def get_restart_count(self) -> int:
        return _int("TORCHELASTIC_RESTART_COUNT")

    def __repr__(self) -> str:
        return (
            f"TrainContext(rank={self.get_world_rank()}, local_rank={self.get_local_rank()}, "
            f"node_rank={self.get_node_rank()}, world_size={self.get_world_size()})"
        )


_CONTEXT = TrainContext()


def get_context() -> TrainContext:
    """The TrainContext of this worker."""
    return _CONTEXT
