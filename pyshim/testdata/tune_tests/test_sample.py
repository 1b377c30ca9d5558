"""The search-space domains: Ray Tune's bounds, quantization and log scales."""

import math
import unittest
import warnings

import numpy as np

from rtrain import tune
from rtrain.tune.search.sample import Categorical, Float, Function, Integer

N = 4000


class ExactDrawsTest(unittest.TestCase):
    """Each domain draws exactly what Ray's formula gives from the same
    generator: the bounds moved inward to multiples of q, the draw, then
    round(value / q) * q (numpy's half-to-even)."""

    def test_against_numpy(self):
        def q_bounds(lo, hi, q):
            return np.ceil(lo / q) * q, np.floor(hi / q) * q

        cases = {
            "uniform": (tune.uniform(-2, 3), lambda r: r.uniform(-2, 3, N)),
            "quniform": (
                tune.quniform(0, 1, 0.25),
                lambda r: np.round(r.uniform(*q_bounds(0, 1, 0.25), N) / 0.25) * 0.25,
            ),
            "quniform q=1 is not rounded": (tune.quniform(0, 10, 1), lambda r: r.uniform(0, 10, N)),
            "loguniform": (tune.loguniform(1e-4, 1e-1), lambda r: np.exp(r.uniform(np.log(1e-4), np.log(1e-1), N))),
            "qloguniform": (
                tune.qloguniform(1e-4, 1e-1, 5e-5),
                lambda r: np.round(np.exp(r.uniform(*np.log(q_bounds(1e-4, 1e-1, 5e-5)), N)) / 5e-5) * 5e-5,
            ),
            "randint": (tune.randint(-3, 4), lambda r: r.integers(-3, 4, N)),
            "qrandint": (tune.qrandint(0, 10, 5), lambda r: np.round(r.integers(0, 10, N) / 5) * 5),
            "qrandint q=1 is randint": (tune.qrandint(0, 10), lambda r: r.integers(0, 10, N)),
            "lograndint": (
                tune.lograndint(1, 100),
                lambda r: np.floor(np.exp(r.uniform(np.log(1), np.log(100), N))).astype(int),
            ),
            "qlograndint": (
                tune.qlograndint(1, 100, 5),
                lambda r: np.round(np.floor(np.exp(r.uniform(np.log(5), np.log(100), N))) / 5) * 5,
            ),
            "randn": (tune.randn(5, 2), lambda r: r.normal(5, 2, N)),
            "qrandn": (tune.qrandn(0, 1, 0.5), lambda r: np.round(r.normal(0, 1, N) / 0.5) * 0.5),
            "choice": (tune.choice([3, 1, 2]), lambda r: np.array([3, 1, 2])[r.choice(np.arange(3), size=N)]),
        }
        for name, (domain, expected) in cases.items():
            with self.subTest(name):
                got = np.array(domain.sample(size=N, random_state=7), dtype=float)
                np.testing.assert_allclose(got, np.asarray(expected(np.random.default_rng(7)), dtype=float))
                # One draw at a time from one generator: the same sequence.
                rng = np.random.default_rng(7)
                one_by_one = [domain.sample(random_state=rng) for _ in range(50)]
                np.testing.assert_allclose(np.array(one_by_one, dtype=float), got[:50])


class BoundsTest(unittest.TestCase):
    """What values each domain can give, over many draws."""

    def test_support(self):
        cases = {
            # name: (domain, values it must stay within, values it must reach)
            "randint excludes upper": (tune.randint(0, 3), {0, 1, 2}, {0, 1, 2}),
            "qrandint reaches upper": (tune.qrandint(0, 10, 5), {0, 5, 10}, {0, 5, 10}),
            "qrandint q=1 excludes upper": (tune.qrandint(0, 4, 1), {0, 1, 2, 3}, {0, 1, 2, 3}),
            "qrandint bounds move inward": (tune.qrandint(1, 11, 5), {5, 10}, {5, 10}),
            "lograndint excludes upper": (tune.lograndint(1, 4), {1, 2, 3}, {1, 2, 3}),
            "qlograndint reaches upper": (tune.qlograndint(5, 20, 5), {5, 10, 15, 20}, {5, 10, 15, 20}),
            "quniform reaches both ends": (tune.quniform(0, 1, 0.5), {0.0, 0.5, 1.0}, {0.0, 0.5, 1.0}),
            "choice": (tune.choice(["a", "b"]), {"a", "b"}, {"a", "b"}),
        }
        for name, (domain, within, reached) in cases.items():
            with self.subTest(name):
                got = set(domain.sample(size=N, random_state=1))
                self.assertLessEqual(got, within)
                self.assertGreaterEqual(got, reached)

    def test_ranges(self):
        cases = {
            "uniform": (tune.uniform(2, 3), 2, 3),
            "loguniform": (tune.loguniform(1e-3, 1e2), 1e-3, 1e2),
            "lograndint": (tune.lograndint(10, 1000), 10, 999),
            "qloguniform": (tune.qloguniform(1e-3, 1e-1, 1e-3), 1e-3, 1e-1),
        }
        for name, (domain, lo, hi) in cases.items():
            with self.subTest(name):
                got = np.array(domain.sample(size=N, random_state=2))
                self.assertGreaterEqual(got.min(), lo)
                self.assertLessEqual(got.max(), hi)

    def test_log_scale(self):
        # Log-uniform over four decades puts about a quarter of the draws in
        # each decade; uniform would put 99.9% in the last.
        for domain in (tune.loguniform(1e-4, 1), tune.lograndint(1, 10001)):
            with self.subTest(str(domain)):
                got = np.array(domain.sample(size=N, random_state=3), dtype=float)
                counts, _ = np.histogram(np.log10(got), bins=[-4, -3, -2, -1, 0] if got.max() <= 1 else [0, 1, 2, 3, 4.0001])
                np.testing.assert_allclose(counts / N, [0.25] * 4, atol=0.03)

    def test_quantized_values_are_multiples(self):
        for domain, q in ((tune.quniform(-1, 1, 0.1), 0.1), (tune.qrandn(0, 3, 0.5), 0.5), (tune.qloguniform(1e-4, 1e-2, 1e-4), 1e-4)):
            with self.subTest(str(domain)):
                for v in domain.sample(size=500, random_state=4):
                    self.assertTrue(math.isclose(v / q, round(v / q), abs_tol=1e-9), v)

    def test_normal_moments(self):
        got = np.array(tune.randn(5, 2).sample(size=20000, random_state=5))
        self.assertAlmostEqual(got.mean(), 5, delta=0.05)
        self.assertAlmostEqual(got.std(), 2, delta=0.05)


class TypesTest(unittest.TestCase):
    def test_one_draw_is_cast(self):
        cases = {
            "uniform": (tune.uniform(0, 1), float),
            "quniform": (tune.quniform(0, 1, 0.5), float),
            "randint": (tune.randint(0, 5), int),
            "qrandint": (tune.qrandint(0, 10, 5), int),
            "lograndint": (tune.lograndint(1, 5), int),
            "qlograndint": (tune.qlograndint(1, 10, 2), int),
            "randn": (tune.randn(), float),
        }
        for name, (domain, typ) in cases.items():
            with self.subTest(name):
                self.assertIs(type(domain.sample(random_state=0)), typ)

    def test_choice_keeps_mixed_types(self):
        got = tune.choice([1, "a", None, (2, 3)]).sample(size=200, random_state=0)
        self.assertEqual({repr(v) for v in got}, {"1", "'a'", "None", "(2, 3)"})

    def test_random_states(self):
        d = tune.uniform(0, 1)
        # A seed, a Generator and the legacy RandomState; None is numpy's
        # global generator.
        self.assertEqual(d.sample(random_state=3), np.random.default_rng(3).uniform(0, 1))
        self.assertEqual(d.sample(random_state=np.random.RandomState(3)), np.random.RandomState(3).uniform(0, 1))
        np.random.seed(11)
        a = tune.randint(0, 1000).sample(size=5)
        np.random.seed(11)
        self.assertEqual(list(a), list(np.random.randint(0, 1000, size=5)))

    def test_spec_keyword(self):
        f = tune.sample_from(lambda spec: spec["x"] * 2)
        self.assertEqual(f.sample({"x": 2}), 4)
        self.assertEqual(f.sample(spec={"x": 3}), 6)
        self.assertEqual(tune.sample_from(lambda: 7).sample(), 7)


class ErrorsTest(unittest.TestCase):
    def test_bad_domains(self):
        cases = {
            "uniform without a lower bound": (lambda: Float(None, 1).uniform(), "Uniform requires a lower bound"),
            "loguniform from 0": (lambda: tune.loguniform(0, 1), "LogUniform requires a lower bound greater than 0"),
            "lograndint to inf": (lambda: Integer(1, float("inf")).loguniform(), "LogUniform requires a upper bound"),
            "quniform bound not a multiple": (lambda: tune.quniform(0.1, 1, 0.25), "lower variable bound 0.1 is not divisible"),
            "randn sd 0": (lambda: tune.randn(0, 0), "sd must be greater than 0"),
            "function of two arguments": (lambda: tune.sample_from(lambda a, b: 1), "either 0 or 1 parameters"),
            "two samplers": (lambda: tune.uniform(1, 2).loguniform(), "only choose one sampler"),
        }
        for name, (make, msg) in cases.items():
            with self.subTest(name):
                with self.assertRaisesRegex(ValueError, msg):
                    make()

    def test_base_is_deprecated(self):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            d = tune.loguniform(1e-3, 1, base=10)
        self.assertTrue(any("`base` argument is deprecated" in str(x.message) for x in w))
        self.assertLess(d.sample(random_state=0), 1)

    def test_grid_is_not_sampled(self):
        with self.assertRaises(RuntimeError):
            Categorical([1, 2]).grid().sample()

    def test_domain_classes(self):
        self.assertIsInstance(tune.sample_from(lambda: 1), Function)
        self.assertTrue(tune.choice([1]).is_valid(1))
        self.assertFalse(tune.randint(0, 3).is_valid(4))
        self.assertEqual(tune.grid_search([1, 2]), {"grid_search": [1, 2]})


if __name__ == "__main__":
    unittest.main()
