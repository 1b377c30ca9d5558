"""The cluster a sweep's trials run on.

Every trial is a job on one scheduler, so that trials never share a GPU by
accident and a sweep runs as many at once as fit. With an address
(rtrain.init or RTRAIN_ADDRESS) that is the cluster's head. Without one the
sweep starts a private one-node cluster for itself, `rtrain start --head
--with-agent` on loopback, gone when the sweep ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import List, Optional

from rtrain import _binary, _driver, _settings


class SweepCluster:
    """Where trials go: the address flags for `rtrain fit`, and the
    environment that carries the token."""

    def __init__(self, results_dir: str) -> None:
        self._results = results_dir
        self._proc: Optional[subprocess.Popen] = None
        self._state: Optional[str] = None
        self.address = ""

    def __enter__(self) -> "SweepCluster":
        address = _driver._init.get("address") or os.environ.get(_settings.ADDRESS)
        if address:
            self.address = address
            return self
        self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def private(self) -> bool:
        """Whether the sweep started this cluster itself, on this machine."""
        return self._state is not None

    def flags(self) -> List[str]:
        """rtrain fit's flags that reach this cluster. A private head saved
        its join token in its state directory, where `rtrain fit` finds it."""
        if self._state:
            return ["--address", self.address, "--state-dir", self._state]
        return ["--address", self.address]

    def _start(self) -> None:
        _binary.check_version()
        self._state = tempfile.mkdtemp(prefix="rtrain-sweep-")
        argv = [
            _binary.binary_path(), "start", "--head", "--with-agent", "--block",
            "--host", "127.0.0.1", "--port", "0", "--dashboard-port", "-1",
            "--state-dir", self._state, "--results-dir", self._results,
            # The user's own head, on loopback: a fit() inside a trial may
            # store its run wherever the user could.
            "--allow-storage", "/",
        ]
        init = _driver._init
        if init.get("num_cpus") is not None:
            argv += ["--num-cpus", repr(float(init["num_cpus"]))]
        if init.get("num_gpus") is not None:
            argv += ["--num-gpus", str(int(init["num_gpus"]))]
        if init.get("resources"):
            import json

            argv += ["--resources", json.dumps(init["resources"])]
        log = open(os.path.join(self._state, "cluster.log"), "wb")
        self._proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_driver._pdeathsig, start_new_session=True,
        )
        log.close()
        ready = os.path.join(self._state, "head.ready")
        deadline = time.monotonic() + 60
        while not os.path.exists(ready):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(self._state, "cluster.log"), errors="replace") as f:
                    tail = f.read()[-2000:]
                self.close()
                raise RuntimeError(f"rtrain.tune: the sweep's cluster did not start:\n{tail}")
            time.sleep(0.02)
        with open(os.path.join(self._state, "head.addr")) as f:
            self.address = f.read().strip()

    def close(self) -> None:
        """Stops the private cluster, its workers with it."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(30)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._state:
            shutil.rmtree(self._state, ignore_errors=True)
            self._state = None
