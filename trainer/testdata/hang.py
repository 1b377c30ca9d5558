"""Every rank reports once, then waits forever in wait_for_peer(): a hang."""
import time

import rtrain


def wait_for_peer():
    while True:
        time.sleep(0.05)


rtrain.report({"step": 1})
wait_for_peer()
