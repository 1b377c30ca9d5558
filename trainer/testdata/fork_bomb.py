"""Forks children that sleep until the kernel refuses a fork, then prints
how many it made and why. It stops at 2000 all the same: a missing pids
limit fails the test, not the machine."""
import errno
import os
import signal

CAP = 2000
n, err = 0, "none"
while n < CAP:
    try:
        pid = os.fork()
    except OSError as e:
        err = errno.errorcode[e.errno]
        break
    if pid == 0:
        signal.pause()
        os._exit(0)
    n += 1
print("forked %d then %s" % (n, err), flush=True)
