"""``oom-log`` on hostile input: NUL holes, endless lines, empty and compressed input, terminal
escapes in what the log says. Real files, real ``oomscope oom-log`` processes."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import stat
import subprocess
import sys
import time
from pathlib import Path

from oomscope.core.oomlog.reader import MAX_LINE, LineStats, iter_text_lines

CORPUS = Path(__file__).resolve().parent / "data" / "oom-corpus"
NODE_DMESG = CORPUS / "local-6.18-memcg-v1-node.dmesg.log"
MODULE = "oomscope.core.oomlog.cli"
KILLED_LINE = b"Memory cgroup out of memory: Killed process 6356"


def _run(*argv: str, stdin: bytes | None = None, cwd: Path | None = None) -> tuple[int, str, str, float, float]:
    """oom-log as a process: (exit code, stdout, stderr, seconds, peak RSS in MiB of that process)."""
    out_path = Path(cwd or "/tmp") / f"oomlog-out-{os.getpid()}-{time.monotonic_ns()}"
    err_path = out_path.with_suffix(".err")
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", MODULE, *argv], stdout=out, stderr=err,
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin)
            proc.stdin.close()
        # wait4 gives this one child's peak RSS (RUSAGE_CHILDREN would be the largest of all
        # children this test process ever had).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - t0
    try:
        return (proc.returncode, out_path.read_text(errors="replace"), err_path.read_text(errors="replace"),
                seconds, usage.ru_maxrss / 1024)
    finally:
        out_path.unlink()
        err_path.unlink()


def _baseline_rss_mib() -> float:
    """The peak RSS of oom-log reading a small ordinary log: the interpreter and its imports."""
    return _run("--json", str(NODE_DMESG))[4]


def test_a_nul_hole_costs_no_memory_and_the_kill_after_it_is_read(tmp_path: Path) -> None:
    # A syslog file after a crash: a hole of NULs (50 MiB here), then the kernel's next line
    # written where the hole ends, on the same "line".
    log = NODE_DMESG.read_bytes()
    at = log.index(b"[  663.895592] " + KILLED_LINE)
    path = tmp_path / "kern.log"
    with open(path, "wb") as f:
        f.write(log[:at])
        f.write(bytes(50 << 20))
        f.write(log[at:])
    base = _baseline_rss_mib()
    code, out, err, seconds, rss = _run("--json", str(path), cwd=tmp_path)
    assert code == 0, err
    rec, = [json.loads(x) for x in out.splitlines()]
    assert (rec["pid"], rec["anon_rss_kb"], rec["task_memcg"]) == (6356, 64768, "/research_oom_node")
    assert err == f"oom-log: {path}: removed NUL bytes from 1 line (a hole left in the file by a crash, or binary data)\n"
    # Flat memory: the hole is never held (before, it was held several times over: 3x its size).
    assert rss < base + 20, f"peak RSS {rss:.0f} MiB for a 50 MiB hole (an ordinary log: {base:.0f} MiB)"
    assert seconds < 10


def test_a_gzip_of_nuls_is_binary_data_read_in_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "zeros.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        block = bytes(1 << 20)
        for _ in range(64):
            f.write(block)
    base = _baseline_rss_mib()
    code, out, err, seconds, rss = _run(str(path), cwd=tmp_path)
    assert code == 2 and out == ""
    assert f"{path}: binary data: no kernel log or OOM message recognised" in err
    assert rss < base + 20, f"peak RSS {rss:.0f} MiB for 64 MiB of NULs (an ordinary log: {base:.0f} MiB)"
    assert seconds < 10


def test_an_endless_line_is_skipped_with_one_notice(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_bytes(b"x" * (8 << 20) + b"\n" + NODE_DMESG.read_bytes() + b"y" * (MAX_LINE + 1) + b"\n")
    code, out, err, _, _ = _run("--json", str(path), cwd=tmp_path)
    assert code == 0
    assert json.loads(out)["pid"] == 6356
    assert err == f"oom-log: {path}: skipped 2 lines longer than 64 KiB (kernel log lines are under 1 KiB: binary data?)\n"


class _Trickle(io.RawIOBase):
    """A stream that hands out its data a few bytes at a time, as a pipe may."""

    def __init__(self, data: bytes, rng: random.Random) -> None:
        self._data = data
        self._pos = 0
        self._rng = rng

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self._rng.choice((1, 7, 4096, MAX_LINE - 3, MAX_LINE + 5, 3 * MAX_LINE)),
                len(self._data) - self._pos)
        buf[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


def test_line_splitting_is_exact_wherever_reads_end() -> None:
    rng = random.Random(14)
    for _ in range(30):
        lines = []
        for _ in range(rng.randint(0, 40)):
            kind = rng.random()
            if kind < 0.5:
                lines.append(b"[ 1.0] ordinary \xc3\xa9 line %d" % rng.randint(0, 999))
            elif kind < 0.7:
                lines.append(bytes(rng.randint(1, 3 * MAX_LINE)) + b"after a hole")
            elif kind < 0.8:
                lines.append(bytes(rng.randint(1, 100)))
            elif kind < 0.9:
                lines.append(b"z" * rng.randint(MAX_LINE - 2, 3 * MAX_LINE))
            else:
                lines.append(b"")
        data = b"\n".join(lines) + rng.choice((b"", b"\n"))
        stats = LineStats()
        got = list(iter_text_lines(io.BufferedReader(_Trickle(data, rng), 1 << 16), stats))
        # Every line its newline ends, and the last one if it has text; NULs removed; none
        # longer than MAX_LINE.
        *ended, last = [x.replace(b"\x00", b"") for x in data.split(b"\n")]
        whole = ended + ([last] if last else [])
        assert got == [x.decode() for x in whole if len(x) <= MAX_LINE]
        assert stats.overlong == sum(len(x) > MAX_LINE for x in whole)
        assert stats.nul_lines == sum(b"\x00" in x for x in data.split(b"\n"))


def test_empty_input_is_no_kills_from_a_file_or_stdin_plain_or_gzip(tmp_path: Path) -> None:
    """One rule: input with no line of text (nothing, blank lines, an empty gzip) is "no OOM
    kills found", exit 0, whether it comes as a file or on standard input."""
    empties = {"empty": b"", "blank": b"\n \n\r\n", "empty.gz": gzip.compress(b""), "blank.gz": gzip.compress(b"\n\n")}
    for name, data in empties.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert _run(str(path))[:3] == (0, "no OOM kills found\n", ""), name
        assert _run("-", stdin=data)[:3] == (0, "no OOM kills found\n", ""), f"{name} on stdin"
    if stat.S_ISCHR(os.stat(os.devnull).st_mode):  # bench_gui once replaced it (QSettings' rename)
        assert _run(os.devnull)[:3] == (0, "no OOM kills found\n", "")
    # A compressed log on stdin is read as the same file is (no zcat needed).
    code, out, _, _, _ = _run("--json", "-", stdin=gzip.compress(NODE_DMESG.read_bytes()))
    assert code == 0 and json.loads(out)["pid"] == 6356


def test_human_output_escapes_what_the_log_says(tmp_path: Path) -> None:
    evil = "\x1b[2J\x1b[31mEVIL"
    path = tmp_path / "kern.log"
    path.write_text(NODE_DMESG.read_text().replace("(node)", f"({evil})").replace("task=node", f"task={evil}")
                    .replace("/research_oom_node", "/x\x1b]0;title\x07"))
    code, out, err, _, _ = _run(str(path), cwd=tmp_path)
    assert code == 0, err
    row = out.splitlines()[1]
    assert "\\x1b[2J\\x1b[31mEVIL" in row and "/x\\x1b]0;title\\x07" in row
    assert not any(c < " " for c in out.replace("\n", "")), repr(out)
    # JSON keeps the text as it was (json escapes it).
    code, out, _, _, _ = _run("--json", str(path), cwd=tmp_path)
    assert json.loads(out)["comm"] == evil and "\x1b" not in out
