# rtrain puts this first on the workers' PYTHONPATH, so it runs in every
# worker, torchrun-style scripts that never import rtrain included:
# - SIGUSR1 prints every thread's Python stack to stderr, which is how
#   rtrain shows where a hung job is stuck;
# - an uncaught exception is noted in $RTRAIN_ERROR_FILE before its
#   traceback is printed, so rtrain knows the worker failed by itself, and
#   when, even if it is still exiting when a peer it brought down has
#   already exited (as torchelastic's error file does for @record).
# Then it runs the sitecustomize it shadows.
import faulthandler
import signal

try:
    faulthandler.register(signal.SIGUSR1, all_threads=True)
except (AttributeError, RuntimeError, ValueError):
    pass


def _note_uncaught():
    import os
    import sys

    # Popped, so that processes the worker starts do not write it too.
    path = os.environ.pop("RTRAIN_ERROR_FILE", None)
    if not path:
        return
    previous = sys.excepthook
    # A forked child keeps the hook, not the worker's pid.
    pid = os.getpid()

    def hook(kind, value, tb):
        # Python calls the hook with no Python frame left when an exception
        # ends the program; code that calls it for an exception it handled
        # (the code module, logging helpers) goes on running.
        if os.getpid() != pid or sys._getframe().f_back is not None:
            previous(kind, value, tb)
            return
        try:
            import json
            import time
            import traceback

            line = "".join(traceback.format_exception_only(kind, value)).strip()
            with open(path, "w") as f:
                json.dump({"time": time.time(), "exception": line.splitlines()[-1] if line else ""}, f)
        except Exception:
            pass
        previous(kind, value, tb)

    sys.excepthook = hook


_note_uncaught()
del _note_uncaught


def _chain():
    import importlib.machinery
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)


_chain()
del _chain
