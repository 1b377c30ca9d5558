"""Reports EPOCHS times, each rank attaching SIZE_MB of its own shard: a
sharded checkpoint big enough that an upload takes a while."""
import os
import tempfile
import time

import rtrain

rank = rtrain.get_context().get_world_rank()
size = int(os.environ.get("SIZE_MB", "16")) << 20
for epoch in range(int(os.environ.get("EPOCHS", "3"))):
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, f"shard_{rank}.bin"), "wb") as f:
            f.write(os.urandom(size))
        rtrain.report({"epoch": epoch, "score": [3.0, 9.0, 1.0, 5.0][epoch % 4]}, checkpoint=rtrain.Checkpoint.from_directory(d))
    time.sleep(float(os.environ.get("PAUSE", "0")))
