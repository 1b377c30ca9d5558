"""report() and checkpoints: what a worker tells rtrain as training goes."""

import contextlib
import math
import numbers
import os
import shutil
import tempfile
import threading
from typing import Iterator

from rtrain import _channel, _env
from rtrain._context import get_context


class Checkpoint:
    """A directory of files that make up a checkpoint (Ray Train's Checkpoint).

    Make one with Checkpoint.from_directory(path) and pass it to
    rtrain.report(metrics, checkpoint=...). The one get_checkpoint() returns
    in a worker is a local copy of a stored checkpoint. The ones a Result
    holds name stored checkpoints, in a directory or in S3
    (s3://BUCKET/PREFIX/RUN/checkpoint_000003): read one with
    as_directory() or copy it with to_directory().
    """

    def __init__(self, path: "str | os.PathLike[str]", uri: "str | None" = None, index: "int | None" = None) -> None:
        self.path = os.fspath(path)
        self.uri = uri
        self.index = index

    @classmethod
    def from_directory(cls, path: "str | os.PathLike[str]") -> "Checkpoint":
        """The checkpoint made of the files in the local directory path, or
        the stored checkpoint at an s3:// URI."""
        path = os.fspath(path)
        if _remote(path):
            return cls(path, uri=path)
        path = os.path.abspath(path)
        if not os.path.isdir(path):
            raise ValueError(f"rtrain.Checkpoint.from_directory: {path} is not a directory")
        return cls(path)

    @contextlib.contextmanager
    def as_directory(self) -> "Iterator[str]":
        """Yields a local directory holding the checkpoint's files.

        A local checkpoint is read where it is: read from it, do not write to
        it. One in S3 is downloaded (every checksum checked) into a temporary
        directory that is removed when the block ends.
        """
        if not _remote(self.path):
            yield self.path
            return
        tmp = tempfile.mkdtemp(prefix="rtrain-checkpoint-")
        try:
            self._download(tmp)
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def to_directory(self, path: "str | os.PathLike[str] | None" = None) -> str:
        """Copies the checkpoint's files into path (a new temporary
        directory when None) and returns that path."""
        if path is None:
            path = tempfile.mkdtemp(prefix="rtrain-checkpoint-")
        path = os.fspath(path)
        if _remote(self.path):
            self._download(path)
        else:
            shutil.copytree(self.path, path, dirs_exist_ok=True)
        return path

    def _download(self, dest: str) -> None:
        # The binary's checkpoint code reads S3, checking every file's
        # checksum against the manifest: no second S3 client in Python.
        import subprocess

        from rtrain import _binary

        _binary.check_version()
        os.makedirs(dest, exist_ok=True)
        done = subprocess.run(
            [_binary.binary_path(), "checkpoints", "download", self.path, dest],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rtrain.Checkpoint: download {self.path}: {done.stderr.strip()}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Checkpoint) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        if self.uri and self.uri != self.path:
            return f"Checkpoint(uri={self.uri!r}, path={self.path!r})"
        return f"Checkpoint(path={self.path!r})"


def _remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _plain(value, key):
    """Turns a metric value into something JSON carries."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()  # a 0-d torch tensor or numpy scalar
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, key) for k, v in value.items()}
    raise TypeError(f"rtrain.report: metric {key!r} is of type {type(value).__name__}; use numbers, strings, lists or dicts")


_seq = 0
_seq_lock = threading.Lock()


def report(metrics: "dict", checkpoint: "Checkpoint | str | os.PathLike[str] | None" = None) -> None:
    """Reports this worker's metrics, and optionally a checkpoint, to rtrain.

    Every rank calls report at the same point of its loop, as in Ray Train.
    Rank 0's metrics are the job's metrics: rtrain shows them as they arrive.
    Any rank may attach a checkpoint (a Checkpoint or a directory path); the
    files of all ranks of one report become one checkpoint, stored when
    every rank has reported. report returns once rtrain has copied the files
    aside, so the directory may be deleted right after; the upload goes on
    while training does.

    Outside rtrain (plain python or torchrun) it prints rank 0's metrics and
    keeps no checkpoint.
    """
    global _seq
    if not isinstance(metrics, dict):
        raise TypeError(f"rtrain.report: metrics must be a dict, got {type(metrics).__name__}")
    path = ""
    if checkpoint is not None:
        if isinstance(checkpoint, (str, os.PathLike)):
            checkpoint = Checkpoint.from_directory(checkpoint)
        if not isinstance(checkpoint, Checkpoint):
            raise TypeError(
                f"rtrain.report: checkpoint must be an rtrain.Checkpoint or a directory, got {type(checkpoint).__name__}"
            )
        path = os.path.abspath(checkpoint.path)
        if not os.path.isdir(path):
            raise ValueError(f"rtrain.report: checkpoint directory {path} does not exist")
    plain = {str(k): _plain(v, k) for k, v in metrics.items()}
    with _seq_lock:
        _seq += 1
        seq = _seq
    ch = _channel.channel()
    if ch is None:
        if get_context().get_world_rank() == 0:
            print(f"rtrain.report: {plain}", flush=True)
        return
    msg = {"op": "report", "rank": get_context().get_world_rank(), "seq": seq, "metrics": plain}
    if path:
        msg["checkpoint"] = path
    ch.call(msg)


def get_checkpoint() -> "Checkpoint | None":
    """The checkpoint to resume from, or None on a fresh run.

    Under `rtrain fit --resume` (or after a restart) every rank gets the same
    checkpoint: the latest committed one, or the one --resume-from named.
    """
    path = os.environ.get(_env.CHECKPOINT_DIR, "")
    if not path:
        return None
    index = os.environ.get(_env.CHECKPOINT_INDEX, "")
    return Checkpoint(path, uri=os.environ.get(_env.CHECKPOINT_URI) or None, index=int(index) if index else None)
