"""rtrain's own settings that the driver reads, as PROTOCOL.md's table of
rtrain's own variables names them (the worker's are in _env.py)."""

ADDRESS = "RTRAIN_ADDRESS"
