"""Trial schedulers: which trials go on, pause or stop (Ray's ray.tune.schedulers).

trial_scheduler.py holds the contract with the trial runner: the callbacks,
the decisions (TrialScheduler.CONTINUE, PAUSE, STOP) and the TrialRunnerView
schedulers call back through. HyperBand's pauses are described in
hyperband.py, PBT's exploits in pbt.py.
"""

from rtrain.tune.schedulers.async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from rtrain.tune.schedulers.hyperband import HyperBandScheduler
from rtrain.tune.schedulers.median_stopping_rule import MedianStoppingRule
from rtrain.tune.schedulers.pbt import PopulationBasedTraining
from rtrain.tune.schedulers.trial_scheduler import FIFOScheduler, TrialRunnerView, TrialScheduler, configure_scheduler

__all__ = [
    "ASHAScheduler",
    "AsyncHyperBandScheduler",
    "FIFOScheduler",
    "HyperBandScheduler",
    "MedianStoppingRule",
    "PopulationBasedTraining",
    "TrialRunnerView",
    "TrialScheduler",
    "configure_scheduler",
]
