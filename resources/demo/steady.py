"""oomscope demo: a steady worker. Holds its working set and churns a little per "request"."""

import sys
import time

held = bytearray(40 << 20)
for i in range(0, len(held), 4096):
    held[i] = 1
requests = 0
while True:
    scratch = bytearray(2 << 20)
    held[requests % len(held)] = scratch[0]
    requests += 1
    if requests % 240 == 0:
        print(f"steady: {requests} requests served", file=sys.stderr, flush=True)
    time.sleep(0.25)
