"""Bad input, one case per run (CASE): each must fail in fit() with a clear
error before any worker starts. Prints the exception's type and message."""
import json
import os
import threading

import rtrain
from rtrain import RunConfig, ScalingConfig
from rtrain.torch import TorchTrainer

lock = threading.Lock()


def uses_lock():
    with lock:
        pass


def two_args(a, b):
    pass


table = bytes(12 << 20)


def uses_table():
    return len(table)


CASES = {
    "no_workers": lambda: TorchTrainer(lambda: None, scaling_config=ScalingConfig(num_workers=0)),
    "gpu": lambda: TorchTrainer(lambda: None, scaling_config=ScalingConfig(num_workers=2, use_gpu=True)),
    "two_args": lambda: TorchTrainer(two_args),
    "storage": lambda: TorchTrainer(lambda: None, run_config=RunConfig(storage_path="gs://bucket/runs")),
    "unpicklable": lambda: TorchTrainer(uses_lock),
    "large": lambda: TorchTrainer(uses_table),
    "address": lambda: (rtrain.init(address="127.0.0.1:1"), TorchTrainer(lambda: None))[1],
}

if __name__ == "__main__":
    try:
        CASES[os.environ["CASE"]]().fit()
        print(json.dumps({"type": None}))
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"type": type(e).__name__, "message": str(e)}))
