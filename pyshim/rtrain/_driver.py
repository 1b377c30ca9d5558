"""The driver side: runs a train function on rtrain's engine.

fit() serializes the function once, then runs the `rtrain fit --function`
of the binary this package was installed with, which schedules, launches,
checkpoints and restarts exactly as for a script. Its --result-json says how
the job ended (the format is in pyshim/PROTOCOL.md).
"""

from __future__ import annotations

import datetime
import inspect
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

from rtrain import _binary, _settings, _worker
from rtrain._config import RunConfig, ScalingConfig
from rtrain._errors import TrainingFailedError, WorkerFailure
from rtrain._result import Result
from rtrain._session import Checkpoint

# A function over this many bytes, serialized, gets a warning: it is
# shipped to every worker, and a large one is nearly always a dataset it
# captured by accident.
LARGE_FUNCTION_BYTES = 10 << 20

_OUTCOME_VERSION = 1

# What rtrain.init() set: the cluster to run on, or this machine's shape.
_init: Dict[str, Any] = {}


def init(
    address: Optional[str] = None,
    *,
    num_cpus: Optional[float] = None,
    num_gpus: Optional[int] = None,
    resources: Optional[Dict[str, float]] = None,
    ignore_reinit_error: bool = False,
    **kwargs: Any,
) -> None:
    """Says where runs go, as ray.init does.

    Args:
        address: None (or "local"): each fit() runs on this machine, through
            an embedded head and agent, unless RTRAIN_ADDRESS is set.
            "HOST:PORT": the cluster whose head is there, with the token in
            RTRAIN_TOKEN or the one `rtrain start` saved. "auto": the cluster
            `rtrain start --head` started on this machine.
        num_cpus, num_gpus, resources: what this machine offers runs that go
            to the embedded cluster, as ray.init's (num_gpus=0 hides GPUs).
        ignore_reinit_error: accepted; a second init replaces the first
            unless the first set an address and this one sets another.
        Other keyword arguments of ray.init (runtime_env, namespace,
        logging_level, ...) are accepted and ignored.
    """
    if _init and not ignore_reinit_error and _init.get("address") not in (None, address):
        raise RuntimeError(
            f"rtrain.init: already initialized with address {_init['address']!r}; call rtrain.shutdown() first"
        )
    if address == "local":
        address = None
    if address is not None and not isinstance(address, str):
        raise ValueError(f"rtrain.init(address={address!r}): give 'HOST:PORT', 'auto' or None")
    if address is not None and address != "auto" and ":" not in address:
        raise ValueError(f"rtrain.init(address={address!r}): give HOST:PORT, 'auto' or None")
    _init.clear()
    _init.update(address=address, num_cpus=num_cpus, num_gpus=num_gpus, resources=resources, initialized=True)


def is_initialized() -> bool:
    """Whether rtrain.init() has been called (and not undone by shutdown())."""
    return bool(_init.get("initialized"))


def shutdown() -> None:
    """Forgets what rtrain.init() set. Nothing keeps running after a fit()
    returns, so there is nothing to stop."""
    _init.clear()


def _machine_flags() -> List[str]:
    flags: List[str] = []
    if _init.get("where") is not None:
        # Inside a sweep's trial: its cluster and group (_use_trial_cluster).
        return list(_init["where"])
    address = _init.get("address")
    if address:
        return ["--address", address]
    if _init.get("num_cpus") is not None:
        flags += ["--num-cpus", repr(float(_init["num_cpus"]))]
    if _init.get("num_gpus") is not None:
        flags += ["--num-gpus", str(int(_init["num_gpus"]))]
    if _init.get("resources"):
        flags += ["--resources", json.dumps(_init["resources"])]
    return flags


def _remote() -> bool:
    if "local" in _init:
        return not _init["local"]
    return bool(_init.get("address") or os.environ.get(_settings.ADDRESS))


def _use_trial_cluster(where: List[str], local: bool) -> None:
    """Makes a fit() inside a sweep's trial run on the sweep's cluster, in
    its group, so that its workers are scheduled beside the trials and
    stopping the sweep stops them."""
    _init.clear()
    _init.update(initialized=True, where=list(where), local=local)


def check_train_func(fn: Callable[..., Any], name: str = "train_loop_per_worker") -> bool:
    """Checks fn takes 0 or 1 required arguments (Ray's rule) and returns
    whether it takes an argument: the config."""
    if not callable(fn):
        raise ValueError(f"{name} must be a function, got {type(fn).__name__}")
    params = inspect.signature(fn).parameters.values()
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    required = sum(1 for p in positional if p.default is p.empty) + (1 if varargs else 0)
    if required > 1:
        raise ValueError(f"{name} should take in 0 or 1 required arguments, but it accepts {required} required arguments instead.")
    return bool(positional) or varargs


def _captures(fn: Callable[..., Any], config: Any) -> List[Tuple[str, Any]]:
    """What fn and config hold, named for a message: the variables the
    function refers to, and config's entries."""
    out: List[Tuple[str, Any]] = []
    try:
        cv = inspect.getclosurevars(fn)
        out += [(f"variable {k!r} (captured from the enclosing function)", v) for k, v in cv.nonlocals.items()]
        out += [(f"global variable {k!r}", v) for k, v in cv.globals.items()]
    except (TypeError, ValueError):
        pass
    if isinstance(config, dict):
        out += [(f"train_loop_config[{k!r}]", v) for k, v in config.items()]
    elif config is not None:
        out.append(("train_loop_config", config))
    return out


def _serialize(fn: Callable[..., Any], config: Any) -> bytes:
    try:
        import cloudpickle
    except ImportError:
        raise RuntimeError(
            "rtrain: the driver needs cloudpickle to ship the train function; install it "
            "(Debian: apt install python3-cloudpickle; in a venv made with --system-site-packages it is then seen)"
        ) from None
    name = getattr(fn, "__qualname__", repr(fn))
    try:
        blob = cloudpickle.dumps({"func": fn, "config": config})
    except Exception as err:  # noqa: BLE001: any pickling failure, named below
        for what, value in _captures(fn, config):
            try:
                cloudpickle.dumps(value)
            except Exception as inner:  # noqa: BLE001
                raise TypeError(
                    f"rtrain: cannot send {name} to the workers: its {what} holds a {type(value).__name__}, "
                    f"which cannot be pickled ({inner}); create it inside the train function instead"
                ) from None
        raise TypeError(f"rtrain: cannot send {name} to the workers: {err}") from None
    if len(blob) > LARGE_FUNCTION_BYTES:
        sizes = []
        for what, value in _captures(fn, config):
            try:
                sizes.append((len(cloudpickle.dumps(value)), what))
            except Exception:  # noqa: BLE001
                pass
        biggest = f"; the largest part is its {max(sizes)[1]} ({max(sizes)[0] / 2**20:.1f} MiB)" if sizes else ""
        warnings.warn(
            f"rtrain: {name} and its config are {len(blob) / 2**20:.1f} MiB serialized, all shipped to every worker{biggest}. "
            "Load large data inside the train function instead of capturing it.",
            stacklevel=4,
        )
    return blob


def _sys_path() -> List[str]:
    """The driver's own source directories, for the workers' sys.path, so
    that modules the function refers to by name import there: the driver
    script's directory, relative to the working directory where it lies
    inside it (what is shipped to a cluster's nodes)."""
    paths: List[str] = []
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "rtrain._worker":
        # A function on a worker (a sweep's trial): the driver's paths, not
        # rtrain's own directory, whose torch.py would shadow torch.
        return list(getattr(main, "DRIVER_PATHS", []))
    script = getattr(main, "__file__", None)
    if script:
        d = os.path.dirname(os.path.abspath(script))
        rel = os.path.relpath(d, os.getcwd())
        inside = rel != ".." and not rel.startswith(".." + os.sep)
        paths.append(rel if _remote() and inside else d)
    return paths


def _write_payload(path: str, blob: bytes, takes_config: bool, torch_config: Optional[Dict[str, Any]]) -> None:
    header = {
        "format": _worker.FORMAT,
        "sys_path": _sys_path(),
        "takes_config": takes_config,
        "torch_config": torch_config,
    }
    with open(path, "wb") as f:
        pickle.dump(header, f, protocol=4)
        f.write(blob)


def _pdeathsig() -> None:
    # If the driver dies (SIGKILL included), rtrain fit gets SIGTERM and
    # stops every worker, as it does for a Ctrl-C.
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def prepare(
    fn: Callable[..., Any],
    config: Any,
    directory: str,
    *,
    scaling_config: Optional[ScalingConfig],
    run_config: Optional[RunConfig],
    torch_config: Optional[Dict[str, Any]],
    resume_from_checkpoint: Optional[Checkpoint],
    name: str,
    where: Optional[List[str]] = None,
    local: Optional[bool] = None,
    restart_from: Optional[str] = None,
) -> Tuple[List[str], str]:
    """Checks the job, writes fn and config into directory and returns the
    `rtrain fit` command that runs them, and the path its --result-json
    goes to. where are the flags that say which cluster (rtrain.init's when
    None); local says the workers run on this machine, with this python;
    restart_from starts the run from that checkpoint even when it has its
    own (a PBT exploit)."""
    scaling = scaling_config or ScalingConfig()
    run = run_config or RunConfig()
    takes_config = check_train_func(fn)
    flags = scaling._flags() + run._flags() + (_machine_flags() if where is None else where)
    flags += ["--name", name]
    flags += ["--restart-from", restart_from] if restart_from else ["--resume-existing"]
    if resume_from_checkpoint is not None:
        if not isinstance(resume_from_checkpoint, Checkpoint):
            raise ValueError(f"resume_from_checkpoint must be an rtrain.Checkpoint, got {type(resume_from_checkpoint).__name__}")
        flags += ["--resume-from", resume_from_checkpoint.uri or resume_from_checkpoint.path]
    if (not _remote()) if local is None else local:
        # The workers run the driver's own interpreter, its venv included;
        # a cluster's nodes find their own.
        flags += ["--python", sys.executable]
    blob = _serialize(fn, config)
    _binary.check_version()
    payload = os.path.join(directory, "function.pkl")
    outcome = os.path.join(directory, "result.json")
    _write_payload(payload, blob, takes_config, torch_config)
    argv = [_binary.binary_path(), "fit", "--function", payload, "--result-json", outcome, "--progress", "plain"]
    return argv + flags, outcome


def read_outcome(path: str, code: int) -> Dict[str, Any]:
    """The --result-json rtrain fit wrote; code is how it exited."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise RuntimeError(f"rtrain fit ended ({_how(code)}) without saying how the job went; see its output above") from None


def fit(
    fn: Callable[..., Any],
    config: Any,
    *,
    scaling_config: Optional[ScalingConfig],
    run_config: Optional[RunConfig],
    torch_config: Optional[Dict[str, Any]],
    resume_from_checkpoint: Optional[Checkpoint],
    default_name: str,
) -> Result:
    """Runs fn(config) on every worker of a new job and waits for its end."""
    run = run_config or RunConfig()
    name = run.name or _default_name(default_name)
    tmp = tempfile.mkdtemp(prefix="rtrain-driver-")
    try:
        argv, outcome_path = prepare(
            fn, config, tmp, scaling_config=scaling_config, run_config=run, torch_config=torch_config,
            resume_from_checkpoint=resume_from_checkpoint, name=name,
        )
        hooks = [c._rtrain_on_report for c in (run.callbacks or []) if hasattr(c, "_rtrain_on_report")]
        code, interrupted = _run(argv, hooks)
        if interrupted:
            raise KeyboardInterrupt("rtrain: stopped by Ctrl-C; every worker was stopped")
        outcome = read_outcome(outcome_path, code)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = result_of(outcome, run)
    if result.error is not None:
        raise result.error
    return result


def _default_name(prefix: str) -> str:
    from rtrain.tune import _session as tune_session

    trial = tune_session._trial.get("trial_name")
    if trial:
        # One per trial, the same each time the trial runs its trainable:
        # a paused or restarted trial's fit() goes on from its checkpoints.
        return f"{trial}_{prefix}"
    return f"{prefix}_{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}"


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _run(argv: List[str], on_report: Optional[List[Callable[[Dict[str, Any]], None]]] = None) -> Tuple[int, bool]:
    """Runs rtrain fit with the driver's stdout and stderr, forwarding
    Ctrl-C: the first stops the workers, the second exits at once. Each of
    on_report gets rank 0's metrics as they are reported. Returns its exit
    status and whether Ctrl-C stopped it."""
    events = None
    if on_report:
        r, w = os.pipe()
        argv = argv + ["--events", f"/dev/fd/{w}"]
        proc = subprocess.Popen(argv, pass_fds=(w,), preexec_fn=_pdeathsig, start_new_session=True)
        os.close(w)
        events = os.fdopen(r, "rb")
    else:
        proc = subprocess.Popen(argv, preexec_fn=_pdeathsig, start_new_session=True)
    interrupts = 0
    while True:
        try:
            if events is not None:
                for line in events:
                    try:
                        e = json.loads(line)
                    except ValueError:
                        continue
                    if e.get("type") == "report":
                        try:
                            for hook in on_report or []:
                                hook(e.get("metrics") or {})
                        except BaseException:
                            # The job must not outlive a callback that failed.
                            proc.send_signal(signal.SIGINT)
                            proc.wait()
                            raise
                events.close()
                events = None
            return proc.wait(), interrupts > 0
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts == 1:
                print("rtrain: stopping the workers (Ctrl-C again to exit at once)", file=sys.stderr, flush=True)
                proc.send_signal(signal.SIGINT)
                continue
            # Each worker's reaper stops it once rtrain fit is gone.
            proc.kill()
            proc.wait()
            raise


def result_of(o: Dict[str, Any], run: RunConfig) -> Result:
    """The Result an --result-json outcome describes; its error is set, not raised."""
    if o.get("version") != _OUTCOME_VERSION:
        raise RuntimeError(f"rtrain fit wrote result format {o.get('version')!r}; this package reads {_OUTCOME_VERSION}")

    def ckpt(c: Optional[Dict[str, Any]]) -> Optional[Checkpoint]:
        return Checkpoint(c["uri"], uri=c["uri"], index=c.get("index")) if c else None

    kept = [(ckpt(c), c.get("metrics") or {}) for c in o.get("checkpoints") or []]
    cc = run.checkpoint_config
    if o.get("best_checkpoints"):
        uris = {c["uri"] for c in o["best_checkpoints"]}
        latest = (o.get("latest_checkpoint") or {}).get("uri")
        kept = [(c, m) for c, m in kept if c is not None and (c.path in uris or c.path == latest)]
    elif cc is not None and cc.num_to_keep:
        kept = kept[-cc.num_to_keep :]
    err = _error(o.get("error"))
    returned = None
    if o.get("return_value"):
        import base64

        import cloudpickle

        returned = cloudpickle.loads(base64.b64decode(o["return_value"]))
    result = Result(
        metrics=o.get("metrics"),
        checkpoint=ckpt(o.get("latest_checkpoint")),
        error=err,
        path=o.get("storage") or o.get("run_dir") or "",
        best_checkpoints=[(c, m) for c, m in kept if c is not None],
        history=o.get("history"),
        name=o.get("name", ""),
        job_id=o.get("job_id", ""),
        return_value=returned,
    )
    return result


def _error(e: Optional[Dict[str, Any]]) -> Optional[BaseException]:
    if not e:
        return None
    kind, message = e.get("kind"), e.get("message", "")
    if kind == "invalid_config":
        return ValueError(f"rtrain: {message}")
    if kind == "cancelled":
        return TrainingFailedError(f"rtrain: the run was cancelled: {message}")
    if kind != "failed":
        return RuntimeError(f"rtrain: {message}")
    cause = e.get("root_cause") or {}
    failures: Dict[int, Exception] = {}
    for rank, line in (e.get("worker_failures") or {}).items():
        tb = cause.get("traceback") if str(cause.get("rank")) == rank else None
        failures[int(rank)] = WorkerFailure(int(rank), line, tb)
    text = message
    tb = cause.get("traceback") or []
    if tb:
        text += "\n" + "\n".join(tb[-20:])
    return TrainingFailedError(text, failures)

