"""Rank 0 prints a traceback it handled, then keeps working; rank 1 exits
with code 2 a moment later, no exception. Rank 0 did not fail: rtrain
stops it."""
import os
import sys
import time
import traceback

if os.environ["RANK"] == "0":
    try:
        {}["missing"]
    except KeyError:
        traceback.print_exc()
    time.sleep(60)
else:
    time.sleep(1)
    sys.exit(2)
