"""OptunaSearch (TPE) beats random search at the same budget.

The objective is a shifted sphere over [-5, 5]^4, minimum 0 at C; each
searcher gets 60 trials, told one by one, for seeds 0-9. Over 200 seeds in
groups of 10 (checked when this test was written), TPE's mean best was at
most 0.23 of random search's and TPE won on at least 8 seeds of every 10;
the test asks for 0.5 and 7, so it holds with room to spare, and with fixed
seeds it gives the same answer every run.
"""

import unittest

import numpy as np
import optuna

from rtrain import tune
from rtrain.tune.search import BasicVariantGenerator, ConcurrencyLimiter, configure_searcher
from rtrain.tune.search.optuna import OptunaSearch

optuna.logging.set_verbosity(optuna.logging.WARNING)

C = [1.5, -2.0, 0.5, 3.0]
SPACE = {f"x{i}": tune.uniform(-5, 5) for i in range(4)}
BUDGET = 60
SEEDS = range(10)


def objective(config):
    return sum((config[f"x{i}"] - C[i]) ** 2 for i in range(4))


def best_found(searcher):
    configure_searcher(searcher, "loss", "min", SPACE, num_samples=BUDGET)
    best = float("inf")
    for i in range(BUDGET):
        tid = f"t{i}"
        config = searcher.suggest(tid)
        loss = objective(config)
        searcher.on_trial_result(tid, {"loss": loss, "training_iteration": 1})
        searcher.on_trial_complete(tid, {"loss": loss, "training_iteration": 1})
        best = min(best, loss)
    return best


class OptunaBeatsRandomTest(unittest.TestCase):
    def test_same_budget(self):
        tpe = np.array([best_found(OptunaSearch(seed=s)) for s in SEEDS])
        rnd = np.array([best_found(BasicVariantGenerator(random_state=s)) for s in SEEDS])
        msg = f"TPE best {tpe.round(3)}, random best {rnd.round(3)}"
        self.assertLess(tpe.mean(), 0.5 * rnd.mean(), msg)
        self.assertGreaterEqual(int((tpe < rnd).sum()), 7, msg)

    def test_behind_a_concurrency_limiter(self):
        # One at a time, the limiter changes nothing: the same suggestions.
        self.assertEqual(best_found(ConcurrencyLimiter(OptunaSearch(seed=0), 1)), best_found(OptunaSearch(seed=0)))


if __name__ == "__main__":
    unittest.main()
