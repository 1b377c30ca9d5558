"""Names of the result fields that Tune's parts agree on (Ray's ray.tune.result).

The trial runner fills them into every result it hands to searchers and
schedulers; a scheduler's ``time_attr`` usually names one of them.
"""

# The metric a searcher or scheduler uses when it is given a mode but no
# metric: what a train function reports without naming it.
DEFAULT_METRIC = "_metric"

# 1 for a trial's first result, counting up by one per result.
TRAINING_ITERATION = "training_iteration"

# Seconds since the trial (first) started, summed over its restarts.
TIME_TOTAL_S = "time_total_s"

# True in the last result of a trial that ended by itself.
DONE = "done"

__all__ = ["DEFAULT_METRIC", "DONE", "TIME_TOTAL_S", "TRAINING_ITERATION"]
