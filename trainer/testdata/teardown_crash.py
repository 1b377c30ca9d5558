"""Rank CRASH_RANK (default 1) finishes at once, then dies of SIGABRT as
Python shuts down, the way a torch C++ thread that takes the GIL during
finalization kills it ("terminate called without an active exception");
the other ranks finish a moment later. With CRASH_BEFORE_FINISH set it
aborts before its program ends instead. With CRASH_EXIT set, it ends with
sys.exit(CRASH_EXIT) before the crash. Needs no torch."""
import os
import sys
import time


class _AbortAtTeardown:
    # A module global: collected while the interpreter is being finalized,
    # after every atexit handler has run.
    def __del__(self):
        os.write(2, b"terminate called without an active exception\n")
        os.abort()


rank = int(os.environ["RANK"])
if rank == int(os.environ.get("CRASH_RANK", "1")):
    print(f"rank {rank} done", flush=True)
    if os.environ.get("CRASH_BEFORE_FINISH"):
        os.write(2, b"terminate called without an active exception\n")
        os.abort()
    crash = _AbortAtTeardown()
    if os.environ.get("CRASH_EXIT"):
        sys.exit(int(os.environ["CRASH_EXIT"]))
else:
    time.sleep(1)
    print(f"rank {rank} done", flush=True)
