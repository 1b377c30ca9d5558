"""Reports a checkpoint and exits at once: the head must still commit it."""
import os
import tempfile

import rtrain

with tempfile.TemporaryDirectory() as d:
    with open(os.path.join(d, "x"), "w") as f:
        f.write(str(rtrain.get_context().get_world_rank()))
    # Large enough that fetching it takes longer than the worker's exit.
    with open(os.path.join(d, "weights"), "wb") as f:
        f.write(os.urandom(64 << 20))
    rtrain.report({"step": 1}, checkpoint=rtrain.Checkpoint.from_directory(d))
