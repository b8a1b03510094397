"""Make the kernel give an old PID to a new process of ours (root: /proc/sys/kernel/ns_last_pid)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable

from conftest import PY

NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"

# A process that blocks SIGTERM, so a SIGTERM sent to it stays visible as pending in
# /proc/PID/status instead of killing it: proof of what was (not) signalled.
BLOCKING_CHILD = (
    "import signal, sys, time\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def can_force_pid() -> bool:
    return os.geteuid() == 0 and os.access(NS_LAST_PID, os.W_OK)


def spawn_with_pid(
    pid: int, start: Callable[..., subprocess.Popen[bytes]], attempts: int = 50
) -> subprocess.Popen[bytes]:
    """A blocking child whose PID is exactly ``pid``; other processes may race us, so retry."""
    for _ in range(attempts):
        with open(NS_LAST_PID, "w") as f:
            f.write(str(pid - 1))
        p = start([PY, "-u", "-c", BLOCKING_CHILD], stdout=subprocess.PIPE)
        assert p.stdout is not None
        assert p.stdout.readline().strip() == b"ready"
        if p.pid == pid:
            return p
        p.kill()
        p.wait()
    raise AssertionError(f"could not get PID {pid} back in {attempts} attempts")


def pending_signals(pid: int) -> int:
    """Bitmask of signals pending for the process (thread-directed and shared)."""
    mask = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("SigPnd:", "ShdPnd:")):
                mask |= int(line.split()[1], 16)
    return mask


def has_pending(pid: int, sig: signal.Signals) -> bool:
    return bool(pending_signals(pid) & (1 << (sig - 1)))
