"""``oomscope oom-log``: through ``run()`` and as a real process (``python -m ...oomlog.cli``)."""

from __future__ import annotations

import argparse
import io
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from oomscope.core.oomlog import CONTRACT_FIELDS, cli

CORPUS = Path(__file__).resolve().parent / "data" / "oom-corpus"
NODE_DMESG = CORPUS / "local-6.18-memcg-v1-node.dmesg.log"
BURST = CORPUS / "public-k8s-memcg-burst-seven-kills.dmesg.log"
MODULE = "oomscope.core.oomlog.cli"


def run_cli(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(parser.parse_args(list(argv)), out, err)
    return code, out.getvalue(), err.getvalue()


def test_table_output() -> None:
    code, out, err = run_cli(str(NODE_DMESG))
    assert (code, err) == (0, "")
    header, row = out.splitlines()
    assert header.split() == ["TIME", "KILLER", "PID", "COMM", "ANON-RSS", "MEMCG"]
    assert row.split() == ["[663.895592]", "kernel-memcg", "6356", "node", "63.2", "MiB", "/research_oom_node"]


def test_json_output_is_one_contract_object_per_kill() -> None:
    code, out, _ = run_cli("--json", str(BURST), str(NODE_DMESG))
    assert code == 0
    objs = [json.loads(line) for line in out.splitlines()]
    assert len(objs) == 8
    assert all(tuple(o) == CONTRACT_FIELDS for o in objs)
    assert [o["pid"] for o in objs[:2]] == [140339, 141313]
    assert objs[-1]["lines"][-1].endswith("UID:0 pgtables:580kB oom_score_adj:0")


def test_empty_input_says_no_kills(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("")
    assert run_cli(str(empty)) == (0, "no OOM kills found\n", "")
    report_only = CORPUS / "public-5.4-dmesg-T-callbacks-suppressed-meminfo.log"
    assert run_cli(str(report_only))[:2] == (0, "no OOM kills found\n")


def test_unreadable_and_unknown_files_exit_2_naming_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("shopping list\nmilk\n")
    code, out, err = run_cli(str(junk))
    assert code == 2 and out == ""
    assert str(junk) in err and "no known log format" in err and "dmesg > FILE" in err
    code, _, err = run_cli(str(tmp_path / "missing.log"))
    assert code == 2 and "missing.log: no such file" in err
    # Good files are still printed; the status says one failed.
    code, out, err = run_cli(str(NODE_DMESG), str(junk))
    assert code == 2 and "6356" in out and "notes.txt" in err


def test_follow_needs_the_live_log() -> None:
    code, _, err = run_cli("--follow", str(NODE_DMESG))
    assert code == 2 and "--follow" in err


def test_live_replay_without_path() -> None:
    if not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("no readable /dev/kmsg here")
    code, out, err = run_cli("--json")
    assert code == 0
    for line in out.splitlines():
        if line != "no OOM kills found":
            obj = json.loads(line)
            assert obj["killer"].startswith("kernel") and obj["wall_time"] is not None


# --- as a real process --------------------------------------------------------------------------
def _module(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", MODULE, *argv], input=stdin, capture_output=True,
                          timeout=60, check=False)


def test_process_exit_codes() -> None:
    ok = _module("--json", str(NODE_DMESG))
    assert ok.returncode == 0 and json.loads(ok.stdout)["pid"] == 6356
    missing = _module("/nonexistent/kern.log")
    assert missing.returncode == 2 and b"/nonexistent/kern.log: no such file" in missing.stderr
    binary = _module(sys.executable)
    assert binary.returncode == 2 and b"binary data" in binary.stderr
    empty = _module("-", stdin=b"")
    assert (empty.returncode, empty.stdout) == (0, b"no OOM kills found\n")


def test_process_reads_stdin_as_a_stream() -> None:
    done = _module("--json", "-", stdin=(CORPUS / "public-5.x-syslog-global-no-uid-resolved-reaper.syslog").read_bytes())
    assert done.returncode == 0
    assert [json.loads(x)["comm"] for x in done.stdout.splitlines()] == ["python3", "(resolved)"] * 2


def test_console_script_when_installed() -> None:
    exe = shutil.which("oomscope", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the oomscope console script is not installed in this environment")
    done = subprocess.run([exe, "oom-log", "--json", str(NODE_DMESG)], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pid"] == 6356


# --- live follow with a real OOM kill in a cgroup of our own -------------------------------------
MEMCG_ROOT = Path("/sys/fs/cgroup/memory")


@pytest.fixture
def small_memcg() -> Iterator[Path]:
    if os.geteuid() != 0 or not os.access(MEMCG_ROOT, os.W_OK):
        pytest.skip("needs root and a writable cgroup v1 memory controller")
    cg = MEMCG_ROOT / f"oomscope-oomlog-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    cg.mkdir()
    try:
        (cg / "memory.limit_in_bytes").write_text(str(32 << 20))
        memsw = cg / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            memsw.write_text(str(32 << 20))  # no swap escape: the kernel must kill
        yield cg
    finally:
        for _ in range(100):
            try:
                cg.rmdir()
                break
            except OSError:
                procs = (cg / "cgroup.procs").read_text().split()
                if not procs:
                    continue
                with selectors.DefaultSelector() as sel:  # wait for our dead leaker to be reaped
                    sel.select(0.05)


LEAKER = "import sys\nb = []\nwhile True:\n    b.append(bytearray(1 << 20))\n"


@pytest.mark.cgroup
def test_follow_prints_a_real_kill_as_it_happens(small_memcg: Path) -> None:
    # SIGINT as from a terminal: a suite run in the background (nohup … &) has it ignored,
    # and a child inherits that (this test failed so, the follower deaf to its Ctrl-C).
    follower = subprocess.Popen([sys.executable, "-m", MODULE, "--follow", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    leaker: subprocess.Popen[bytes] | None = None
    try:
        assert follower.stderr is not None and follower.stdout is not None
        # Synchronise on the follower saying it follows (after its replay), not on time.
        while b"following" not in (line := follower.stderr.readline()):
            assert line, "oom-log ended before following"
        # The shell moves itself into the cgroup, then becomes the leaker (same pid).
        leaker = subprocess.Popen(
            ["sh", "-c", 'echo $$ > "$1" && exec "$2" -c "$3"', "sh",
             str(small_memcg / "cgroup.procs"), sys.executable, LEAKER],
        )
        t_kill = None
        deadline = time.monotonic() + 30
        os.set_blocking(follower.stdout.fileno(), False)
        buf = b""
        found = None
        with selectors.DefaultSelector() as sel:
            sel.register(follower.stdout, selectors.EVENT_READ)
            while found is None:
                left = deadline - time.monotonic()
                assert left > 0, "no kill record for the leaker within 30 s"
                sel.select(left)
                buf += follower.stdout.read() or b""
                *done, buf = buf.split(b"\n")
                for raw in done:
                    obj = json.loads(raw)
                    if obj["pid"] == leaker.pid:
                        found = obj
        assert leaker.wait(timeout=30) == -signal.SIGKILL
        t_kill = found["kernel_time_s"]
        assert found["killer"] == "kernel-memcg"
        assert found["comm"].startswith("python")
        assert found["oom_memcg"] == "/" + small_memcg.name and found["task_memcg"] == found["oom_memcg"]
        assert found["anon_rss_kb"] > 0 and t_kill is not None and found["wall_time"] is not None
    finally:
        if leaker is not None and leaker.poll() is None:
            leaker.kill()
            leaker.wait()
        follower.send_signal(signal.SIGINT)
        try:
            # Drain both pipes while it exits: a follower blocked writing to a full pipe (every
            # kill of a busy machine's other jobs goes to its stdout) cannot act on Ctrl-C.
            os.set_blocking(follower.stdout.fileno(), True)
            _out, err = follower.communicate(timeout=10)
            assert follower.returncode == 0, err.decode(errors="replace")[-2000:]
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait()
            for stream in (follower.stdout, follower.stderr):
                if stream is not None:
                    stream.close()
