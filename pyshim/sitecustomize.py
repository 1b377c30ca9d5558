# rtrain puts this first on the workers' PYTHONPATH, so it runs in every
# worker, torchrun-style scripts that never import rtrain included:
# - SIGUSR1 prints every thread's Python stack to stderr, which is how
#   rtrain shows where a hung job is stuck;
# - how the program ended is noted in $RTRAIN_EXIT_FILE: an uncaught
#   exception before its traceback is printed, so rtrain knows the worker
#   failed by itself, and when, even if it is still exiting when a peer it
#   brought down has already exited (as torchelastic's error file does for
#   @record); and a clean finish once the program and its atexit handlers
#   are done, so a crash in the interpreter's teardown after it (a C++
#   thread of torch's that takes the GIL as Python shuts down, say) is told
#   apart from a failure of the program.
# Then it runs the sitecustomize it shadows.
import faulthandler
import signal

try:
    faulthandler.register(signal.SIGUSR1, all_threads=True)
except (AttributeError, RuntimeError, ValueError):
    pass


def _env():
    # The names of rtrain/_env.py, loaded from its file: importing the
    # package would import it into every worker, those that never use it
    # included.
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rtrain", "_env.py")
    spec = importlib.util.spec_from_file_location("_rtrain_env", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _note_exit(env):
    import atexit
    import os
    import sys

    # Popped, so that processes the worker starts do not write it too.
    path = os.environ.pop(env.EXIT_FILE, None)
    if not path:
        return
    # A forked child keeps the hooks, not the worker's pid.
    pid = os.getpid()
    state = {"raised": False, "code": None}

    def write(note):
        try:
            import json

            with open(path, "w") as f:
                json.dump(note, f)
        except Exception:
            pass

    previous = sys.excepthook

    def hook(kind, value, tb):
        # Python calls the hook with no Python frame left when an exception
        # ends the program; code that calls it for an exception it handled
        # (the code module, logging helpers) goes on running.
        if os.getpid() != pid or sys._getframe().f_back is not None:
            previous(kind, value, tb)
            return
        state["raised"] = True
        try:
            import time
            import traceback

            line = "".join(traceback.format_exception_only(kind, value)).strip()
            write({"raised": time.time(), "exception": line.splitlines()[-1] if line else ""})
        except Exception:
            pass
        previous(kind, value, tb)

    sys.excepthook = hook

    # An uncaught SystemExit reaches neither the hook nor atexit with its
    # code, so sys.exit remembers it: a program that asked for exit status
    # 3 has not finished cleanly, whatever happens after.
    real_exit = sys.exit

    def exit(status=None):
        state["code"] = status
        real_exit(status)

    exit.__doc__ = real_exit.__doc__
    sys.exit = exit

    def finished():
        # Registered before anything of the program's, so it runs after
        # every atexit handler the program registered.
        if os.getpid() != pid or state["raised"]:
            return
        import time

        if "torch.distributed" in sys.modules:
            # A gloo worker thread that finished a collective may still
            # hold the last reference to its tensor and wait for the GIL to
            # free it. Once finalization has begun, Python ends such a
            # thread with pthread_exit, and unwinding through torch's C++
            # destructors aborts the process. Letting go of the GIL for a
            # moment, while Python is whole, lets it finish first.
            time.sleep(0.01)

        code = state["code"]
        if code is None:
            code = 0
        elif not isinstance(code, int):
            code = 1  # sys.exit("message") prints it and exits 1
        write({"finished": time.time(), "code": code})

    atexit.register(finished)


_note_exit(_env())
del _note_exit, _env


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
