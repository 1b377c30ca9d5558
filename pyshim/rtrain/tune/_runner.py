"""The trial runner: runs a sweep's trials as rtrain jobs and feeds their
results to the searcher and the scheduler.

Each trial is one `rtrain fit --function` process submitted to the sweep's
cluster (SweepCluster), in the sweep's job group. Its --events pipe brings
the job's states, reports and checkpoints as they happen; its --result-json
says how it ended. The cluster's scheduler is the only judge of what fits:
the runner starts another trial only while none it started is still
queued there (or submitted and not yet placed), so a sweep never holds
more trials than fit and needs no
hand-set max_concurrent_trials. Stopping a trial (a scheduler's STOP or
PAUSE) is a SIGINT to its rtrain fit, which cancels the job.

The contract with searchers and schedulers is in
rtrain/tune/schedulers/trial_scheduler.py.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

from rtrain import _binary, _driver
from rtrain._config import FailureConfig, RunConfig, ScalingConfig
from rtrain._result import Result
from rtrain.tune import _session
from rtrain.tune.experiment.trial import Trial
from rtrain.tune.result import DONE, TIME_TOTAL_S, TRAINING_ITERATION
from rtrain.tune.schedulers.trial_scheduler import TrialScheduler
from rtrain.tune.search.util import flatten_dict


# rtrain fit takes at most this many --param flags.
_MAX_PARAMS = 64


class _Job:
    """One trial's rtrain fit process and the pipes it speaks on."""

    def __init__(self, trial: Trial, argv: List[str], outcome: str, tmp: str, started_from: Optional[str]) -> None:
        self.trial = trial
        self.outcome = outcome
        self.tmp = tmp
        events_r, events_w = os.pipe()
        self.proc = subprocess.Popen(
            argv + ["--events", f"/dev/fd/{events_w}", "--quiet"],
            pass_fds=(events_w,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_driver._pdeathsig,
            start_new_session=True,
        )
        os.close(events_w)
        self.events = os.fdopen(events_r, "rb", buffering=0)
        self.output = self.proc.stdout
        os.set_blocking(self.events.fileno(), False)
        os.set_blocking(self.output.fileno(), False)
        self.partial = {self.events.fileno(): b"", self.output.fileno(): b""}
        self.open = 2
        self.queued = False
        self.placed = False  # the cluster has placed its workers
        self.said_queued = False
        self.stopping: Optional[str] = None  # the status the trial takes once stopped
        # Checkpoints reported, and committed. A pause waits for the commit
        # of the paused_at reported before it, and the trial resumes from
        # the last of them, not from any the job made after.
        self.reported = self.committed = 0
        self.paused_at: Optional[int] = None
        self.signalled = False
        # The checkpoint the job starts from (--restart-from), which it
        # copies as it starts: in use until its first report.
        self.started_from = started_from
        self.reported_once = False
        self.started = time.monotonic()

    def lines(self, fd: int) -> List[bytes]:
        """The whole lines fd has now; at its end, the rest."""
        out: List[bytes] = []
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                rest = self.partial.pop(fd, b"")
                if rest:
                    out.append(rest)
                self.open -= 1
                return out + [None]  # type: ignore[list-item]
            buf = self.partial[fd] + chunk
            *whole, self.partial[fd] = buf.split(b"\n")
            out.extend(whole)
        return out

    def stop(self, status: str) -> None:
        """Cancels the job; the trial becomes status once it has ended. A
        stop while a pause is under way makes the pause a stop."""
        if self.proc.poll() is not None:
            return
        if self.stopping is None or status == Trial.TERMINATED:
            self.stopping = status
            self._signal()

    def pause(self) -> None:
        """Cancels the job once the checkpoints it has reported are
        committed: the trial resumes from the one of its last result, as a
        paused trial in Ray does (its report returned once stored)."""
        if self.stopping is not None:
            return
        # A job that has exited already pauses too: the scheduler decided
        # on this result, and the trial resumes from it.
        self.stopping = Trial.PAUSED
        self.paused_at = self.reported
        if self.committed >= self.paused_at:
            self._signal()

    def on_checkpoint(self) -> bool:
        """Counts a committed checkpoint; False when it came after the
        pause and is not the trial's to resume from."""
        self.committed += 1
        if not self.paused():
            return True
        if self.committed >= self.paused_at:  # type: ignore[operator]
            self._signal()
        return self.committed <= self.paused_at  # type: ignore[operator]

    def paused(self) -> bool:
        return self.stopping == Trial.PAUSED and self.paused_at is not None

    def _signal(self) -> None:
        if not self.signalled and self.proc.poll() is None:
            self.signalled = True
            self.proc.send_signal(signal.SIGINT)

    def close(self) -> None:
        for f in (self.events, self.output):
            try:
                f.close()
            except OSError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


class TrialRunner:
    """Runs a sweep to its end. It owns the Trials; the searcher proposes
    configs, the scheduler picks which trial runs next and judges results."""

    def __init__(
        self,
        trainable: Any,
        *,
        searcher: Any,
        scheduler: TrialScheduler,
        num_samples: int,
        experiment_name: str,
        experiment_path: str,
        cluster_flags: List[str],
        local: bool,
        run_config: RunConfig,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        max_concurrent: int = 0,
        time_budget_s: Optional[float] = None,
        trials: Optional[List[Trial]] = None,
        on_change: Optional[Callable[["TrialRunner"], None]] = None,
    ) -> None:
        self.trainable = trainable
        self.search_alg = searcher
        self.scheduler = scheduler
        self.num_samples = num_samples
        self.name = experiment_name
        self.path = experiment_path
        self.cluster_flags = cluster_flags
        self.local = local
        self.run_config = run_config
        self.metric, self.mode = metric, mode
        self.max_concurrent = max_concurrent
        self.deadline = time.monotonic() + time_budget_s if time_budget_s else None
        self.trials: List[Trial] = list(trials or [])
        self.results: Dict[str, Result] = {}
        self.errors: Dict[str, BaseException] = {}
        self.started_at: Dict[str, float] = {}
        self.iterations: Dict[str, int] = {}
        self.elapsed: Dict[str, float] = {}
        self.jobs: Dict[str, _Job] = {}
        self.searcher_done = False
        self.on_change = on_change
        # Each trial's committed checkpoints, (uri, metrics) oldest first,
        # where the runner applies retention itself (_prune).
        self.stored: Dict[str, List[Tuple[str, Dict[str, Any]]]] = {}
        self.deleting: List[Tuple[subprocess.Popen, str]] = []
        # Each trial's last results (iteration, metrics as reported), and
        # the iteration each checkpoint was made at.
        self.recent: Dict[str, List[Tuple[int, Dict[str, Any]]]] = {}
        self.checkpoint_iteration: Dict[str, int] = {}
        # A paused trial's checkpoint at its pause: the job may have
        # committed later ones before it stopped, and resuming takes this.
        self.resume_at: Dict[str, str] = {}
        for t in self.trials:
            # A restored trial counts on from its last saved result.
            self.iterations[t.trial_id] = int(t.last_result.get(TRAINING_ITERATION, 0) or 0)
            self.elapsed[t.trial_id] = float(t.last_result.get(TIME_TOTAL_S, 0.0) or 0.0)

    # The view schedulers see (TrialRunnerView).
    def get_trials(self) -> List[Trial]:
        return self.trials

    def get_live_trials(self) -> List[Trial]:
        return [t for t in self.trials if not t.is_finished()]

    def stop_trial(self, trial: Trial) -> None:
        job = self.jobs.get(trial.trial_id)
        if job is not None:
            job.stop(Trial.TERMINATED)
            return
        if trial.is_finished():
            return
        self.scheduler.on_trial_remove(self, trial)
        self.search_alg.on_trial_complete(trial.trial_id, trial.last_result or None)
        trial.status = Trial.TERMINATED

    # Creating and starting trials.
    def _new_trial(self) -> bool:
        """Asks the searcher for one more trial; False when it has none now."""
        if self.searcher_done:
            return False
        if len(self.trials) >= self.num_samples:
            # num_samples is the run's trial count (total_trials): a
            # searcher other than the grid would go on suggesting forever.
            self.searcher_done = True
            return False
        trial_id = f"{uuid.uuid4().hex[:5]}_{len(self.trials) + 1:05d}"
        config = self.search_alg.suggest(trial_id)
        if config == "FINISHED" or (config is None and getattr(self.search_alg, "is_finished", lambda: False)()):
            self.searcher_done = True
            return False
        if config is None:
            return False
        trial = Trial(trial_id=trial_id, config=config, experiment_path=self.path)
        variant = getattr(self.search_alg, "variant", None)
        if callable(variant):
            try:
                v = variant(trial_id)
                trial.experiment_tag, trial.evaluated_params = v.experiment_tag, v.evaluated_params
            except KeyError:
                pass
        self.trials.append(trial)
        self.scheduler.on_trial_add(self, trial)
        return True

    def _room(self) -> bool:
        if any(not j.placed for j in self.jobs.values()):
            # A trial not placed yet (just submitted, or held in the
            # cluster's queue): wait for it. Without that a burst of
            # submissions would all count as room.
            return False
        if self.max_concurrent and len(self.jobs) >= self.max_concurrent:
            return False
        return not self._out_of_time()

    def _in_use(self) -> set:
        """The checkpoints a trial may still start from: the scheduler's
        (PBT's exploits), and paused trials' resume points."""
        used = getattr(self.scheduler, "checkpoints_in_use", None)
        # A job started from a checkpoint copies it as it starts: until its
        # first report it may not have.
        starting = {j.started_from for j in self.jobs.values() if j.started_from and not j.reported_once}
        return set(used() if callable(used) else ()) | set(self.resume_at.values()) | starting

    def _prune(self, tid: str, in_use: set) -> None:
        """Deletes the trial's checkpoints that CheckpointConfig does not
        keep, except those in in_use, which a trial may still start from
        (ray#9036: a trial's retention deleted the checkpoint PBT was about
        to copy)."""
        cc = self.run_config.checkpoint_config
        stored = self.stored.get(tid)
        if cc is None or not cc.num_to_keep or not stored or len(stored) <= cc.num_to_keep:
            return
        attr = cc.checkpoint_score_attribute
        sign = 1 if cc.checkpoint_score_order == "max" else -1

        def rank(i: int) -> Tuple[int, float]:
            # Best last: by score where there is one, else by age; those
            # without the score rank below those with it.
            if not attr:
                return (1, i)
            v = stored[i][1].get(attr)
            return (1, sign * v) if isinstance(v, (int, float)) else (0, i)

        order = sorted(range(len(stored)), key=rank)
        keep = set(order[-cc.num_to_keep:]) | {len(stored) - 1}  # the latest always stays, as the engine's rule
        kept: List[Tuple[str, Dict[str, Any]]] = []
        for i, (uri, metrics) in enumerate(stored):
            if i in keep or uri in in_use:
                kept.append((uri, metrics))
                continue
            # In the background: the loop that follows the trials must not
            # wait on storage.
            proc = subprocess.Popen([_binary.binary_path(), "checkpoints", "rm", uri],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            self.deleting.append((proc, uri))
        self.stored[tid] = kept

    def _prune_all(self) -> None:
        cc = self.run_config.checkpoint_config
        if cc is None or not cc.num_to_keep:
            return
        in_use = self._in_use()
        for tid in list(self.stored):
            self._prune(tid, in_use)

    def _reap_deletions(self, wait: bool = False) -> None:
        """Collects finished deletions (all of them with wait), saying which
        failed: the checkpoint stays, and only costs its space."""
        left = []
        for proc, uri in self.deleting:
            if not wait and proc.poll() is None:
                left.append((proc, uri))
                continue
            _, err = proc.communicate()
            if proc.returncode != 0:
                print(f"rtrain.tune: could not delete {uri}: {err.strip()}", file=sys.stderr, flush=True)
        self.deleting = left

    def _out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def trial_name(self, trial: Trial) -> str:
        return f"{_trainable_name(self.trainable)}_{trial.trial_id}"

    def _start(self, trial: Trial) -> None:
        request = trial.take_restore_from()
        if request is not None:
            # It goes on from the source's checkpoint, so from the
            # iteration that checkpoint was made at, as a function
            # trainable restored in Ray does.
            src = request.source_result or {}
            it = self.checkpoint_iteration.get(request.checkpoint, src.get(TRAINING_ITERATION))
            if it is not None:
                self.iterations[trial.trial_id] = int(it)
        restart_from = request.checkpoint if request is not None else self.resume_at.get(trial.trial_id)
        self.resume_at.pop(trial.trial_id, None)
        name = self.trial_name(trial)
        where = self.cluster_flags + ["--group", self.name]
        fn, config, scaling, torch_config = _job_of(self.trainable, trial.config)
        info = {
            "trial_id": trial.trial_id,
            "trial_name": name,
            "trial_dir": os.path.join(self.path, name),
            "experiment_name": self.name,
            "resources": (scaling.resources_per_worker or {}),
            # Where a TorchTrainer the trainable builds runs (Ray V2's style).
            "where": where,
            "local": self.local,
            # When the runner started the trial's job: the benchmark's
            # start latency counts from here.
            "scheduled": time.time(),
        }
        checkpoints = self.run_config.checkpoint_config
        if checkpoints is not None and checkpoints.num_to_keep:
            # Each trial's job would delete checkpoints by its own rule,
            # blind to the trials about to start from them (an exploit, a
            # paused trial's resume): the runner applies the rule instead
            # (_prune).
            checkpoints = dataclasses.replace(checkpoints, num_to_keep=None)
        run = RunConfig(
            name=name,
            # A private cluster keeps its runs in the experiment's
            # directory; a shared one where its head keeps them, unless
            # the sweep names a storage.
            storage_path=self.path if (self.local or self.run_config.storage_path) else None,
            failure_config=self.run_config.failure_config or FailureConfig(),
            checkpoint_config=checkpoints,
        )
        tmp = tempfile.mkdtemp(prefix="rtrain-trial-")
        argv, outcome = _driver.prepare(
            functools.partial(_session._trial_main, fn, info), config, tmp,
            scaling_config=scaling, run_config=run, torch_config=torch_config,
            resume_from_checkpoint=None, name=name, where=where, local=self.local,
            restart_from=restart_from,
        )
        argv += self._display_flags(trial)
        if self.local:
            # On the sweep's own cluster the trial starts in an empty
            # directory of its own, as a Ray trial starts in its trial
            # directory: shipping the driver's (the experiment's storage
            # perhaps inside it, changing as trials end) to every trial
            # would cost each its size and could race with the writes.
            cwd = os.path.join(tmp, "cwd")
            os.mkdir(cwd)
            argv += ["--working-dir", cwd]
        self.jobs[trial.trial_id] = _Job(trial, argv, outcome, tmp, restart_from)
        self.started_at[trial.trial_id] = time.monotonic()
        trial.status = Trial.RUNNING

    def _display_flags(self, trial: Trial) -> List[str]:
        """rtrain fit's --param and --metric flags: what `rtrain jobs` and
        the dashboard show of the trial (its sampled values, else its
        config's scalars) and which metric's best they track."""
        params = trial.evaluated_params or {k: v for k, v in flatten_dict(trial.config).items()
                                            if isinstance(v, (str, int, float, bool)) or v is None}
        flags: List[str] = []
        for key, value in list(params.items())[:_MAX_PARAMS]:
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
            key = "".join(c for c in str(key) if c.isprintable() and c != "=")[:128]
            if key:
                flags += ["--param", f"{key}={''.join(c for c in shown if c.isprintable())[:256]}"]
        if self.metric and self.mode in ("min", "max"):
            flags += ["--metric", self.metric[:128], "--mode", self.mode]
        return flags

    # Following trials.
    def run(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            while True:
                self._launch(sel)
                if not self.jobs:
                    if self._finished() or not self._pending():
                        return
                    # Nothing runs and the scheduler starts none of the
                    # waiting trials (a HyperBand bracket whose other
                    # members ended): they are dropped, as Ray drops the
                    # trials left at a run's end, and the scheduler asked
                    # again; the sweep ends once none is left.
                    for trial in [t for t in self.trials if t.status in (Trial.PENDING, Trial.PAUSED)]:
                        self.stop_trial(trial)
                    continue
                for key, _ in sel.select(timeout=0.5):
                    job, kind = key.data
                    for line in job.lines(key.fd):
                        if line is None:
                            sel.unregister(key.fd)
                            continue
                        if kind == "events":
                            self._event(job, line)
                        else:
                            self._print(job, line)
                for job in [j for j in self.jobs.values() if j.open == 0]:
                    self._ended(job)
                self._reap_deletions()
                if self._out_of_time():
                    for job in self.jobs.values():
                        job.stop(Trial.TERMINATED)
        except KeyboardInterrupt:
            for job in self.jobs.values():
                job.stop(Trial.TERMINATED)
            for job in list(self.jobs.values()):
                job.proc.wait()
                self._ended(job)
            raise
        finally:
            sel.close()
            self._reap_deletions(wait=True)

    def _pending(self) -> bool:
        return any(t.status in (Trial.PENDING, Trial.PAUSED) for t in self.trials)

    def _finished(self) -> bool:
        return (self.searcher_done or self._out_of_time()) and not self._pending() and not self.jobs

    def _launch(self, sel: selectors.BaseSelector) -> None:
        while self._room():
            trial = self.scheduler.choose_trial_to_run(self)
            if trial is None:
                if not self._new_trial():
                    return
                continue
            if trial.trial_id in self.jobs:
                # Paused and chosen again before its job has ended: it
                # starts once that job is gone.
                return
            self._start(trial)
            job = self.jobs[trial.trial_id]
            sel.register(job.events.fileno(), selectors.EVENT_READ, (job, "events"))
            sel.register(job.output.fileno(), selectors.EVENT_READ, (job, "output"))
            self._changed()

    def _print(self, job: _Job, line: bytes) -> None:
        sys.stdout.write(f"({self.trial_name(job.trial)}) {line.decode(errors='replace')}\n")
        sys.stdout.flush()

    def _event(self, job: _Job, line: bytes) -> None:
        try:
            e = json.loads(line)
        except ValueError:
            return
        trial = job.trial
        kind = e.get("type")
        if kind == "state":
            queued = bool(e.get("queued"))
            job.queued = queued
            if queued and not job.said_queued:
                job.said_queued = True
                print(f"rtrain.tune: trial {self.trial_name(trial)} waits: {e.get('message')}", file=sys.stderr, flush=True)
            if e.get("state") not in (None, "PENDING"):
                # Placed, or ended without: either way it holds no place
                # in the queue.
                job.queued = False
                job.placed = True
        elif kind == "checkpoint" and e.get("checkpoint"):
            c = e["checkpoint"]
            self.stored.setdefault(trial.trial_id, []).append((c["uri"], c.get("metrics") or {}))
            if not job.on_checkpoint():
                # Made after the trial's pause: not its resume point.
                self._prune_all()
                return
            if job.paused():
                self.resume_at[trial.trial_id] = c["uri"]
            trial.checkpoint = c["uri"]
            # Its report's iteration: the newest result with its metrics
            # (an upload may finish after later reports).
            for it, metrics in reversed(self.recent.get(trial.trial_id, [])):
                if metrics == c.get("metrics"):
                    self.checkpoint_iteration[c["uri"]] = it
                    break
            self._prune_all()
            # Saved with the result it came with: a restored sweep resumes
            # the trial from here, its iterations counted on.
            self._changed()
        elif kind == "report":
            job.reported_once = True
            if e.get("with_checkpoint"):
                job.reported += 1
            if job.stopping is None:
                self._result(job, e.get("metrics") or {})

    def _result(self, job: _Job, metrics: Dict[str, Any]) -> None:
        trial = job.trial
        tid = trial.trial_id
        self.iterations[tid] = self.iterations.get(tid, 0) + 1
        now = time.monotonic()
        recent = self.recent.setdefault(tid, [])
        recent.append((self.iterations[tid], metrics))
        del recent[:-100]
        # Flattened, as Ray hands results on: {"val": {"loss": x}} is
        # "val/loss".
        result = flatten_dict(metrics)
        result.setdefault(TRAINING_ITERATION, self.iterations[tid])
        result.setdefault(TIME_TOTAL_S, self.elapsed.get(tid, 0.0) + now - self.started_at[tid])
        result.setdefault("trial_id", tid)
        result.setdefault(DONE, False)
        result.setdefault("config", trial.config)
        trial.last_result = result
        if self._should_stop(tid, result):
            decision = TrialScheduler.STOP
        else:
            decision = self.scheduler.on_trial_result(self, trial, result)
        if decision == TrialScheduler.STOP:
            job.stop(Trial.TERMINATED)
            return
        self.search_alg.on_trial_result(tid, result)
        if decision == TrialScheduler.PAUSE:
            # PAUSED for the scheduler at once, as in Ray, though the job
            # takes a moment to end: a synchronous scheduler (HyperBand)
            # halves a bracket only over trials it knows are not running,
            # and a trial it thinks still runs would be handed the
            # verdict meant for the one reporting.
            job.pause()
            trial.status = Trial.PAUSED
            if trial.checkpoint:
                # Its resume point, unless the report's own checkpoint
                # commits (then that one).
                self.resume_at[tid] = trial.checkpoint

    def _should_stop(self, trial_id: str, result: Dict[str, Any]) -> bool:
        stop = self.run_config.stop
        if stop is None:
            return False
        if callable(stop):
            return bool(stop(trial_id, result))
        if isinstance(stop, dict):
            return any(k in result and isinstance(result[k], (int, float)) and result[k] >= v for k, v in stop.items())
        raise ValueError(f"RunConfig(stop={stop!r}): give a dict of metric thresholds or a function (trial_id, result) -> bool")

    def _ended(self, job: _Job) -> None:
        trial = job.trial
        tid = trial.trial_id
        code = job.proc.wait()
        self.elapsed[tid] = self.elapsed.get(tid, 0.0) + time.monotonic() - self.started_at.pop(tid, time.monotonic())
        del self.jobs[tid]
        try:
            outcome = _driver.read_outcome(job.outcome, code)
            result = _driver.result_of(outcome, self.run_config)
        except RuntimeError as err:
            result = Result(metrics=trial.last_result or None, checkpoint=None, error=err)
        finally:
            job.close()
        if result.checkpoint is not None and not job.paused():
            trial.checkpoint = result.checkpoint.path
        self.results[tid] = result
        if job.stopping == Trial.PAUSED:
            trial.status = Trial.PAUSED
            if trial.checkpoint:
                self.resume_at[tid] = trial.checkpoint
        elif job.stopping == Trial.TERMINATED or result.error is None:
            trial.status = Trial.TERMINATED
            if result.error is None and job.stopping is None and trial.last_result:
                trial.last_result = dict(trial.last_result, **{DONE: True})
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
            self.search_alg.on_trial_complete(tid, trial.last_result or None)
            self.errors.pop(tid, None)
        else:
            trial.status = Trial.ERROR
            self.errors[tid] = result.error
            self.scheduler.on_trial_error(self, trial)
            self.search_alg.on_trial_complete(tid, error=True)
        self._say(trial, result)
        self._prune_all()
        self._changed()

    def _say(self, trial: Trial, result: Result) -> None:
        """One line a trial that ended or paused."""
        done = sum(1 for t in self.trials if t.is_finished())
        how = trial.status
        if trial.status == Trial.ERROR and result.error is not None:
            how += ": " + str(result.error).split("\n", 1)[0]
        else:
            shown = {k: v for k, v in (trial.last_result or {}).items()
                     if k not in ("config", "trial_id", DONE, TIME_TOTAL_S) and not isinstance(v, (dict, list))}
            if shown:
                how += " " + " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
        print(f"rtrain.tune: trial {self.trial_name(trial)} {how} ({done} of {len(self.trials)} done)", file=sys.stderr, flush=True)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)


def _is_torch_trainer(trainable: Any) -> bool:
    # rtrain.torch loads torch only when a helper runs: importing it is cheap.
    from rtrain.torch import TorchTrainer

    return isinstance(trainable, TorchTrainer)


def _trainable_name(trainable: Any) -> str:
    if _is_torch_trainer(trainable):
        return "TorchTrainer"
    name = getattr(trainable, "__name__", None) or type(trainable).__name__
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip("._-") or "trainable"


def _job_of(trainable: Any, config: Dict[str, Any]) -> Tuple[Callable[..., Any], Any, ScalingConfig, Optional[Dict[str, Any]]]:
    """A trial's job: the function its workers run, its config, its
    workers, and how to set up torch.distributed (None: not at all)."""
    if _is_torch_trainer(trainable):
        # Ray Train V1's style: Tuner(TorchTrainer(...), param_space=
        # {"train_loop_config": {...}}), the trial's values merged in.
        merged = dict(trainable.train_loop_config or {})
        merged.update(config.get("train_loop_config") or {})
        scaling = config.get("scaling_config") or trainable.scaling_config
        tc = trainable.torch_config
        return trainable.train_loop_per_worker, merged, scaling, {"backend": tc.backend, "timeout_s": tc.timeout_s}
    resources = getattr(trainable, "_rtrain_resources", None)
    if callable(resources):
        resources = resources(config)
    return trainable, config, _scaling(resources), None


def _scaling(resources: Any) -> ScalingConfig:
    """One worker holding what with_resources asked, 1 CPU by default (Ray's)."""
    if resources is None:
        return ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1})
    if not isinstance(resources, dict):
        raise ValueError(f"tune.with_resources: give a dict such as {{'cpu': 2, 'gpu': 1}}, got {type(resources).__name__}")
    # Ray's with_resources spells them cpu and gpu; ScalingConfig CPU and GPU.
    per = {k.upper() if k.lower() in ("cpu", "gpu") else k: v for k, v in resources.items()}
    per.setdefault("CPU", 1)
    return ScalingConfig(num_workers=1, use_gpu=bool(per.get("GPU")), resources_per_worker=per)
