"""The worker's connection to its node agent (see pyshim/PROTOCOL.md).

One Unix socket connection per worker process, opened on first use. Each
request is one JSON object on one line; the agent answers each with one line.
"""

import json
import os
import socket
import threading

from rtrain import _env


class AgentError(RuntimeError):
    """The agent refused a request or could not be reached."""


class _Channel:
    def __init__(self, path):
        self._path = path
        self._lock = threading.Lock()
        self._sock = None
        self._file = None

    def _connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self._path)
        except OSError as e:
            sock.close()
            raise AgentError(f"rtrain: cannot reach the rtrain agent at {self._path}: {e}") from e
        self._sock = sock
        self._file = sock.makefile("rwb")
        self._call_locked({"op": "hello", "rank": int(os.environ.get("RANK", "0")), "pid": os.getpid()})

    def _call_locked(self, msg):
        self._file.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
        self._file.flush()
        line = self._file.readline()
        if not line:
            raise AgentError("rtrain: the rtrain agent closed the connection (is the job being stopped?)")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise AgentError(f"rtrain: {reply.get('error', 'the agent refused the request')}")
        return reply

    def call(self, msg):
        with self._lock:
            if self._sock is None:
                self._connect()
            return self._call_locked(msg)


_channel = None
_channel_lock = threading.Lock()


def channel():
    """The process's channel, or None when not running under rtrain."""
    global _channel
    path = os.environ.get(_env.AGENT_ADDR)
    if not path:
        return None
    with _channel_lock:
        if _channel is None:
            _channel = _Channel(path)
        return _channel
