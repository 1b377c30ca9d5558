"""examples/train_rtrain.py, but rank CRASH_RANK is killed with SIGKILL when
it reaches epoch CRASH_EPOCH in the first attempt, before reporting it."""
import os
import runpy
import signal
import sys

import rtrain

example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "train_rtrain.py")
_report = rtrain.report


def report(metrics, checkpoint=None):
    ctx = rtrain.get_context()
    if (ctx.get_restart_count() == 0 and ctx.get_world_rank() == int(os.environ.get("CRASH_RANK", "1"))
            and metrics["epoch"] == int(os.environ.get("CRASH_EPOCH", "2"))):
        os.kill(os.getpid(), signal.SIGKILL)
    return _report(metrics, checkpoint=checkpoint)


rtrain.report = report
sys.argv = [example] + sys.argv[1:]
runpy.run_path(example, run_name="__main__")
