"""Rank 1 exits with EXIT_CODE (after printing its attempt); the others wait
to be stopped. Needs no torch: a restart test of the orchestration alone."""
import os
import sys
import time

attempt = os.environ["TORCHELASTIC_RESTART_COUNT"]
if os.environ["RANK"] == "1":
    print(f"attempt {attempt}: rank 1 exits", flush=True)
    sys.exit(int(os.environ.get("EXIT_CODE", "3")))
while True:
    time.sleep(0.1)
