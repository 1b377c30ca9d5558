"""AsyncHyperBandScheduler: Ray's rungs, cutoffs and brackets."""

import unittest

import numpy as np

from _runner import FakeRunner, run_sequentially
from rtrain.tune.experiment import Trial
from rtrain.tune.schedulers import ASHAScheduler, AsyncHyperBandScheduler, TrialScheduler


def rungs(sched):
    return [[m for m, _ in b._rungs] for b in sched._brackets]


class RungsTest(unittest.TestCase):
    def test_milestones(self):
        # Bracket s has rungs at grace * rf**(k + s) for
        # k < int(log(max_t / grace) / log(rf) - s + 1): with (1, 100, 4),
        # log4(100) = 3.32, so 4 rungs for s=0, 3 for s=1, 2 for s=2.
        cases = {
            "defaults": (dict(), [[64, 16, 4, 1]]),
            "three brackets": (dict(brackets=3), [[64, 16, 4, 1], [64, 16, 4], [64, 16]]),
            "grace 10, rf 3, max 810": (dict(grace_period=10, reduction_factor=3, max_t=810), [[810, 270, 90, 30, 10]]),
            "rf 2, max 10": (dict(reduction_factor=2, max_t=10), [[8, 4, 2, 1]]),
        }
        for name, (kw, want) in cases.items():
            with self.subTest(name):
                self.assertEqual(rungs(AsyncHyperBandScheduler(metric="m", mode="max", **kw)), want)

    def test_alias_and_defaults(self):
        self.assertIs(ASHAScheduler, AsyncHyperBandScheduler)
        s = ASHAScheduler()
        self.assertEqual((s._time_attr, s._max_t, s._reduction_factor, len(s._brackets)), ("training_iteration", 100, 4, 1))

    def test_bracket_choice_is_softmax_of_rung_counts(self):
        # Brackets with 4, 3 and 2 rungs are chosen with probability
        # e**4 : e**3 : e**2, i.e. 0.665, 0.245, 0.090.
        np.random.seed(0)
        s = AsyncHyperBandScheduler(metric="m", mode="max", brackets=3)
        runner = FakeRunner(s)
        for i in range(3000):
            runner.add(str(i))
        counts = np.array([sum(b is br for b in s._trial_info.values()) for br in s._brackets]) / 3000
        p = np.exp([4, 3, 2]) / np.exp([4, 3, 2]).sum()
        np.testing.assert_allclose(counts, p, atol=0.03)


class CutoffTest(unittest.TestCase):
    # Six trials run one after the other, each to iteration 20 unless
    # stopped; trial i reports acc = base_i + iteration. The rungs are at 1,
    # 4 and 16 (64 is never reached). At each rung a new score is compared
    # with the 75th percentile (1 - 1/4) of the scores recorded there before
    # it, numpy's linear interpolation:
    #   T0 (50): first everywhere, no cutoff; records 51, 54, 66.
    #   T1 (90): cutoffs 51, 54, 66 (one score each); 91, 94, 106 pass.
    #   T2 (10): rung 1 holds [51, 91]: 51 + 0.75 * 40 = 81 > 11: STOP at 1.
    #   T3 (70): rung 1 [11, 51, 91]: position 1.5, 51 + 0.5 * 40 = 71; 71 is
    #            not below 71: on. Rung 4 [54, 94]: 84 > 74: STOP at 4.
    #   T4 (30): rung 1 [11, 51, 71, 91]: position 2.25, 71 + 0.25 * 20 = 76
    #            > 31: STOP at 1.
    #   T5 (95): rung 1 [11, 31, 51, 71, 91]: position 3, 71 <= 96; rung 4
    #            [54, 74, 94]: 74 + 0.5 * 20 = 84 <= 99; rung 16 [66, 106]:
    #            66 + 0.75 * 40 = 96 <= 111: runs to the end.
    BASES = {"T0": 50, "T1": 90, "T2": 10, "T3": 70, "T4": 30, "T5": 95}

    def run_curves(self, mode, sign):
        sched = AsyncHyperBandScheduler(metric="acc", mode=mode)
        runner = FakeRunner(sched)
        curves = {tid: (lambda it, b=b: sign * (b + it)) for tid, b in self.BASES.items()}
        return run_sequentially(runner, curves, "acc", 20), sched

    def test_max(self):
        last, sched = self.run_curves("max", 1)
        self.assertEqual(last, {"T0": 20, "T1": 20, "T2": 1, "T3": 4, "T4": 1, "T5": 20})
        self.assertEqual(sched._num_stopped, 3)
        recorded = {m: r for m, r in sched._brackets[0]._rungs}
        self.assertEqual(recorded[1], {"T0": 51, "T1": 91, "T2": 11, "T3": 71, "T4": 31, "T5": 96})
        self.assertEqual(recorded[4], {"T0": 54, "T1": 94, "T3": 74, "T5": 99})
        self.assertEqual(recorded[16], {"T0": 66, "T1": 106, "T5": 111})

    def test_min_is_the_mirror(self):
        last, _ = self.run_curves("min", -1)
        self.assertEqual(last, {"T0": 20, "T1": 20, "T2": 1, "T3": 4, "T4": 1, "T5": 20})

    def test_max_t(self):
        for stop_last, want in ((True, 10), (False, 20)):
            with self.subTest(stop_last_trials=stop_last):
                sched = AsyncHyperBandScheduler(metric="acc", mode="max", max_t=10, stop_last_trials=stop_last)
                last = run_sequentially(FakeRunner(sched), {"a": lambda it: it}, "acc", 20)
                self.assertEqual(last, {"a": want})

    def test_grace_period(self):
        # Rungs at 5 and 20 only: nothing is judged before iteration 5.
        sched = AsyncHyperBandScheduler(metric="acc", mode="max", grace_period=5, max_t=20)
        self.assertEqual(rungs(sched), [[20, 5]])
        last = run_sequentially(FakeRunner(sched), {"good": lambda it: 100, "bad": lambda it: 0}, "acc", 19)
        self.assertEqual(last, {"good": 19, "bad": 5})

    def test_results_without_the_metric_are_ignored(self):
        sched = AsyncHyperBandScheduler(metric="acc", mode="max")
        runner = FakeRunner(sched)
        t = runner.add("a")
        runner.fill(1)
        self.assertEqual(runner.report(t, {"training_iteration": 1}), TrialScheduler.CONTINUE)
        self.assertEqual(runner.report(t, {"acc": 1}), TrialScheduler.CONTINUE)
        self.assertEqual(sched._brackets[0]._rungs[-1][1], {})


class MetricModeTest(unittest.TestCase):
    def test_missing(self):
        sched = AsyncHyperBandScheduler()
        with self.assertRaises(ValueError) as cm:
            sched.on_trial_add(FakeRunner(sched), Trial("a"))
        self.assertEqual(
            str(cm.exception),
            "AsyncHyperBandScheduler has been instantiated without a valid `metric` (None) or `mode` (None) "
            "parameter. Either pass these parameters when instantiating the scheduler, or pass them as "
            "parameters to `tune.TuneConfig()`",
        )


if __name__ == "__main__":
    unittest.main()
