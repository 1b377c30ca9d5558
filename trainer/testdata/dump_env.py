"""Each rank writes the environment it got and its cwd to OUT_DIR/env_rank<R>.json."""
import json
import os
import sys

import rtrain

out = os.environ["OUT_DIR"]
rank = rtrain.get_context().get_world_rank()
with open(os.path.join(out, f"env_rank{rank}.json"), "w") as f:
    json.dump({"env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv[1:], "shim": rtrain.__file__}, f)
