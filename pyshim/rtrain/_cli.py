"""The `rtrain` command a wheel install puts on PATH: it runs the bundled
binary, once it has checked that it is the version the package was built
with."""
import os
import sys


def main() -> None:
    """Replaces this process with the bundled `rtrain`, passing on its
    arguments; prints one line and exits 1 when the binary is missing or is
    another version than the package."""
    from rtrain._binary import binary_path, check_version

    try:
        check_version()
        path = binary_path()
    except RuntimeError as e:
        print(e, file=sys.stderr)
        sys.exit(1)
    os.execv(path, ["rtrain", *sys.argv[1:]])
