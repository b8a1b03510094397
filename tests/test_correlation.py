"""Correlation through a kernel log the test writes: late records, other PIDs, comm checks.

The kernel's own OOM records cannot be made to arrive *late* on this machine (/dev/kmsg has
them before the victim's exit is reported). Here the engine reads a pipe in the /dev/kmsg
record format instead, so the test decides when each record arrives; the decoding, the parser
and the matching are the real ones.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import PY, EventLog
from oomscope.core.engine import Engine, EngineConfig
from oomscope.core.oomlog.feed import KernelFeed
from oomscope.core.launch import LaunchSpec
from oomscope.core.oomlog import KernelLine, LineDecoder, SourceState


class PipeKmsg:
    """A live source in /dev/kmsg's record format, fed by the test through a pipe."""

    name = "test-pipe"

    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._decoder = LineDecoder()
        self._seq = 0
        self._partial = b""

    def fileno(self) -> int:
        return self.r

    def read_available(self) -> list[KernelLine]:
        out: list[KernelLine] = []
        while True:
            try:
                data = os.read(self.r, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            parts = (self._partial + data).split(b"\n")
            self._partial = parts.pop()
            for p in parts:
                line = self._decoder.decode(p.decode())
                if line is not None:
                    out.append(line)
        return out

    def write(self, message: str, at_mono_s: float) -> None:
        self._seq += 1
        os.write(self.w, f"3,{self._seq},{int(at_mono_s * 1e6)},-;{message}\n".encode())

    def kill(self, pid: int, comm: str, at: float, memcg: str = "/x") -> None:
        self.write(f"oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
                   f"oom_memcg={memcg},task_memcg={memcg},task={comm},pid={pid},uid=0", at)
        self.write(f"Memory cgroup out of memory: Killed process {pid} ({comm}) total-vm:43292kB, "
                   "anon-rss:32500kB, file-rss:6572kB, shmem-rss:0kB, UID:0 pgtables:120kB oom_score_adj:0", at)

    def close(self) -> None:
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def piped():
    engines: list[Engine] = []

    def make() -> tuple[Engine, EventLog, PipeKmsg]:
        src = PipeKmsg()
        eng = Engine(EngineConfig(interval_s=0.1),
                     kernel_feed=lambda: (KernelFeed(src, []), [SourceState(src.name, True)])).start()
        engines.append(eng)
        return eng, EventLog(eng), src

    yield make
    for e in engines:
        e.stop()


def _sleeper(eng: Engine):
    return eng.launch(LaunchSpec((PY, "-c", "import time; time.sleep(60)"))).result(5)


def test_late_record_upgrades_signal_to_oom_kill(piped) -> None:
    eng, log, src = piped()
    ref = _sleeper(eng)
    log.wait_samples(ref.id)
    os.kill(ref.pid, signal.SIGKILL)
    exited = log.wait_exit(ref.id)
    assert exited.cause == "signal"
    src.kill(ref.pid, "python", time.monotonic())
    upd = log.wait_for(lambda e: e.kind == "cause_updated")
    assert (upd.worker.id, upd.cause, upd.previous) == (ref.id, "oom-kill", "signal")
    assert upd.oom.pid == ref.pid and upd.oom.comm == "python"
    assert upd.to_json()["event"] == "cause_updated"


def test_record_before_exit_is_attached_at_once(piped) -> None:
    eng, log, src = piped()
    ref = _sleeper(eng)
    log.wait_samples(ref.id)
    src.kill(ref.pid, "python", time.monotonic())
    eng.workers().result(5)  # round trip: the record has been read
    os.kill(ref.pid, signal.SIGKILL)
    exited = log.wait_exit(ref.id)
    assert exited.cause == "oom-kill" and exited.oom.pid == ref.pid
    assert not log.of("kernel_oom")


def test_record_for_another_pid_is_kernel_oom_and_changes_nothing(piped) -> None:
    eng, log, src = piped()
    ref = _sleeper(eng)
    log.wait_samples(ref.id)
    os.kill(ref.pid, signal.SIGKILL)
    assert log.wait_exit(ref.id).cause == "signal"
    src.kill(ref.pid + 100000, "python", time.monotonic())
    other = log.wait_for(lambda e: e.kind == "kernel_oom")
    assert other.record.pid == ref.pid + 100000
    assert not log.of("cause_updated")


def test_same_pid_other_comm_is_not_this_worker(piped) -> None:
    eng, log, src = piped()
    ref = _sleeper(eng)
    log.wait_samples(ref.id)
    os.kill(ref.pid, signal.SIGKILL)
    log.wait_exit(ref.id)
    src.kill(ref.pid, "postgres", time.monotonic())
    assert log.wait_for(lambda e: e.kind == "kernel_oom").record.comm == "postgres"
    assert not log.of("cause_updated")


def test_record_far_outside_the_window_is_not_matched(piped) -> None:
    eng, log, src = piped()
    ref = _sleeper(eng)
    log.wait_samples(ref.id)
    os.kill(ref.pid, signal.SIGKILL)
    log.wait_exit(ref.id)
    src.kill(ref.pid, "python", time.monotonic() - 60)
    log.wait_for(lambda e: e.kind == "kernel_oom")
    assert not log.of("cause_updated")


def test_clean_exit_is_never_upgraded(piped) -> None:
    eng, log, src = piped()
    ref = eng.launch(LaunchSpec((PY, "-c", "pass"))).result(5)
    assert log.wait_exit(ref.id).cause == "exit"
    src.kill(ref.pid, "python", time.monotonic())
    log.wait_for(lambda e: e.kind == "kernel_oom")
    assert not log.of("cause_updated")


def test_a_late_record_that_makes_a_crash_loop_cancels_the_announced_restart(piped) -> None:
    """The exit said "restart in 1 s" (a plain SIGKILL); the record that arrives before then
    makes it the slot's second memory death, so the restart is cancelled and says why."""
    from oomscope.core.restart import RestartPolicy

    eng, log, src = piped()
    policy = RestartPolicy(max=5, backoff_initial_s=1.0, crash_loop_kills=1)
    ref = eng.launch(LaunchSpec((PY, "-c", "import time; time.sleep(60)")), policy).result(5)
    log.wait_samples(ref.id)
    os.kill(ref.pid, signal.SIGKILL)
    exited = log.wait_exit(ref.id)
    assert exited.cause == "signal" and exited.restart_in_s == 1.0
    src.kill(ref.pid, "python", time.monotonic())
    updated = log.wait_for(lambda e: e.kind == "cause_updated")
    loop = log.wait_for(lambda e: e.kind == "crash_loop", timeout=10)
    assert loop.worker == ref and loop.deaths == 1 and loop.window_s == policy.crash_loop_window_s
    assert log.events.index(updated) < log.events.index(loop) and "crash loop" in loop.message
    cancelled = log.wait_for(lambda e: e.kind == "restart_cancelled", timeout=10)
    assert cancelled.worker.slot == ref.slot and "crash loop" in cancelled.message
    assert cancelled.to_json()["event"] == "restart_cancelled"
    eng.workers().result(5)
    assert not [e for e in log.events if e.kind == "worker_started" and e.worker.life > 1]
