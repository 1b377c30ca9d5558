"""The scheduler interface: decisions, FIFO, and metric/mode set-up errors."""

import os
import subprocess
import sys
import tempfile
import unittest

from _runner import FakeRunner
from rtrain import tune
from rtrain.tune.experiment import RestoreFrom, Trial
from rtrain.tune.schedulers import (
    AsyncHyperBandScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
    configure_scheduler,
)


def all_schedulers(**kw):
    return {
        "ASHA": AsyncHyperBandScheduler(**kw),
        "HyperBand": HyperBandScheduler(**kw),
        "MedianStoppingRule": MedianStoppingRule(**kw),
        "PBT": PopulationBasedTraining(hyperparam_mutations={"a": [1, 2]}, **kw),
    }


class InterfaceTest(unittest.TestCase):
    def test_decisions_are_rays_strings(self):
        self.assertEqual((TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP), ("CONTINUE", "PAUSE", "STOP"))
        self.assertEqual(
            (Trial.PENDING, Trial.RUNNING, Trial.PAUSED, Trial.TERMINATED, Trial.ERROR),
            ("PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"),
        )

    def test_fifo(self):
        sched = FIFOScheduler()
        runner = FakeRunner(sched)
        a, b, c = (runner.add(x) for x in "abc")
        self.assertIs(sched.choose_trial_to_run(runner), a)
        a.status, b.status = Trial.PAUSED, Trial.RUNNING
        self.assertIs(sched.choose_trial_to_run(runner), c, "PENDING before PAUSED")
        c.status = Trial.TERMINATED
        self.assertIs(sched.choose_trial_to_run(runner), a)
        self.assertEqual(runner.report(b, {"x": 1}), TrialScheduler.CONTINUE)

    def test_only_pbt_holds_checkpoints(self):
        for name, sched in all_schedulers(metric="m", mode="max").items():
            with self.subTest(name):
                self.assertEqual(sched.checkpoints_in_use(), set())
        self.assertEqual(FIFOScheduler().checkpoints_in_use(), set())

    def test_take_restore_from(self):
        t = Trial("a", config={"lr": 1}, checkpoint="mine", experiment_tag="0_lr=1")
        self.assertIsNone(t.take_restore_from())
        t.restore_from = RestoreFrom(checkpoint="theirs", config={"lr": 2}, source_trial_id="b", experiment_tag="0@perturbed")
        req = t.take_restore_from()
        self.assertEqual((t.config, t.checkpoint, t.experiment_tag, t.restore_from), ({"lr": 2}, "theirs", "0@perturbed", None))
        self.assertEqual(req.source_trial_id, "b")
        req.config["lr"] = 3
        self.assertEqual(t.config, {"lr": 2}, "the trial has its own copy")

    def test_trials_hash_by_identity(self):
        a, b = Trial("x"), Trial("x")
        self.assertNotEqual(a, b)
        self.assertEqual(len({a, b}), 2)

    def test_save_restore(self):
        sched = AsyncHyperBandScheduler(metric="m", mode="max")
        runner = FakeRunner(sched)
        t = runner.add("a")
        runner.fill(1)
        runner.report(t, {"training_iteration": 1, "m": 3})
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "s.pkl")
            sched.save(path)
            other = AsyncHyperBandScheduler()
            other.restore(path)
        self.assertEqual(other._brackets[0]._rungs[-1][1], {"a": 3})
        self.assertEqual((other.metric, other._mode), ("m", "max"))


class ConfigureTest(unittest.TestCase):
    def test_metric_and_mode_twice(self):
        msg = (
            "You passed a `metric` or `mode` argument to `Tuner(...)`, but the scheduler you are using was already "
            "instantiated with their own `metric` and `mode` parameters. Either remove the arguments from your "
            "scheduler or from `Tuner(...)` args."
        )
        for name, sched in all_schedulers(metric="m", mode="max").items():
            with self.subTest(name):
                with self.assertRaises(ValueError) as cm:
                    configure_scheduler(sched, "m", "max")
                self.assertEqual(str(cm.exception), msg)
        for name, sched in all_schedulers(mode="max").items():
            with self.subTest(name + ", mode on both"):
                with self.assertRaises(ValueError):
                    configure_scheduler(sched, None, "min")

    def test_from_tune_config(self):
        for name, sched in all_schedulers().items():
            with self.subTest(name):
                configure_scheduler(sched, "acc", "max")
                self.assertEqual(sched.metric, "acc")
                FakeRunner(sched).add("a", {"a": 1})

    def test_split_between_them(self):
        for name, sched in all_schedulers(metric="acc").items():
            with self.subTest(name):
                configure_scheduler(sched, None, "min")
                self.assertEqual((sched.metric, sched._mode), ("acc", "min"))

    def test_mode_alone(self):
        for name, sched in all_schedulers().items():
            with self.subTest(name):
                configure_scheduler(sched, None, "max")
                self.assertEqual(sched.metric, "_metric")

    def test_missing(self):
        for name, sched in all_schedulers().items():
            with self.subTest(name):
                configure_scheduler(sched, None, None)
                with self.assertRaisesRegex(
                    ValueError,
                    rf"^{sched.__class__.__name__} has been instantiated without a valid `metric` \(None\) or `mode` "
                    r"\(None\) parameter\. Either pass these parameters when instantiating the scheduler, or pass "
                    r"them as parameters to `tune.TuneConfig\(\)`$",
                ):
                    FakeRunner(sched).add("a", {"a": 1})
        # FIFO needs neither.
        configure_scheduler(FIFOScheduler(), None, None)
        FakeRunner(FIFOScheduler()).add("a")

    def test_bad_mode(self):
        with self.assertRaisesRegex(ValueError, r"The `mode` parameter passed to `Tuner\(\.\.\.\)` must be one of \['min', 'max'\]"):
            configure_scheduler(FIFOScheduler(), "m", "best")
        with self.assertRaisesRegex(ValueError, "`mode` must be 'min' or 'max'"):
            AsyncHyperBandScheduler(mode="best")

    def test_lazy_package(self):
        self.assertIs(tune.schedulers.ASHAScheduler, AsyncHyperBandScheduler)
        self.assertIs(tune.Trial, Trial)

    def test_imports_stay_light(self):
        # import rtrain.tune loads no numpy; searchers and schedulers load
        # no optuna; `import rtrain` reaches rtrain.tune as Ray's ray.tune.
        code = (
            "import sys, rtrain.tune as t\n"
            "assert 'numpy' not in sys.modules, 'numpy'\n"
            "t.uniform(0, 1)\n"
            "import rtrain.tune.search, rtrain.tune.schedulers\n"
            "assert 'optuna' not in sys.modules, 'optuna'\n"
            "import rtrain\n"
            "assert rtrain.tune.choice is t.choice\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
        self.assertEqual(proc.returncode, 0, proc.stderr)


if __name__ == "__main__":
    unittest.main()
