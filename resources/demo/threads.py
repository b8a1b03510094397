"""oomscope demo (Python fallback of threads.js): one process, three threads, one leaking."""

import threading
import time


def steady(n: int) -> None:
    held = bytearray(8 << 20)
    while True:
        held[0] = n
        time.sleep(0.25)


def leaky() -> None:
    kept: list[bytes] = []
    while True:
        kept.append(b"\x02" * (1 << 20))
        if len(kept) >= 1000:
            kept = []
        time.sleep(1.0)


for n in (1, 2):
    threading.Thread(target=steady, args=(n,), daemon=True).start()
threading.Thread(target=leaky, daemon=True).start()
while True:
    time.sleep(3600)
