"""BasicVariantGenerator and variant generation: grids, samples, sample_from
and points_to_evaluate as Ray Tune makes them."""

import os
import tempfile
import unittest

import numpy as np

from rtrain import tune
from rtrain.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher, configure_searcher, total_trials
from rtrain.tune.search.variant_generator import (
    RecursiveDependencyError,
    count_variants,
    format_vars,
    generate_variants,
)


def all_configs(gen, param_space, num_samples=1, ids=None):
    configure_searcher(gen, None, None, param_space, num_samples=num_samples)
    out = []
    while True:
        tid = f"t{len(out)}"
        c = gen.suggest(tid)
        if c == Searcher.FINISHED:
            return out
        assert c is not None
        out.append(c)
        gen.on_trial_complete(tid)


class GridTest(unittest.TestCase):
    def test_grid_times_num_samples_in_order(self):
        # Grids in sorted path order, the first changing fastest; each
        # sample repeats the whole grid.
        space = {"y": tune.grid_search(["a", "b", "c"]), "x": tune.grid_search([10, 20])}
        got = [(c["x"], c["y"]) for c in all_configs(BasicVariantGenerator(), space, num_samples=2)]
        grid = [(10, "a"), (20, "a"), (10, "b"), (20, "b"), (10, "c"), (20, "c")]
        self.assertEqual(got, grid + grid)

    def test_counts(self):
        cases = {
            # name: (param_space, num_samples, points_to_evaluate, trials)
            "no grid": ({"a": tune.uniform(0, 1)}, 5, None, 5),
            "empty space": ({}, 3, None, 3),
            "two grids": ({"a": tune.grid_search([1, 2, 3]), "b": {"c": tune.grid_search([1, 2])}}, 2, None, 12),
            "grid in a list": ({"l": [tune.grid_search([1, 2]), 3]}, 1, None, 2),
            "json grid": ({"a": {"grid_search": [1, 2]}}, 4, None, 8),
            # Ray's docstring example: each point replaces one sample.
            "points": (
                {"a": tune.grid_search([1, 2]), "b": tune.randint(0, 3)},
                4,
                [{"a": 2, "b": 2}, {"a": 1}, {"b": 2}],
                6,
            ),
            "more points than samples": ({"a": tune.uniform(0, 1)}, 1, [{"a": 0.1}, {"a": 0.2}], 2),
        }
        for name, (space, n, points, want) in cases.items():
            with self.subTest(name):
                gen = BasicVariantGenerator(points_to_evaluate=points, random_state=0)
                self.assertEqual(count_variants(space, n, points), want)
                self.assertEqual(total_trials(gen, space, n), want)
                got = all_configs(gen, space, num_samples=n)
                self.assertEqual(len(got), want)
                self.assertEqual(gen.total_samples, want)

    def test_points_first(self):
        space = {"a": tune.grid_search([1, 2]), "b": tune.randint(0, 3)}
        got = all_configs(
            BasicVariantGenerator(points_to_evaluate=[{"a": 2, "b": 2}, {"a": 1}, {"b": 2}], random_state=0), space, 4
        )
        self.assertEqual(got[0], {"a": 2, "b": 2})
        self.assertEqual(got[1]["a"], 1)
        self.assertEqual([(c["a"], c["b"]) for c in got[2:4]], [(1, 2), (2, 2)])
        self.assertEqual([c["a"] for c in got[4:]], [1, 2])

    def test_point_outside_the_space(self):
        gen = BasicVariantGenerator(points_to_evaluate=[{"nope": {"x": 1}}])
        configure_searcher(gen, None, None, {"a": tune.uniform(0, 1)}, num_samples=1)
        with self.assertRaisesRegex(ValueError, "Pre-set config key `nope/x` does not correspond"):
            gen.suggest("t0")

    def test_point_out_of_range_warns(self):
        gen = BasicVariantGenerator(points_to_evaluate=[{"a": 5}])
        configure_searcher(gen, None, None, {"a": tune.uniform(0, 1)}, num_samples=1)
        with self.assertLogs("rtrain.tune.search.variant_generator", "WARNING") as logs:
            self.assertEqual(gen.suggest("t0"), {"a": 5})
        self.assertIn("Pre-set value `5` is not within valid values of parameter `a`", logs.output[0])

    def test_random_values_per_grid_variant(self):
        space = {"g": tune.grid_search([1, 2, 3]), "r": tune.uniform(0, 1)}
        per_variant = [c["r"] for c in all_configs(BasicVariantGenerator(random_state=0), space, 2)]
        self.assertEqual(len(set(per_variant)), 6)
        constant = [c["r"] for c in all_configs(BasicVariantGenerator(random_state=0, constant_grid_search=True), space, 2)]
        self.assertEqual(len(set(constant[:3])), 1)
        self.assertEqual(len(set(constant[3:])), 1)
        self.assertNotEqual(constant[0], constant[3])

    def test_constant_grid_search_resamples_what_depends_on_the_grid(self):
        space = {"g": tune.grid_search([10, 20]), "r": tune.uniform(0, 1), "d": tune.sample_from(lambda s: s.config.g + s.config.r)}
        got = all_configs(BasicVariantGenerator(random_state=0, constant_grid_search=True), space)
        self.assertEqual(got[0]["r"], got[1]["r"])
        self.assertEqual([c["d"] for c in got], [10 + got[0]["r"], 20 + got[0]["r"]])

    def test_sample_from_returning_a_grid(self):
        space = {"a": tune.sample_from(lambda: tune.grid_search([1, 2, 3]))}
        self.assertEqual([c["a"] for c in all_configs(BasicVariantGenerator(), space)], [1, 2, 3])


class SampleFromTest(unittest.TestCase):
    def test_dependencies_in_any_order(self):
        space = {
            # Reads a value defined after it, and one nested.
            "c": tune.sample_from(lambda spec: spec.config.b + spec.config.model.lr),
            "b": tune.sample_from(lambda config: config["a"] * 10),
            "a": tune.randint(1, 5),
            "model": {"lr": tune.choice([0.5]), "depth": tune.sample_from(lambda spec: spec["config"]["a"] + 1)},
            "e": {"eval": "spec.config.a * 100"},
            "f": tune.sample_from(lambda c: c.get("a") - 1),
            "g": tune.grid_search([7, 8]),
            "h": tune.sample_from(lambda spec: spec.config.g * 2),
        }
        for c in all_configs(BasicVariantGenerator(random_state=3), space, num_samples=3):
            self.assertEqual(c["b"], c["a"] * 10)
            self.assertEqual(c["c"], c["b"] + 0.5)
            self.assertEqual(c["model"]["depth"], c["a"] + 1)
            self.assertEqual(c["e"], c["a"] * 100)
            self.assertEqual(c["f"], c["a"] - 1)
            self.assertEqual(c["h"], c["g"] * 2)

    def test_cycle(self):
        space = {"a": tune.sample_from(lambda s: s.config.b), "b": tune.sample_from(lambda s: s.config.a)}
        with self.assertRaises(RecursiveDependencyError):
            list(generate_variants(space))

    def test_failing_function(self):
        space = {"a": tune.sample_from(lambda s: 1 / 0)}
        with self.assertRaisesRegex(ValueError, r"Failed to evaluate expression: \('a',\)"):
            list(generate_variants(space))

    def test_numpy_in_functions(self):
        np.random.seed(0)
        space = {"a": tune.sample_from(lambda spec: np.random.randint(0, 5)), "b": tune.sample_from(lambda: "x")}
        c = all_configs(BasicVariantGenerator(), space)[0]
        self.assertIn(c["a"], range(5))
        self.assertEqual(c["b"], "x")


class GeneratorTest(unittest.TestCase):
    SPACE = {
        "lr": tune.loguniform(1e-4, 1e-1),
        "bs": tune.choice([16, 32, 64]),
        "layers": tune.grid_search([1, 2]),
        "double": tune.sample_from(lambda spec: spec.config.bs * 2),
    }

    def test_seed_reproduces(self):
        a = all_configs(BasicVariantGenerator(random_state=42), self.SPACE, 5)
        b = all_configs(BasicVariantGenerator(random_state=42), self.SPACE, 5)
        c = all_configs(BasicVariantGenerator(random_state=43), self.SPACE, 5)
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)
        gen = np.random.default_rng(42)
        self.assertEqual(all_configs(BasicVariantGenerator(random_state=gen), self.SPACE, 5), a)

    def test_the_space_is_not_modified(self):
        space = {"a": tune.uniform(0, 1), "n": {"g": tune.grid_search([1, 2])}}
        all_configs(BasicVariantGenerator(), space, 2)
        self.assertIsInstance(space["a"], tune.search.sample.Float)
        self.assertEqual(space["n"]["g"], {"grid_search": [1, 2]})

    def test_configs_are_independent(self):
        got = all_configs(BasicVariantGenerator(), {"n": {"x": 1}, "g": tune.grid_search([1, 2])})
        got[0]["n"]["x"] = 99
        self.assertEqual(got[1]["n"]["x"], 1)

    def test_max_concurrent(self):
        gen = BasicVariantGenerator(max_concurrent=2)
        configure_searcher(gen, None, None, {"a": tune.uniform(0, 1)}, num_samples=3)
        self.assertIsNotNone(gen.suggest("a"))
        self.assertIsNotNone(gen.suggest("b"))
        self.assertIsNone(gen.suggest("c"))
        gen.on_trial_complete("a")
        self.assertIsInstance(gen.suggest("c"), dict)
        gen.on_trial_complete("b")
        gen.on_trial_complete("c")
        self.assertEqual(gen.suggest("d"), Searcher.FINISHED)
        self.assertEqual(gen.suggest("e"), Searcher.FINISHED)

    def test_variant_tags(self):
        gen = BasicVariantGenerator(random_state=0)
        space = {"a": tune.grid_search([1, 2]), "b": {"c": tune.uniform(0, 1)}, "k": "const"}
        configure_searcher(gen, None, None, space, num_samples=1)
        c = gen.suggest("x")
        v = gen.variant("x")
        self.assertEqual(v.experiment_tag, f"0_a=1,c={c['b']['c']:.4f}")
        self.assertEqual(v.evaluated_params, {"a": 1, "b/c": c["b"]["c"]})
        self.assertEqual(format_vars({("a", "b"): "x y/z", ("c",): 0.5}), "b=x_y_z,c=0.5000")

    def test_save_and_restore_midway(self):
        space = dict(self.SPACE)
        space["f"] = tune.sample_from(lambda spec: spec.config.lr * 2)  # a lambda: cloudpickle
        first = BasicVariantGenerator(random_state=7)
        configure_searcher(first, None, None, space, num_samples=3)
        head = [first.suggest(f"t{i}") for i in range(3)]
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "state.pkl")
            first.save(path)
            rest = []
            while (c := first.suggest(f"u{len(rest)}")) != Searcher.FINISHED:
                rest.append(c)
            second = BasicVariantGenerator()
            second.restore(path)
            again = []
            while (c := second.suggest(f"u{len(again)}")) != Searcher.FINISHED:
                again.append(c)
        self.assertEqual(len(head) + len(rest), 6)
        self.assertEqual(again, rest)

    def test_suggest_before_configure(self):
        with self.assertRaisesRegex(RuntimeError, "call set_search_properties"):
            BasicVariantGenerator().suggest("t")

    def test_configure_twice(self):
        gen = BasicVariantGenerator()
        self.assertTrue(gen.set_search_properties(None, None, {}, num_samples=1))
        self.assertFalse(gen.set_search_properties(None, None, {"a": 1}, num_samples=1))

    def test_behind_a_concurrency_limiter(self):
        # The generator limits itself; the limiter hands it max_concurrent.
        gen = ConcurrencyLimiter(BasicVariantGenerator(), max_concurrent=1)
        configure_searcher(gen, None, None, {}, num_samples=2)
        self.assertEqual(gen.suggest("a"), {})
        self.assertIsNone(gen.suggest("b"))
        gen.on_trial_complete("a")
        self.assertEqual(gen.suggest("b"), {})
        gen.on_trial_complete("b")
        self.assertEqual(gen.suggest("c"), Searcher.FINISHED)
        self.assertEqual(total_trials(gen, {"g": tune.grid_search([1, 2])}, 3), 6)


if __name__ == "__main__":
    unittest.main()
