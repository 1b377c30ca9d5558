"""MedianStoppingRule: Ray's rule, to the double-counted last result."""

import unittest

from _runner import FakeRunner, run_sequentially
from rtrain.tune.experiment import Trial
from rtrain.tune.schedulers import MedianStoppingRule, TrialScheduler

# Five trials run one after the other, five iterations each unless stopped,
# with grace_period=0 and min_samples_required=2. At iteration t a trial is
# compared with the trials whose last result is at t or later: the median of
# their running means (of their results up to t; a completed trial's last
# result counts twice, recorded again at completion) against the trial's own
# best so far; strictly worse stops it.
#   T0, T1: fewer than 2 others at every t: they run on.
#   T2 at 1: means T0 1, T1 2 -> median 1.5 > best 0: STOP at 1.
#   T3 at 1: T0 1, T1 2, T2 0 (its 0 twice) -> median 1 <= 1.4: on.
#      at 2: T0 1.5, T1 2.5 (T2 ended at 1) -> median 2 > 1.6: STOP at 2.
#   T4 at 1: [0, 1, 1.4, 2] -> 1.2; at 2: T0 1.5, T1 2.5, T3 (1.4+1.6+1.6)/3
#      -> 1.533; at 3: 2.5; at 4: median 3.0 against best 3: not worse, on;
#      at 5: T0 (1+2+3+4+5+5)/6 = 3.333, T1 (2+3+4+5+6+6)/6 = 4.333 ->
#      median 3.833 > 3.6: STOP at 5 (it would pass without the double
#      count: 3.5).
CURVES = {
    "T0": [1, 2, 3, 4, 5],
    "T1": [2, 3, 4, 5, 6],
    "T2": [0, 0, 0, 0, 0],
    "T3": [1.4, 1.6, 1.7, 10, 10],
    "T4": [3, 3, 3, 3, 3.6],
}


def make(mode="max", **kw):
    kw = {"time_attr": "training_iteration", "grace_period": 0, "min_samples_required": 2, **kw}
    return MedianStoppingRule(metric="m", mode=mode, **kw)


class MedianStoppingRuleTest(unittest.TestCase):
    def run_curves(self, sched, sign=1):
        runner = FakeRunner(sched)
        curves = {tid: (lambda it, c=c: sign * c[it - 1]) for tid, c in CURVES.items()}
        return run_sequentially(runner, curves, "m", 5), runner

    def test_stops(self):
        for mode, sign in (("max", 1), ("min", -1)):
            with self.subTest(mode):
                last, runner = self.run_curves(make(mode), sign)
                self.assertEqual(last, {"T0": 5, "T1": 5, "T2": 1, "T3": 2, "T4": 5})
                self.assertEqual([e for e in runner.log if e[0] == "stop"], [("stop", "T2", 1), ("stop", "T3", 2), ("stop", "T4", 5)])

    def test_grace_period(self):
        # Not judged before iteration 2, and the means start there: T2 at 2
        # against T0 2, T1 3 -> 2.5 > 0 stops; T3 at 2 against T0 2, T1 3, T2
        # 0 -> 2 > 1.6 stops; T4 passes at 2 ([0, 1.6, 2, 3] -> 1.8) and 3
        # (T0 (2+3)/2, T1 3.5 -> 3, not worse than 3) but stops at 4: T0
        # (2+3+4)/3 = 3, T1 4 -> 3.5 > 3.
        last, _ = self.run_curves(make(grace_period=2))
        self.assertEqual(last, {"T0": 5, "T1": 5, "T2": 2, "T3": 2, "T4": 4})

    def test_soft_stop_pauses_then_lets_run(self):
        sched = make(hard_stop=False)
        runner = FakeRunner(sched)
        for tid in ("T0", "T1"):
            t = runner.add(tid)
            runner.fill(1)
            for it, v in enumerate(CURVES[tid], 1):
                runner.report(t, {"training_iteration": it, "m": v})
            runner.complete(t)
        t = runner.add("T2")
        runner.fill(1)
        self.assertEqual(runner.report(t, {"training_iteration": 1, "m": 0}), TrialScheduler.PAUSE)
        self.assertEqual(runner.fill(1), [t])
        for it in range(2, 6):
            self.assertEqual(runner.report(t, {"training_iteration": it, "m": 0}), TrialScheduler.CONTINUE)

    def test_yields_to_waiting_trials(self):
        # Never enough samples (5): a trial pauses when another waits, at
        # most once per min_time_slice (2) of its own time.
        sched = make(min_samples_required=5, min_time_slice=2)
        runner = FakeRunner(sched)
        a, b = runner.add("a"), runner.add("b")
        runner.fill(1)
        got = []
        for it in range(1, 6):
            got.append(runner.report(a, {"training_iteration": it, "m": 1}))
            if a.status == Trial.PAUSED:
                runner.start(a)
        P, C = TrialScheduler.PAUSE, TrialScheduler.CONTINUE
        self.assertEqual(got, [P, C, C, P, C])
        b.status = Trial.TERMINATED
        self.assertEqual(runner.report(a, {"training_iteration": 9, "m": 1}), C, "nobody waits: no pause")

    def test_missing_mode(self):
        sched = MedianStoppingRule(metric="m")
        with self.assertRaisesRegex(ValueError, r"MedianStoppingRule has been instantiated without a valid `metric` \(m\) or `mode` \(None\)"):
            sched.on_trial_add(FakeRunner(sched), Trial("a"))


if __name__ == "__main__":
    unittest.main()
