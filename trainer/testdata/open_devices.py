"""Opens every device node in $DEV_DIR and prints, as one JSON line, the
errno of each open with the GPU environment rtrain gave this worker.

With $SYNC_DIR set, it first waits (at most a minute) until $SYNC_COUNT
workers have written their name there: the opens then happen while every
one of them runs.
"""
import errno
import json
import os
import sys
import time

sync = os.environ.get("SYNC_DIR")
if sync:
    with open(os.path.join(sync, "%s-%s" % (os.environ["RTRAIN_RUN_NAME"], os.environ["RANK"])), "w"):
        pass
    deadline = time.time() + 60
    while len(os.listdir(sync)) < int(os.environ["SYNC_COUNT"]):
        if time.time() > deadline:
            sys.exit("the other workers never came")
        time.sleep(0.05)

opens = {}
devdir = os.environ["DEV_DIR"]
for name in sorted(os.listdir(devdir)):
    try:
        os.close(os.open(os.path.join(devdir, name), os.O_RDWR))
        opens[name] = "ok"
    except OSError as e:
        opens[name] = errno.errorcode[e.errno]
print(json.dumps({
    "rank": int(os.environ["RANK"]),
    "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "NVIDIA_VISIBLE_DEVICES": os.environ.get("NVIDIA_VISIBLE_DEVICES"),
    "RTRAIN_CUDA_DEVICE": os.environ.get("RTRAIN_CUDA_DEVICE"),
    "open": opens,
}), flush=True)
