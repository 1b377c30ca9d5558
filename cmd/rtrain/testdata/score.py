"""Reports {"score": X} for each argument X that is a number, {"note": X} for any other: a sweep's trial that takes no time."""
import sys

import rtrain

for a in sys.argv[1:]:
    try:
        rtrain.report({"score": float(a)})
    except ValueError:
        rtrain.report({"note": a})
