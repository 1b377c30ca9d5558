"""ConcurrencyLimiter, the searcher set-up errors and OptunaSearch."""

import os
import tempfile
import unittest

import optuna

from rtrain import tune
from rtrain.tune.search import (
    UNDEFINED_METRIC_MODE,
    UNDEFINED_SEARCH_SPACE,
    BasicVariantGenerator,
    ConcurrencyLimiter,
    Searcher,
    configure_searcher,
)
from rtrain.tune.search.optuna import OptunaSearch

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Counting(Searcher):
    """Suggests {"i": n} forever and notes what it is told."""

    def __init__(self):
        super().__init__(metric="m", mode="max")
        self.n = 0
        self.completed = []

    def suggest(self, trial_id):
        self.n += 1
        return {"i": self.n}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.completed.append(trial_id)


class ConcurrencyLimiterTest(unittest.TestCase):
    def test_limits_live_trials(self):
        inner = Counting()
        lim = ConcurrencyLimiter(inner, max_concurrent=2)
        self.assertEqual((lim.metric, lim.mode), ("m", "max"))
        self.assertEqual(lim.suggest("a"), {"i": 1})
        self.assertEqual(lim.suggest("b"), {"i": 2})
        for _ in range(3):
            self.assertIsNone(lim.suggest("c"))
        self.assertEqual(inner.n, 2, "the searcher is not asked while at the limit")
        lim.on_trial_complete("a", {"m": 1})
        self.assertEqual(inner.completed, ["a"])
        self.assertEqual(lim.suggest("c"), {"i": 3})
        self.assertIsNone(lim.suggest("d"))
        lim.on_trial_complete("unknown")  # ignored
        self.assertEqual(inner.completed, ["a"])

    def test_batch(self):
        inner = Counting()
        lim = ConcurrencyLimiter(inner, max_concurrent=3, batch=True)
        for tid in "abc":
            lim.suggest(tid)
        lim.on_trial_complete("b", {"m": 1})
        lim.on_trial_complete("a", {"m": 2})
        self.assertEqual(inner.completed, [], "held back until the batch is complete")
        self.assertIsNone(lim.suggest("d"))
        lim.on_trial_complete("c", {"m": 3})
        self.assertEqual(inner.completed, ["b", "a", "c"])
        self.assertEqual(lim.suggest("d"), {"i": 4})

    def test_duplicate_id(self):
        lim = ConcurrencyLimiter(Counting(), max_concurrent=2)
        lim.suggest("a")
        with self.assertRaisesRegex(ValueError, "must be unique"):
            lim.suggest("a")

    def test_bad_arguments(self):
        for bad in (0, -1, 1.5, True):
            with self.subTest(bad):
                with self.assertRaisesRegex(ValueError, "max_concurrent"):
                    ConcurrencyLimiter(Counting(), max_concurrent=bad)
        with self.assertRaisesRegex(RuntimeError, "only works with `Searcher` objects"):
            ConcurrencyLimiter(object(), max_concurrent=1)

    def test_passes_finished_through(self):
        gen = ConcurrencyLimiter(Counting(), 1)

        class Done(Counting):
            def suggest(self, trial_id):
                return Searcher.FINISHED

        lim = ConcurrencyLimiter(Done(), 1)
        self.assertEqual(lim.suggest("a"), Searcher.FINISHED)
        self.assertEqual(lim.suggest("b"), Searcher.FINISHED, "FINISHED takes no slot")
        self.assertIsNotNone(gen.suggest("x"))


class ConfigureTest(unittest.TestCase):
    def test_searcher_with_its_own_space(self):
        s = OptunaSearch(space={"a": optuna.distributions.FloatDistribution(0, 1)}, metric="m", mode="min")
        with self.assertRaisesRegex(
            ValueError,
            r"You passed a `param_space` parameter to `Tuner\(\.\.\.\)` with unresolved parameters, but the "
            r"search algorithm was already instantiated with a search space\.",
        ):
            configure_searcher(s, "m", "min", {"a": tune.uniform(0, 1)})
        # Constants only: fine, as in Ray.
        configure_searcher(s, "m", "min", {"a": 1})

    def test_bad_mode(self):
        with self.assertRaisesRegex(ValueError, r"The `mode` parameter passed to `Tuner\(\.\.\.\)` must be one of"):
            configure_searcher(BasicVariantGenerator(), "m", "maximize", {})

    def test_empty_space_reaches_only_the_generator(self):
        gen = BasicVariantGenerator()
        configure_searcher(gen, None, None, {}, num_samples=2)
        self.assertEqual(gen.total_samples, 2)
        opt = OptunaSearch()
        configure_searcher(opt, "m", "min", {})
        with self.assertRaisesRegex(RuntimeError, "but no search space has been defined"):
            opt.suggest("t")


class OptunaConversionTest(unittest.TestCase):
    def test_distributions(self):
        D = optuna.distributions
        cases = {
            "uniform": (tune.uniform(1, 2), D.FloatDistribution(1, 2)),
            "quniform": (tune.quniform(0, 1, 0.25), D.FloatDistribution(0, 1, step=0.25)),
            "loguniform": (tune.loguniform(1e-4, 1e-1), D.FloatDistribution(1e-4, 1e-1, log=True)),
            "qloguniform drops q": (tune.qloguniform(1e-4, 1e-1, 5e-5), D.FloatDistribution(1e-4, 1e-1, log=True)),
            # randint's upper is exclusive, Optuna's inclusive.
            "randint": (tune.randint(0, 10), D.IntDistribution(0, 9)),
            # qrandint reaches its upper bound, so it stays.
            "qrandint": (tune.qrandint(0, 10, 5), D.IntDistribution(0, 10, step=5)),
            "lograndint": (tune.lograndint(1, 100), D.IntDistribution(1, 99, log=True)),
            "choice": (tune.choice(["a", "b"]), D.CategoricalDistribution(["a", "b"])),
        }
        for name, (domain, want) in cases.items():
            with self.subTest(name):
                if "drops q" in name:
                    with self.assertLogs("rtrain.tune.search.optuna.optuna_search", "WARNING") as logs:
                        got = OptunaSearch.convert_search_space({"x": domain})
                    self.assertIn("Dropped quantization.", logs.output[-1])
                else:
                    got = OptunaSearch.convert_search_space({"x": domain})
                self.assertEqual(got, {"x": want})

    def test_nested_and_constants(self):
        got = OptunaSearch.convert_search_space({"a": {"b": tune.uniform(0, 1), "c": 3}, "d": "x"})
        self.assertEqual(list(got), ["a/b"])

    def test_refused(self):
        cases = {
            "grid": (tune.grid_search([1, 2]), "Grid search parameters cannot be automatically converted to an Optuna search space."),
            "randn": (tune.randn(), "Optuna search does not support parameters of type `Float` with samplers of type `_Normal`"),
            "sample_from": (tune.sample_from(lambda: 1), "does not support parameters of type `Function`"),
        }
        for name, (domain, msg) in cases.items():
            with self.subTest(name):
                with self.assertRaises(ValueError) as cm:
                    OptunaSearch.convert_search_space({"x": domain, "y": tune.uniform(0, 1)})
                self.assertIn(msg, str(cm.exception))
        with self.assertRaisesRegex(ValueError, "Grid search parameters cannot be automatically converted"):
            configure_searcher(OptunaSearch(metric="m", mode="min"), None, None, {"x": tune.grid_search([1])})


class OptunaSearchTest(unittest.TestCase):
    SPACE = {"lr": tune.loguniform(1e-4, 1e-1), "n": {"layers": tune.randint(1, 4)}, "act": tune.choice(["relu", "tanh"])}

    def make(self, **kw):
        s = OptunaSearch(seed=kw.pop("seed", 0), **kw)
        configure_searcher(s, "loss", "min", self.SPACE)
        return s

    def test_suggests_nested_configs_in_range(self):
        s = self.make()
        for i in range(20):
            c = s.suggest(str(i))
            self.assertTrue(1e-4 <= c["lr"] <= 1e-1)
            self.assertIn(c["n"]["layers"], (1, 2, 3))
            self.assertIn(c["act"], ("relu", "tanh"))
            s.on_trial_result(str(i), {"loss": c["lr"], "training_iteration": 1})
            s.on_trial_complete(str(i), {"loss": c["lr"]})
        states = [t.state for t in s._ot_study.trials]
        self.assertEqual(states, [optuna.trial.TrialState.COMPLETE] * 20)

    def test_same_id_same_config(self):
        s = self.make()
        self.assertEqual(s.suggest("a"), s.suggest("a"))

    def test_seed_reproduces(self):
        def run(seed):
            s = self.make(seed=seed)
            out = []
            for i in range(15):
                c = s.suggest(str(i))
                s.on_trial_complete(str(i), {"loss": (c["lr"] - 0.01) ** 2})
                out.append(c)
            return out

        self.assertEqual(run(1), run(1))
        self.assertNotEqual(run(1), run(2))

    def test_failed_and_pruned(self):
        s = self.make()
        s.suggest("a")
        s.suggest("b")
        s.on_trial_complete("a", None, error=True)
        s.on_trial_complete("b", {"other": 1})
        S = optuna.trial.TrialState
        self.assertEqual([t.state for t in s._ot_study.trials], [S.FAIL, S.PRUNED])

    def test_points_to_evaluate(self):
        point = {"lr": 0.01, "n": {"layers": 2}, "act": "tanh"}
        s = OptunaSearch(points_to_evaluate=[{"lr": 0.01, "n/layers": 2, "act": "tanh"}], seed=0)
        configure_searcher(s, "loss", "min", self.SPACE)
        self.assertEqual(s.suggest("a"), point)

    def test_evaluated_rewards(self):
        space = {"x": optuna.distributions.FloatDistribution(0, 1)}
        s = OptunaSearch(space, metric="m", mode="max", points_to_evaluate=[{"x": 0.5}], evaluated_rewards=[3.0])
        self.assertEqual(len(s._ot_study.trials), 1)
        self.assertEqual(s._ot_study.best_value, 3.0)

    def test_define_by_run(self):
        def space(trial):
            trial.suggest_float("a", 0, 1)
            return {"b": 2}

        s = OptunaSearch(space, metric="m", mode="min", seed=0)
        c = s.suggest("t")
        self.assertEqual(set(c), {"a", "b"})
        self.assertEqual(c["b"], 2)

    def test_errors(self):
        s = OptunaSearch(seed=0)
        with self.assertRaises(RuntimeError) as cm:
            s.suggest("t")
        self.assertEqual(str(cm.exception), UNDEFINED_SEARCH_SPACE.format(cls="OptunaSearch", space="space"))
        s = OptunaSearch({"x": optuna.distributions.FloatDistribution(0, 1)})
        with self.assertRaises(RuntimeError) as cm:
            s.suggest("t")
        self.assertEqual(str(cm.exception), UNDEFINED_METRIC_MODE.format(cls="OptunaSearch", metric=None, mode=None))
        self.assertIn("pass them to `tune.TuneConfig()`", str(cm.exception))
        with self.assertRaisesRegex(ValueError, "metric and mode must be of the same type"):
            OptunaSearch(metric="m", mode=["min"])

    def test_mode_alone_uses_the_default_metric(self):
        s = OptunaSearch(mode="max")
        configure_searcher(s, None, None, {"x": tune.uniform(0, 1)})
        self.assertEqual(s.metric, "_metric")

    def test_unresolved_space_argument_is_converted(self):
        with self.assertLogs("rtrain.tune.search.optuna.optuna_search", "WARNING") as logs:
            s = OptunaSearch({"x": tune.uniform(0, 1)}, metric="m", mode="min")
        self.assertIn("contained unresolved search space definitions", logs.output[0])
        self.assertTrue(0 <= s.suggest("t")["x"] <= 1)

    def test_save_restore(self):
        s = self.make(seed=3)
        for i in range(5):
            c = s.suggest(str(i))
            s.on_trial_complete(str(i), {"loss": c["lr"]})
        with tempfile.TemporaryDirectory() as d:
            s.save_to_dir(d)
            self.assertEqual(os.listdir(d), ["searcher-state-default.pkl"])
            t = OptunaSearch()
            t.restore_from_dir(d)
        self.assertEqual(len(t._ot_study.trials), 5)
        self.assertEqual(t.suggest("5"), s.suggest("5"))


if __name__ == "__main__":
    unittest.main()
