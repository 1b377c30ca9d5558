"""Leaves a grandchild in its own session that ignores SIGTERM, and whose
parent is gone (a double fork), then exits 0."""
import os
import signal
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("orphan %d" % os.getpid(), flush=True)
        time.sleep(600)
    os._exit(0)
os.wait()
time.sleep(0.2)
print("worker done", flush=True)
