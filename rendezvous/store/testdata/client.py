# Drives torch's own TCPStore client against the server at 127.0.0.1:argv[1]
# and prints "ok". Keys get the client's "/" prefix on the wire.
import sys
from datetime import timedelta

from torch.distributed import TCPStore

port = int(sys.argv[1])
s = TCPStore("127.0.0.1", port, 1, False, timedelta(seconds=20))
# The constructor ADDed 1 to "init/" (world size given, wait_for_workers).

s.set("k", "v1")
assert s.get("k") == b"v1", s.get("k")
s.set("k", b"\x00\xffbytes")
assert s.get("k") == b"\x00\xffbytes"

assert s.add("n", 5) == 5
assert s.add("n", -2) == 3
assert s.get("n") == b"3"

s.wait(["k", "n"])
s.wait(["k"], timedelta(seconds=5))
try:
    s.wait(["missing"], timedelta(milliseconds=200))
    raise AssertionError("wait for a missing key returned")
except RuntimeError as e:  # torch 1.13 raises a timeout as RuntimeError
    assert "imeout" in str(e) or "imed out" in str(e), e

assert s.compare_set("cas", "", "first") == b"first"
assert s.compare_set("cas", "first", "second") == b"second"
assert s.compare_set("cas", "wrong", "third") == b"second"
assert s.compare_set("nokey", "x", "y") == b"x"

assert s.num_keys() == 4, s.num_keys()  # init/, /k, /n, /cas
assert s.delete_key("k") is True
assert s.delete_key("k") is False

# A second client sees the first one's keys, and get waits for a key.
s2 = TCPStore("127.0.0.1", port, None, False, timedelta(seconds=20))
assert s2.get("cas") == b"second"

s.set("left", "from-python")
print("ok", flush=True)
