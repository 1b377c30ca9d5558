"""PopulationBasedTraining: exploits from checkpointed top trials only,
Ray's explore step, and the checkpoints an exploit needs kept."""

import json
import os
import random
import tempfile
import unittest
from unittest import mock

import numpy as np

from _runner import FakeRunner
from rtrain import tune
from rtrain.tune import TuneError
from rtrain.tune.experiment import Trial
from rtrain.tune.schedulers import PopulationBasedTraining, TrialScheduler
from rtrain.tune.schedulers.pbt import _explore
from rtrain.tune.search import BasicVariantGenerator, ConcurrencyLimiter
from rtrain.tune.search.optuna import OptunaSearch

MUTATIONS = {"lr": tune.uniform(0.001, 1), "bs": [16, 32, 64]}


def pbt(**kw):
    kw = {
        "time_attr": "training_iteration",
        "metric": "score",
        "mode": "max",
        "perturbation_interval": 2,
        "hyperparam_mutations": MUTATIONS,
        "quantile_fraction": 0.5,
        "resample_probability": 0.0,
        "log_config": False,
        **kw,
    }
    return PopulationBasedTraining(**kw)


class Population:
    """Four trials in lockstep; trial i scores i at every iteration (T3 is
    the best); T0-T2 commit a checkpoint at every iteration, T3 never."""

    def __init__(self, sched, checkpointing=("T0", "T1", "T2")):
        self.runner = FakeRunner(sched)
        self.sched = sched
        self.checkpointing = checkpointing
        for i in range(4):
            self.runner.add(f"T{i}", {"lr": 0.1 * (i + 1), "bs": 32})
        self.runner.fill(4)
        self.decisions = {}

    def round(self, it):
        for t in self.runner.trials:
            if t.status != Trial.RUNNING:
                continue
            ckpt = f"ckpt/{t.trial_id}/{it}" if t.trial_id in self.checkpointing else None
            score = int(t.trial_id[1])
            self.decisions[(t.trial_id, it)] = self.runner.report(t, {"training_iteration": it, "score": score}, ckpt)


class ExploitTest(unittest.TestCase):
    # quantile_fraction 0.5 of 4 scored trials: the bottom two (T0, T1)
    # exploit the top two (T2, T3). At iteration 2 each trial is scored as it
    # reports, so only T2 and T3 are recorded in the top quantile then (T2
    # with its checkpoint, T3 with none). At 4, T0 and T1 are in the bottom
    # and may only clone T2: T3 never checkpointed.
    def setUp(self):
        random.seed(0)
        np.random.seed(0)
        self.pop = Population(pbt())
        self.pop.round(1)
        with self.assertLogs("rtrain.tune.schedulers.pbt", "INFO") as logs:
            self.pop.round(2)
        self.round2_logs = "\n".join(logs.output)
        self.pop.round(3)
        self.pop.round(4)

    def test_bottom_exploits_top_with_a_checkpoint(self):
        r = self.pop.runner
        for tid in ("T0", "T1"):
            req = r.trial(tid).restore_from
            self.assertIsNotNone(req, tid)
            self.assertEqual((req.source_trial_id, req.checkpoint), ("T2", "ckpt/T2/2"))
            # Explored from T2's config: lr 0.3 times 1.2 or 0.8, bs a
            # neighbour of 32.
            self.assertTrue(any(np.isclose(req.config["lr"], 0.3 * f) for f in (1.2, 0.8)), req.config)
            self.assertIn(req.config["bs"], (16, 64))
            self.assertTrue(req.experiment_tag.startswith(f"{tid}@perturbed["), req.experiment_tag)
            self.assertEqual(self.pop.decisions[(tid, 4)], TrialScheduler.PAUSE)
        for tid in ("T2", "T3"):
            self.assertIsNone(r.trial(tid).restore_from)

    def test_never_from_the_top_trial_without_checkpoint(self):
        # Ray picks a top trial at random and skips the exploit when it has
        # no checkpoint (about half of these seeds); here every seed
        # exploits, from T2.
        for seed in range(20):
            with self.subTest(seed=seed):
                random.seed(seed)
                pop = Population(pbt())
                for it in (1, 2, 3, 4):
                    pop.round(it)
                for tid in ("T0", "T1"):
                    self.assertEqual(pop.runner.trial(tid).restore_from.source_trial_id, "T2")

    def test_a_top_trial_without_checkpoint_is_named(self):
        self.assertIn("trial T3 is in the top quantile but has not committed a checkpoint", self.round2_logs)

    def test_no_exploit_between_perturbation_times(self):
        for tid in ("T0", "T1", "T2", "T3"):
            for it in (1, 3):
                self.assertEqual(self.pop.decisions[(tid, it)], TrialScheduler.CONTINUE)

    def test_checkpoints_in_use(self):
        sched, r = self.pop.sched, self.pop.runner
        # T2's recorded checkpoints (the one the exploits need and its
        # newest); T1 is no longer a top trial.
        self.assertEqual(sched.checkpoints_in_use(), {"ckpt/T2/2", "ckpt/T2/4"})
        # Restarted from T2's checkpoint, T0 still needs it until it commits
        # its own.
        r.start(r.trial("T0"))
        t0 = r.trial("T0")
        self.assertEqual((t0.checkpoint, t0.experiment_tag.split("@")[0]), ("ckpt/T2/2", "T0"))
        self.assertIn(("restored", "T0", "T2", "ckpt/T2/2"), r.log)
        self.assertEqual(t0.config["bs"] in (16, 64), True)
        r.report(t0, {"training_iteration": 3, "score": 0})
        self.assertIn("ckpt/T2/2", sched.checkpoints_in_use())
        r.report(t0, {"training_iteration": 3, "score": 0}, "ckpt/T0/3")
        self.assertIn("ckpt/T2/2", sched.checkpoints_in_use(), "T1 has not restarted yet")
        r.start(r.trial("T1"))
        r.report(r.trial("T1"), {"training_iteration": 3, "score": 1}, "ckpt/T1/3")
        self.assertNotIn("ckpt/T2/2", sched.checkpoints_in_use())
        # A finished trial's checkpoints are nobody's source.
        r.trial("T2").status = Trial.TERMINATED
        sched.on_trial_complete(r, r.trial("T2"), r.trial("T2").last_result)
        self.assertEqual(sched.checkpoints_in_use(), set())


class NoCheckpointTest(unittest.TestCase):
    def test_only_top_trial_never_checkpointed(self):
        # quantile_fraction 0.25 of 4: the top quantile is T3 alone, which
        # has no checkpoint, so T0 does not exploit (ray#27170).
        random.seed(0)
        pop = Population(pbt(quantile_fraction=0.25))
        for it in (1, 2, 3):
            pop.round(it)
        with self.assertLogs("rtrain.tune.schedulers.pbt", "INFO") as logs:
            pop.round(4)
        self.assertIn("no trial of the top quantile (T3) has a checkpoint. Skip exploit for trial T0", "\n".join(logs.output))
        self.assertTrue(all(t.restore_from is None for t in pop.runner.trials))
        self.assertEqual(pop.decisions[("T0", 4)], TrialScheduler.CONTINUE)

    def test_with_a_checkpoint_it_is_the_source(self):
        random.seed(0)
        pop = Population(pbt(quantile_fraction=0.25), checkpointing=("T0", "T1", "T2", "T3"))
        for it in (1, 2, 3, 4):
            pop.round(it)
        req = pop.runner.trial("T0").restore_from
        self.assertEqual((req.source_trial_id, req.checkpoint), ("T3", "ckpt/T3/2"))


class SynchTest(unittest.TestCase):
    def test_all_wait_then_exploit_together(self):
        random.seed(0)
        sched = pbt(quantile_fraction=0.25, synch=True)
        pop = Population(sched, checkpointing=("T0", "T1", "T2", "T3"))
        pop.round(1)
        pop.round(2)
        # Everyone pauses at 2; T3's result completes the set, and the
        # bottom (T0, already PAUSED) exploits the top (T3).
        self.assertEqual({pop.decisions[(f"T{i}", 2)] for i in range(4)}, {TrialScheduler.PAUSE})
        self.assertTrue(all(t.status == Trial.PAUSED for t in pop.runner.trials))
        req = pop.runner.trial("T0").restore_from
        self.assertEqual((req.source_trial_id, req.checkpoint), ("T3", "ckpt/T3/2"))
        self.assertEqual(sched._next_perturbation_sync, 4)
        # They resume least-trained first; T0 takes the request on starting.
        self.assertEqual([t.trial_id for t in pop.runner.fill(4)], ["T0", "T1", "T2", "T3"])
        self.assertEqual(pop.runner.trial("T0").checkpoint, "ckpt/T3/2")


class ExploreTest(unittest.TestCase):
    class FakeRandom:
        """random's random() and choice() answering from scripts."""

        def __init__(self, randoms, choices):
            self.randoms, self.choices = list(randoms), list(choices)

        def random(self):
            return self.randoms.pop(0)

        def choice(self, seq):
            value = self.choices.pop(0)
            assert value in list(seq), (value, seq)
            return value

    def test_table(self):
        F = (1.2, 0.8)
        cases = {
            # name: (config, mutations, random() draws, choice() picks, new config, operations)
            "perturb a float": ({"lr": 0.5}, {"lr": tune.uniform(0, 1)}, [0.9], [1.2], {"lr": 0.6}, {"lr": "* 1.2"}),
            "perturb down": ({"lr": 0.5}, {"lr": lambda: 0.1}, [0.9], [0.8], {"lr": 0.4}, {"lr": "* 0.8"}),
            "resample a function": ({"lr": 0.5}, {"lr": lambda: 0.1}, [0.1], [], {"lr": 0.1}, {"lr": "resample"}),
            "an int stays an int": ({"bs": 32}, {"bs": tune.randint(1, 100)}, [0.9], [0.8], {"bs": 25}, {"bs": "* 0.8"}),
            "shift right": ({"c": 2}, {"c": [1, 2, 3]}, [0.9], [1], {"c": 3}, {"c": "shift right"}),
            "shift left": ({"c": 2}, {"c": [1, 2, 3]}, [0.9], [-1], {"c": 1}, {"c": "shift left"}),
            "shift left at the end": ({"c": 1}, {"c": [1, 2, 3]}, [0.9], [-1], {"c": 1}, {"c": "shift left (noop)"}),
            "resample a list": ({"c": 1}, {"c": (1, 2, 3)}, [0.1], [3], {"c": 3}, {"c": "resample"}),
            "value not in the list": ({"c": 7}, {"c": [1, 2, 3]}, [0.9], [2], {"c": 2}, {"c": "resample"}),
            "nested": (
                {"opt": {"lr": 1.0, "m": "a"}, "x": 5},
                {"opt": {"lr": lambda: 0, "m": ["a", "b"]}},
                [0.9, 0.9],
                [1.2, 1],
                {"opt": {"lr": 1.2, "m": "b"}, "x": 5},
                {"opt": {"lr": "* 1.2", "m": "shift right"}},
            ),
        }
        for name, (config, mutations, randoms, choices, want, want_ops) in cases.items():
            with self.subTest(name):
                fake = self.FakeRandom(randoms, choices)
                with mock.patch("rtrain.tune.schedulers.pbt.random", fake):
                    got, ops = _explore(config, mutations, 0.25, F, None)
                self.assertEqual(ops, want_ops)
                self.assertEqual(got.keys(), want.keys())
                for k in want:
                    if isinstance(want[k], float):
                        self.assertAlmostEqual(got[k], want[k])
                    else:
                        self.assertEqual(got[k], want[k])
                self.assertEqual((fake.randoms, fake.choices), ([], []), "every draw used, in order")

    def test_resample_a_domain(self):
        np.random.seed(1)
        with mock.patch("rtrain.tune.schedulers.pbt.random", self.FakeRandom([0.1], [])):
            got, ops = _explore({"lr": 5.0}, {"lr": tune.uniform(0, 1)}, 0.25, (1.2, 0.8), None)
        self.assertEqual(ops, {"lr": "resample"})
        np.random.seed(1)
        self.assertEqual(got["lr"], np.random.uniform(0, 1))

    def test_custom_explore_fn(self):
        got, _ = _explore({"a": 1}, {}, 0.25, (1.2, 0.8), lambda c: {**c, "b": c["a"] + 1})
        self.assertEqual(got, {"a": 1, "b": 2})


class SetupTest(unittest.TestCase):
    def test_bad_arguments(self):
        cases = {
            "nothing to mutate": (dict(hyperparam_mutations={}), TuneError, "at least one of `hyperparam_mutations`"),
            "quantile above 0.5": (dict(quantile_fraction=0.6), ValueError, "between 0 and 0.5"),
            "interval 0": (dict(perturbation_interval=0), ValueError, "perturbation_interval must be a positive number"),
            "sample_from": (dict(hyperparam_mutations={"a": tune.sample_from(lambda: 1)}), ValueError, "sample_from objects are not supported"),
            "a number": (dict(hyperparam_mutations={"a": 3}), TypeError, "must be either a List, Tuple, Dict"),
        }
        for name, (kw, exc, msg) in cases.items():
            with self.subTest(name):
                with self.assertRaisesRegex(exc, msg):
                    pbt(**kw)

    def test_searchers(self):
        sched = pbt()
        runner = FakeRunner(sched, search_alg=OptunaSearch())
        with self.assertRaisesRegex(ValueError, "Search algorithms cannot be used with PopulationBasedTraining schedulers"):
            runner.add("a", {"lr": 0.1, "bs": 32})
        for ok in (None, BasicVariantGenerator(), ConcurrencyLimiter(BasicVariantGenerator(), 2)):
            FakeRunner(pbt(), search_alg=ok).add("a", {"lr": 0.1, "bs": 32})

    def test_missing_config_is_sampled(self):
        random.seed(0)
        runner = FakeRunner(pbt(hyperparam_mutations={"bs": [16, 32], "opt": {"m": (0.9, 0.99)}}))
        t = runner.add("a", {"lr": 1})
        self.assertIn(t.config["bs"], (16, 32))
        self.assertIn(t.config["opt"]["m"], (0.9, 0.99))
        self.assertEqual(t.evaluated_params["bs"], t.config["bs"])

    def test_require_attrs(self):
        runner = FakeRunner(pbt())
        t = runner.add("a", {"lr": 1, "bs": 32})
        runner.fill(1)
        with self.assertRaisesRegex(RuntimeError, "Cannot find metric score in trial result"):
            runner.report(t, {"training_iteration": 1})
        runner = FakeRunner(pbt(require_attrs=False))
        t = runner.add("a", {"lr": 1, "bs": 32})
        runner.fill(1)
        with self.assertLogs("rtrain.tune.schedulers.pbt", "WARNING"):
            self.assertEqual(runner.report(t, {"score": 1}), TrialScheduler.CONTINUE)

    def test_metric_mode(self):
        sched = PopulationBasedTraining(hyperparam_mutations=MUTATIONS)
        with self.assertRaisesRegex(ValueError, r"PopulationBasedTraining has been instantiated without a valid `metric` \(None\)"):
            FakeRunner(sched).add("a")

    def test_log_config(self):
        random.seed(0)
        with tempfile.TemporaryDirectory() as d:
            pop = Population(pbt(log_config=True))
            for t in pop.runner.trials:
                t.experiment_path = d
            for it in (1, 2, 3, 4):
                pop.round(it)
            with open(os.path.join(d, "pbt_global.txt")) as f:
                rows = [json.loads(line) for line in f]
            self.assertEqual([r[:4] for r in rows], [["T0", "T2", 4, 2], ["T1", "T2", 4, 2]])
            self.assertEqual(rows[0][4], {"lr": 0.30000000000000004, "bs": 32})
            with open(os.path.join(d, "pbt_policy_T1.txt")) as f:
                self.assertEqual([json.loads(line) for line in f], rows[1:])


if __name__ == "__main__":
    unittest.main()
