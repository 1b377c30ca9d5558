"""Debian's torchrun (torch 1.13) on Python 3.11, patched so it starts.

torch 1.13's Std.from_str finds the Std member by iterating over the IntFlag,
and Python 3.11 no longer yields the zero-valued NONE member when iterating,
so the default `--redirects 0` parses to None and torchrun dies at start.
This wrapper replaces that parser with one that builds members by value and
then runs torchrun unchanged. Tests and benchmarks that compare against
torchrun use it; it is not part of rtrain.
"""
import re
import sys

from torch.distributed.elastic.multiprocessing import api


def _from_str(cls, vm):
    if re.fullmatch(r"\d", vm):
        return cls(int(vm))
    if re.fullmatch(r"(\d:\d,)*(\d:\d)", vm):
        return {int(i): cls(int(v)) for i, v in (m.split(":") for m in vm.split(","))}
    raise ValueError(f"{vm} does not match the redirects/tee formats")


api.Std.from_str = classmethod(_from_str)

from torch.distributed.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
