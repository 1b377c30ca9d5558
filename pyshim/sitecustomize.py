# rtrain puts this first on the workers' PYTHONPATH, so it runs in every
# worker, torchrun-style scripts that never import rtrain included: SIGUSR1
# prints every thread's Python stack to stderr, which is how rtrain shows
# where a hung job is stuck. Then it runs the sitecustomize it shadows.
import faulthandler
import signal

try:
    faulthandler.register(signal.SIGUSR1, all_threads=True)
except (AttributeError, RuntimeError, ValueError):
    pass


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
