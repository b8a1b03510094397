"""``oomscope watch --record`` as a user runs it: a real OOM kill recorded and read back, a real
``kill -9`` of oomscope mid-recording, and a real full disk (a small tmpfs of our own)."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import PY, run_until, v1_memory_writable
from oomscope.core.errors import BadInput
from oomscope.core.events import Output, Samples
from oomscope.core.recording import SessionFile
from oomscope.core.watch.printers import printed
from test_recording_files import digest, remount_read_only, tmpfs

OOMSCOPE = [PY, "-m", "oomscope"]
LEAKER = "import time\nchunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20)); time.sleep(0.004)\n"
# 50 MiB/s: about 5 MiB per 0.1 s sample, so the 16 MiB between warning and critical holds
# samples of its own (the fast leaker can jump over it in one).
STEADY_LEAKER = LEAKER.replace("0.004", "0.02")


def printed_json(f: SessionFile, session_id: int | None = None) -> list[dict[str, Any]]:
    """What ``watch --json`` printed on stdout, rebuilt from the file."""
    out: list[dict[str, Any]] = []
    for ev in f.events(session_id):
        if isinstance(ev, Output) or not printed(ev):
            continue
        out.extend(ev.to_json_lines() if isinstance(ev, Samples) else [ev.to_json()])
    return json.loads(json.dumps(out))


@pytest.mark.cgroup
@pytest.mark.skipif(not v1_memory_writable(), reason="needs root and a writable cgroup v1 memory controller")
def test_round_trip_with_an_oom_kill(tmp_path: Path) -> None:
    path = tmp_path / "oom.db"
    r = subprocess.run([*OOMSCOPE, "watch", "--json", "--record", str(path), "--interval", "0.1",
                        "--mem-limit", "48MiB", "--warn", "16MiB", "--crit", "32MiB", "--sustain", "0",
                        "--metric", "anon", "--duration", "3",
                        "--", PY, "-c", STEADY_LEAKER], capture_output=True, text=True, timeout=60)
    assert r.returncode == 100, r.stderr  # the CI gate's status for an oom-kill
    stdout = [json.loads(line) for line in r.stdout.splitlines()]
    with SessionFile.open(path) as f:
        (info,) = f.sessions()
        assert info.ended is not None and info.command_line is not None and "--record" in info.command_line
        back = printed_json(f)
        assert back == stdout
        exited = [e for e in back if e["event"] == "worker_exited"]
        assert [(e["cause"], e["signal"]) for e in exited] == [("oom-kill", "SIGKILL")]
        oom = exited[0]["oom"]
        assert oom["pid"] == exited[0]["worker"]["pid"] and oom["killer"] == "kernel-memcg"
        assert any(f"Killed process {oom['pid']}" in line for line in oom["lines"])
        assert [e["level"] for e in back if e["event"] == "threshold"][:2] == ["warning", "critical"]
        samples = [e for e in back if e["event"] == "sample"]
        assert len(samples) >= 3 and all(s["cgroup_limit"] == 48 << 20 for s in samples[1:])
        arrays = f.worker_samples(None, "w1")
        assert arrays["rss"].tolist() == [float(s["rss"]) for s in samples]
        # The kernel's own lines of the kill are in the file, as the kernel log pane showed them.
        kernel = [e.line.text for e in f.events() if e.kind == "kernel_line" and e.oom and not e.line.history]
        assert any(f"Killed process {oom['pid']}" in line for line in kernel)


def test_round_trip_of_worker_output(tmp_path: Path) -> None:
    path = tmp_path / "out.db"
    code = "import time\nfor i in range(5): print('tick', i, flush=True); time.sleep(0.05)\n"
    r = subprocess.run([*OOMSCOPE, "watch", "--json", "--record", str(path), "--interval", "0.05",
                        "--", PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    passed = [line.split("] ", 1)[1] for line in r.stderr.splitlines() if line.startswith("[w1 ")]
    with SessionFile.open(path) as f:
        assert [e.line for e in f.events() if isinstance(e, Output)] == passed == [f"tick {i}" for i in range(5)]
        assert printed_json(f) == [json.loads(line) for line in r.stdout.splitlines()]


# ------------------------------------------------------------------ kill -9

class Watch:
    """A ``watch --json`` subprocess whose lines are read as they come."""

    def __init__(self, args: list[str]) -> None:
        self.p = subprocess.Popen([*OOMSCOPE, "watch", "--json", *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        self.lines: list[dict[str, Any]] = []
        self.worker_fds: list[int] = []

    def next_event(self, timeout: float = 20.0) -> dict[str, Any]:
        assert self.p.stdout is not None
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        assert ready, f"watch printed nothing for {timeout} s"
        line = self.p.stdout.readline()
        assert line, "watch ended"
        ev = json.loads(line)
        self.lines.append(ev)
        if ev["event"] == "worker_started":
            # Held from the moment we know the worker: a signal through it can never reach
            # another process that reused the PID.
            self.worker_fds.append(os.pidfd_open(ev["worker"]["pid"]))
        return ev

    def rest(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.append(json.loads(line))

    def kill_workers(self) -> None:
        """Launched workers outlive a kill -9 of oomscope: end them by their pidfds."""
        for fd in self.worker_fds:
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                select.select([fd], [], [], 10)  # readable once the process has exited
            except ProcessLookupError:
                pass
            os.close(fd)
        self.worker_fds = []

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=30)
        self.kill_workers()
        if self.p.stdout is not None:
            self.p.stdout.close()


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    started: list[Watch] = []
    yield started
    for w in started:
        w.close()


def _batches(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(DISTINCT batch) FROM samples").fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # the schema is not there yet
    finally:
        db.close()


def test_kill_9_mid_recording_keeps_every_committed_batch(tmp_path: Path, watches: list[Watch]) -> None:
    path = tmp_path / "crash.db"
    sleeper = f"{PY} -c 'import time; time.sleep(60)'"
    w = Watch(["--record", str(path), "--interval", "0.1", "--run", sleeper, "--run", sleeper])
    watches.append(w)
    last_check = 0.0
    while True:  # until the file holds two committed batches (checked once per second of samples)
        ev = w.next_event()
        if ev["event"] == "sample" and ev["t"] >= last_check + 1.0:
            last_check = ev["t"]
            if _batches(path) >= 2:
                break
    for _ in range(7):  # land the kill somewhere inside the next batch
        w.next_event()
    os.kill(w.p.pid, signal.SIGKILL)  # oomscope itself, our own child
    w.p.wait(timeout=10)
    w.rest()
    w.kill_workers()
    assert len(w.worker_fds) == 0 and sum(e["event"] == "worker_started" for e in w.lines) == 2
    assert Path(f"{path}-wal").exists()  # what SQLite left: the committed batches are in there
    before = (digest(path), digest(Path(f"{path}-wal")))

    with SessionFile.open(path) as f:
        (info,) = f.sessions()
        assert info.ended is None  # it did not end: it was killed
        back = printed_json(f)
    stdout = w.lines
    assert back == stdout[:len(back)]  # what is in the file is exactly what was printed, up to a point
    rec_samples = [e for e in back if e["event"] == "sample"]
    all_samples = [e for e in stdout if e["event"] == "sample"]
    assert len(rec_samples) >= 20
    lost_s = all_samples[-1]["t"] - rec_samples[-1]["t"]
    assert lost_s <= 1.3, f"{lost_s:.2f} s of samples lost (one commit a second, plus its own time)"
    assert info.last_t == pytest.approx(max(e["t"] for e in back), abs=0.2)
    assert (digest(path), digest(Path(f"{path}-wal"))) == before  # reading changed nothing

    listing = subprocess.run([*OOMSCOPE, "export", str(path)], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0 and "(crashed: last data " in listing.stdout, listing.stderr

    # The same crashed file in a read-only directory: with its -shm it opens; without, it says what to do.
    with tmpfs(tmp_path / "ro") as ro:
        for suffix in ("", "-wal", "-shm"):
            shutil.copy(f"{path}{suffix}", ro / f"crash.db{suffix}")
        shutil.copy(path, ro / "noshm.db")
        shutil.copy(f"{path}-wal", ro / "noshm.db-wal")
        remount_read_only(ro)
        with SessionFile.open(ro / "crash.db") as f:
            assert printed_json(f) == back
        with pytest.raises(BadInput, match="copy noshm.db and noshm.db-wal to a writable directory"):
            SessionFile.open(ro / "noshm.db")


# ------------------------------------------------------------------ disk full

def test_disk_full_stops_recording_not_the_session(tmp_path: Path, gate: Any) -> None:
    # The worker floods its output only once the file holds a commit with samples, and says its
    # last word only once watch has told of the full disk and sampled it after that.
    committed, told = gate(), gate()
    flood = (f"import sys\n{committed.wait_code}\nfor i in range(1500): print('x' * 1500)\n"
             f"sys.stdout.flush()\n{told.wait_code}\nprint('after', flush=True)\n")
    stopped = False

    def in_the_file() -> int:
        try:
            with SessionFile.open(path) as f:
                return sum(e["event"] == "sample" for e in printed_json(f))
        except (BadInput, sqlite3.Error):
            return 0  # nothing committed yet

    def sampled_after_the_notice(line: str) -> bool:
        nonlocal stopped
        event = json.loads(line)
        if event["event"] == "notice" and "recording stopped" in event["message"]:
            stopped = True
        elif event["event"] == "sample" and not stopped and in_the_file() >= 3:
            committed.open()  # no event tells of a commit: the file is read at each sample
        return stopped and event["event"] == "sample"

    with tmpfs(tmp_path / "small", size="1m") as small:
        path = small / "s.db"
        r = run_until([*OOMSCOPE, "watch", "--json", "--record", str(path), "--interval", "0.1",
                       "--", PY, "-c", flood], sampled_after_the_notice, told.open)
        assert r.returncode == 0, r.stderr[-2000:]
        stdout = [json.loads(line) for line in r.stdout.splitlines()]
        stops = [i for i, e in enumerate(stdout) if e["event"] == "notice" and "recording stopped" in e["message"]]
        assert len(stops) == 1, [e for e in stdout if e["event"] == "notice"]
        notice = stdout[stops[0]]
        assert notice["level"] == "error"
        assert f"the disk is full ({path}); the session goes on without recording" in notice["message"]
        assert "events after " in notice["message"]
        # The session went on: samples and the worker's exit came after the notice.
        after = stdout[stops[0] + 1:]
        assert any(e["event"] == "sample" for e in after)
        exits = [e for e in after if e["event"] == "worker_exited"]
        assert len(exits) == 1 and exits[0]["cause"] == "exit"
        # Closing the recorder, after the engine stopped, still tells what was lost.
        assert after[-1]["event"] == "notice" and "events not recorded" in after[-1]["message"]
        assert "[w1 python" in r.stderr and "stdout] after" in r.stderr
        with SessionFile.open(path) as f:
            (info,) = f.sessions()
            assert info.ended is None  # could not be marked: the disk was full
            back = printed_json(f)
        assert len(back) >= 5 and back == stdout[:len(back)]
        assert not any(e["event"] == "worker_exited" for e in back)


def test_disk_full_sets_failed_and_keeps_what_was_committed(tmp_path: Path) -> None:
    """The recorder itself on a full disk: ``failed`` for the status bar, the notice from its
    thread, later events taken without complaint, the file good up to the last commit."""
    from oomscope.core.engine import EngineConfig
    from oomscope.core.events import WorkerRef, WorkerStarted
    from oomscope.core.recording import open_recorder
    from oomscope.core.recording.rows import OUTPUT_LINES_PER_WORKER
    from test_recording import Notices

    with tmpfs(tmp_path / "small", size="256k") as small:
        notices = Notices()
        rec = open_recorder(small / "s.db", EngineConfig(), notices, commit_interval_s=0.05)
        ref = WorkerRef("w1", 4242, 1.0, "python3", ("python3", "chatty.py"), True, 1, 1)
        rec(WorkerStarted(1000.0, ref, None, None))
        rec(Output(1000.5, ref, "stdout", "first line"))
        deadline = time.monotonic() + 10
        while rec.batches == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # no event tells of a commit: poll the counter, bounded
        assert rec.batches == 1
        for n in range(OUTPUT_LINES_PER_WORKER):  # ~3.8 MB of output for a 256 KiB disk
            rec(Output(1001.0 + n * 1e-3, ref, "stdout", f"{n:06d} " + "x" * 1900))
        notices.wait_for("recording stopped")
        assert rec.failed == "the disk is full", rec.failed
        rec(Output(2000.0, ref, "stdout", "after the failure"))  # taken, counted, no error
        rec.close()
        assert notices.seen[0][0] == "error" and "recording stopped: the disk is full" in notices.seen[0][1]
        assert "events not recorded" in notices.seen[-1][1]
        with SessionFile.open(small / "s.db") as f:
            (info,) = f.sessions()
            lines = [e.line for e in f.events() if isinstance(e, Output)]
        assert lines == ["first line"] and info.ended is None
