"""Workers that report, then sleep until they are stopped."""
import time

import rtrain
from rtrain import ScalingConfig
from rtrain.torch import TorchTrainer


def train_func():
    rtrain.report({"up": 1})
    time.sleep(600)


if __name__ == "__main__":
    TorchTrainer(train_func, scaling_config=ScalingConfig(num_workers=2)).fit()
