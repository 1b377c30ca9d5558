"""Touches 1 GiB: under a smaller --memory-per-worker the kernel kills it."""
b = bytearray(b"\x01") * (1 << 30)
print("still alive with", len(b), "bytes")
