"""Reports once, then sleeps until stopped; a child of it ignores SIGTERM."""
import signal
import subprocess
import sys
import time

import rtrain

if rtrain.get_context().get_world_rank() == 0:
    # A grandchild in its own session that ignores SIGTERM: it must still go.
    subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
        start_new_session=True,
    )
rtrain.report({"step": 1})
while True:
    time.sleep(0.1)
