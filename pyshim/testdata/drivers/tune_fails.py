"""A trainable that raises in every trial, and one whose trials fit no node."""
import json
import os

import rtrain
from rtrain import tune


def raises(config):
    raise ValueError(f"bad trial {config['i']}")


def big(config):
    tune.report(x=1)


if __name__ == "__main__":
    rtrain.init(num_cpus=2)
    case = os.environ["CASE"]
    trainable = raises if case == "raises" else tune.with_resources(big, {"cpu": 64})
    results = tune.Tuner(
        trainable,
        param_space={"i": tune.grid_search([0, 1, 2])},
        run_config=rtrain.RunConfig(name=case, storage_path=os.environ["STORAGE"]),
    ).fit()
    print(json.dumps({
        "trials": len(results),
        "errors": [str(e).splitlines()[0] for e in results.errors],
        "types": sorted({type(e).__name__ for e in results.errors}),
    }))
