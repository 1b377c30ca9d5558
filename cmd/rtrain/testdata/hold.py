"""Each rank starts a helper child (as DataLoader workers are), reports, then trains forever."""
import subprocess
import sys
import time

import rtrain

subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
rtrain.report({"step": 1, "rank": rtrain.get_context().get_world_rank()})
print("holding", flush=True)
while True:
    time.sleep(0.1)
