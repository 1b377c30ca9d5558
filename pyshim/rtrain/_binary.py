"""The rtrain binary that a wheel install carries, and a check that it is the
one the package was built with.

A wheel holds the binary at rtrain/_bin/rtrain and, in rtrain/_version.py,
the version it was built with; a package run from the source tree has
neither, and skips the check. The module imports only os, and subprocess
when check_version first runs the binary.
"""
from __future__ import annotations

import os

_BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bin", "rtrain")

# What `rtrain version` printed, by binary path: it is run once a process.
_reported: dict[str, str] = {}


class VersionMismatchError(RuntimeError):
    """The bundled binary is another version than the package was built with:
    one of them was replaced after the install."""

    def __init__(self, binary_version: str, binary_path: str, package_version: str, package_path: str) -> None:
        self.binary_version = binary_version
        self.binary_path = binary_path
        self.package_version = package_version
        self.package_path = package_path
        super().__init__(
            f"rtrain: the binary {binary_path} is version {binary_version}, but the package "
            f"{package_path} was built with {package_version}: reinstall the wheel "
            "(make wheel && pip install --force-reinstall dist/rtrain-*.whl)"
        )


def binary_path() -> str:
    """The path of the rtrain binary installed beside this package.

    Raises RuntimeError when there is none: the package was not installed
    from a wheel.
    """
    if not os.path.isfile(_BIN):
        # A worker's package comes from its agent, which names its binary.
        from rtrain import _env

        node = os.environ.get(_env.BINARY)
        if node and os.path.isfile(node):
            return node
        raise RuntimeError(
            f"rtrain: no rtrain binary at {_BIN}: this rtrain package was not installed from a wheel; "
            "run `make wheel && pip install dist/rtrain-*.whl` (or `make run` for Debian's python3)"
        )
    return _BIN


def check_version() -> None:
    """Checks that the bundled binary is the version the package was built with.

    Runs `rtrain version` the first time only. Raises VersionMismatchError
    when the versions differ, RuntimeError when the binary is missing or
    does not run; does nothing for a package without rtrain/_version.py
    (the source tree, not a build of it).
    """
    try:
        import rtrain._version as _version
    except ModuleNotFoundError as e:
        if e.name != "rtrain._version":
            raise
        return
    path = binary_path()
    got = _reported.get(path)
    if got is None:
        got = _reported[path] = _run_version(path)
    if got != _version.binary_version:
        raise VersionMismatchError(got, path, _version.binary_version, os.path.dirname(os.path.abspath(_version.__file__)))


def _run_version(path: str) -> str:
    import subprocess

    try:
        out = subprocess.run([path, "version"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"rtrain: cannot run {path} version: {e}; reinstall the wheel") from e
    version = _parse_version(out.stdout)
    if out.returncode != 0 or version is None:
        said = (out.stdout + out.stderr).strip().splitlines()
        raise RuntimeError(
            f"rtrain: {path} version exited {out.returncode} and said {said[0] if said else 'nothing'!r}, "
            "not 'rtrain VERSION ...': reinstall the wheel"
        )
    return version


def _parse_version(out: str) -> str | None:
    # `rtrain version` prints "rtrain v1.2.3 (commit ..., go1.26 linux/amd64)".
    words = out.split()
    if len(words) < 2 or words[0] != "rtrain":
        return None
    return words[1]
