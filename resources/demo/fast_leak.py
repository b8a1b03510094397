"""oomscope demo: a fast leaker. Idles three seconds, then grows 10 MiB a second until the
kernel OOM-kills it inside its memory cgroup. With --rlimit (no cgroup possible) an address
space limit stops it instead: it dies of MemoryError."""

import resource
import sys
import time

if "--rlimit" in sys.argv:
    resource.setrlimit(resource.RLIMIT_AS, (256 << 20, 256 << 20))
print("fast-leak: starting", file=sys.stderr, flush=True)
time.sleep(3)
kept: list[bytes] = []
while True:
    kept.append(b"\x01" * (2 << 20))
    if len(kept) % 10 == 0:
        print(f"fast-leak: {len(kept)} chunks kept", file=sys.stderr, flush=True)
    time.sleep(0.2)
