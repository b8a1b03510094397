"""oomscope demo: a slow leaker. Grows 4 MiB a second, crosses warning then critical within a
minute, and at 320 MiB drops everything and starts again."""

import sys
import time

CAP = 320
cache: list[bytes] = []
while True:
    cache.append(b"\x01" * (1 << 20))
    if len(cache) % 40 == 0:
        print(f"slow-leak: cache holds {len(cache)} MiB", file=sys.stderr, flush=True)
    if len(cache) >= CAP:
        print("slow-leak: cache cleared", file=sys.stderr, flush=True)
        cache = []
    time.sleep(0.25)
