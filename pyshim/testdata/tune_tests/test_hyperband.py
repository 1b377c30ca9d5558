"""HyperBandScheduler: bands, brackets, milestones, and pausing at them."""

import unittest

from _runner import FakeRunner
from rtrain.tune.experiment import Trial
from rtrain.tune.schedulers import HyperBandScheduler, TrialScheduler


def hb(**kw):
    return HyperBandScheduler(metric="m", mode="max", **kw)


def shape(sched):
    """Per band, per bracket: (max trials, first milestone, trials)."""
    return [[(b._n0, b._r0, len(b._all_trials)) for b in band] for band in sched._hyperbands]


class BandsTest(unittest.TestCase):
    def test_brackets(self):
        # s_max = round(log(max_t) / log(eta)); bracket s takes
        # ceil((s_max + 1) / (s + 1) * eta**s) trials and runs them to
        # int(max_t * eta**-s) first.
        cases = {
            "81, 3": (dict(max_t=81, reduction_factor=3), [(5, 81), (8, 27), (15, 9), (34, 3), (81, 1)]),
            "9, 3": (dict(max_t=9, reduction_factor=3), [(3, 9), (5, 3), (9, 1)]),
            "16, 2": (dict(max_t=16, reduction_factor=2), [(5, 16), (5, 8), (7, 4), (10, 2), (16, 1)]),
        }
        for name, (kw, want) in cases.items():
            with self.subTest(name):
                s = hb(**kw)
                self.assertEqual([(s._get_n0(i), s._get_r0(i)) for i in range(s._s_max_1)], want)

    def test_trials_fill_brackets_then_bands(self):
        s = hb(max_t=9)
        runner = FakeRunner(s)
        for i in range(17):
            runner.add(str(i))
        self.assertEqual(shape(s), [[(3, 9, 3), (5, 3, 5), (9, 1, 9)]])
        runner.add("17")
        self.assertEqual(shape(s), [[(3, 9, 3), (5, 3, 5), (9, 1, 9)], [(3, 9, 1)]])

    def test_default_band(self):
        s = hb()
        runner = FakeRunner(s)
        for i in range(144):
            runner.add(str(i))
        self.assertEqual(shape(s)[0], [(5, 81, 5), (8, 27, 8), (15, 9, 15), (34, 3, 34), (81, 1, 81)])
        self.assertEqual(shape(s)[1], [(5, 81, 1)])
        self.assertFalse(s.supports_buffered_results)


def simulate(runner, metric, capacity=8, on_result=None):
    """Runs the trials in lockstep: every RUNNING trial reports its next
    iteration, then free slots are filled from choose_trial_to_run. A
    resumed trial continues where it paused. Returns each trial's last
    iteration."""
    it = {t.trial_id: 0 for t in runner.trials}
    runner.fill(capacity)
    while True:
        running = [t for t in runner.trials if t.status == Trial.RUNNING]
        if not running:
            break
        for t in running:
            if t.status != Trial.RUNNING:  # stopped by another's halving
                continue
            it[t.trial_id] += 1
            if on_result and on_result(t, it[t.trial_id]):
                continue
            runner.report(t, {"training_iteration": it[t.trial_id], "m": metric(t.trial_id, it[t.trial_id])})
            if it[t.trial_id] == 9 and t.status == Trial.RUNNING:
                runner.complete(t)
        runner.fill(capacity)
    return it


class HalvingTest(unittest.TestCase):
    # max_t=9, eta=3: bracket 0 holds T0-T2 and runs them to 9; bracket 1
    # holds T3-T7 (5 trials) with milestone 3 and one halving, which keeps
    # ceil(5 / 3) = 2 and moves the milestone to 9. Metric = base + iteration.
    BASES = {"T0": 0, "T1": 0, "T2": 0, "T3": 5, "T4": 1, "T5": 4, "T6": 2, "T7": 6}

    def setUp(self):
        self.sched = hb(max_t=9)
        self.runner = FakeRunner(self.sched)
        for tid in self.BASES:
            self.runner.add(tid)

    def test_pause_halve_resume(self):
        last = simulate(self.runner, lambda tid, it: self.BASES[tid] + it)
        # The best two of bracket 1 at 3 (T7: 9, T3: 8) run to 9; the
        # rest stop at 3. Bracket 0 runs to 9.
        self.assertEqual(last, {"T0": 9, "T1": 9, "T2": 9, "T3": 9, "T4": 3, "T5": 3, "T6": 3, "T7": 9})
        log = self.runner.log
        at3 = [e for e in log if e[2] == 3]
        # T3-T6 reach 3 first and pause; T7's result completes the rung:
        # the PAUSED losers are stopped through the runner, T7 (a winner)
        # gets CONTINUE, T3 (a winner) is let through to resume.
        self.assertEqual(
            at3,
            [
                ("paused", "T3", 3),
                ("paused", "T4", 3),
                ("paused", "T5", 3),
                ("paused", "T6", 3),
                # Worst first: T4 (4), T6 (5), T5 (7).
                ("stopped", "T4", 3),
                ("stopped", "T6", 3),
                ("stopped", "T5", 3),
            ],
        )
        # At 9 each bracket pauses all but its last, then stops them all.
        self.assertIn(("paused", "T0", 9), log)
        self.assertIn(("stopped", "T0", 9), log)
        self.assertIn(("stop", "T2", 9), log)
        self.assertTrue(all(t.status == Trial.TERMINATED for t in self.runner.trials))

    def test_paused_trials_wait_for_the_halving(self):
        seen = []

        def watch(t, it):
            # While bracket 1 waits at its milestone, choose_trial_to_run
            # offers none of its PAUSED trials.
            paused = [x for x in self.runner.trials if x.status == Trial.PAUSED and x.trial_id >= "T3"]
            if paused and it == 3 and t.trial_id == "T7":
                seen.append(self.sched.choose_trial_to_run(self.runner))
            return False

        simulate(self.runner, lambda tid, it: self.BASES[tid] + it, on_result=watch)
        self.assertEqual(seen, [None])
        b1 = self.sched._hyperbands[0][1]
        self.assertEqual((b1._n, b1.milestone), (2, 9))

    def test_an_error_completes_the_rung(self):
        # T7 fails instead of reporting 3, while T3-T6 wait there: its
        # removal halves the bracket among the four (keeping 2: T3, T5).
        def fail_t7(t, it):
            if t.trial_id == "T7" and it == 3:
                t.status = Trial.ERROR
                self.sched.on_trial_error(self.runner, t)
                return True
            return False

        last = simulate(self.runner, lambda tid, it: self.BASES[tid] + it, on_result=fail_t7)
        self.assertEqual({k: last[k] for k in ("T3", "T4", "T5", "T6")}, {"T3": 9, "T4": 3, "T5": 9, "T6": 3})

    def test_stop_last_trials_false(self):
        s = hb(max_t=9, stop_last_trials=False)
        runner = FakeRunner(s)
        t = runner.add("a")
        runner.fill(1)
        got = {runner.report(t, {"training_iteration": i, "m": i}) for i in range(1, 15)}
        self.assertEqual(got, {TrialScheduler.CONTINUE})

    def test_missing_metric(self):
        s = HyperBandScheduler(mode="max")
        self.assertTrue(s.set_search_properties(None, None))
        self.assertEqual(s.metric, "_metric")
        s = HyperBandScheduler()
        with self.assertRaisesRegex(ValueError, r"HyperBandScheduler has been instantiated without a valid `metric`"):
            s.on_trial_add(FakeRunner(s), Trial("a"))


if __name__ == "__main__":
    unittest.main()
