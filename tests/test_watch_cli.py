"""`oomscope watch` as a user runs it: a real subprocess, real workers, real exit codes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import PY, REPO, ready_child, run_until, v1_memory_writable
from oomscope.core.watch import arguments as watch_cli
from oomscope.core.cli import build_parser, join_negative_values
from oomscope.core.sizes import Level

OOMSCOPE = [PY, "-m", "oomscope"]
LEAKER = "import time\nchunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20)); time.sleep(0.004)\n"


def watch(*args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OOMSCOPE, "watch", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def events(stdout: str, *, all_kinds: bool = False) -> list[dict[str, Any]]:
    """Parsed JSON lines; by default only the worker events (no kernel source/kill lines)."""
    evs = [json.loads(line) for line in stdout.splitlines()]
    return evs if all_kinds else [e for e in evs if "worker" in e]


def sample_of(line: str, name: str | None = None, anon: int = 0) -> bool:
    """A JSON line that is a sample (of the worker named ``name``) with at least ``anon`` bytes."""
    e = json.loads(line)
    return (e.get("event") == "sample" and e["anon"] >= anon
            and (name is None or e["worker"]["name"] == name))


def test_json_events_for_a_worker_that_exits(gate) -> None:
    held = gate()
    code = f"b = bytearray(20 << 20); print('working'); {held.wait_code}"
    r = run_until([*OOMSCOPE, "watch", "--json", "--interval", "0.1", "--duration", "30", "--", PY, "-c", code],
                  lambda line: sample_of(line, anon=20 << 20), held.open)
    assert r.returncode == 0, r.stderr
    evs = events(r.stdout)
    kinds = [e["event"] for e in evs]
    assert kinds[0] == "worker_started" and kinds[-1] == "worker_exited"
    assert "sample" in kinds
    for e in evs:
        assert isinstance(e["t"], float)
        assert set(e["worker"]) >= {"id", "pid", "name", "cmd"}
    sample = next(e for e in evs if e["event"] == "sample")
    assert sample["rss"] >= sample["anon"] > 0 and "swap" in sample
    exited = evs[-1]
    assert (exited["cause"], exited["exit_code"], exited["signal"]) == ("exit", 0, None)
    assert "[w1 python" in r.stderr and "stdout] working" in r.stderr  # passed through


def test_console_script_is_installed() -> None:
    script = Path(PY).parent / "oomscope"
    assert script.exists()
    r = subprocess.run([str(script), "watch", "--run", "exit 3"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr  # one launched command: its own exit status
    assert "exited: exit (exit code 3)" in r.stdout
    assert " started: exit 3" in r.stdout


def test_human_output_leaves_samples_out(gate) -> None:
    # The warning line proves samples were taken (and judged) while the worker ran.
    held = gate()
    hold = f'b = bytes(1) * (40 << 20); b = b.replace(bytes(1), b"x"); {held.wait_code}'
    r = run_until([*OOMSCOPE, "watch", "--interval", "0.05", "--warn", "10MiB", "--crit", "off", "--sustain", "0",
                   "--metric", "anon", "--run", f"{PY} -c '{hold}'"], lambda line: "WARNING: anon" in line, held.open)
    lines = r.stdout.splitlines()
    # Not the worker's: the kernel log source, and what a previous oomscope left (machine state).
    lines = [ln for ln in lines if "kernel log source" not in ln and "removed what oomscope" not in ln]
    # started, warning, (back to normal as it frees its memory on the way out,) exited: no sample lines
    assert "started" in lines[0] and "WARNING" in lines[1] and "exited: exit (exit code 0)" in lines[-1], lines
    assert len(lines) == 3 or (len(lines) == 4 and "back to normal" in lines[2]), lines


def test_duration_stops_and_terminates_launched_workers() -> None:
    r = watch("--json", "--duration", "1", "--", "sleep", "60")
    assert r.returncode == 0, r.stderr
    exited = [e for e in events(r.stdout) if e["event"] == "worker_exited"]
    assert len(exited) == 1
    assert (exited[0]["cause"], exited[0]["by"], exited[0]["signal"]) == ("terminated", "oomscope-exit", "SIGTERM")


def test_sigint_stops_cleanly(children) -> None:
    p = children([*OOMSCOPE, "watch", "--json", "--", "sleep", "60"], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    first = json.loads(p.stdout.readline())
    while first["event"] == "source":
        first = json.loads(p.stdout.readline())
    assert first["event"] == "worker_started"
    p.send_signal(signal.SIGINT)
    rest, _ = p.communicate(timeout=30)
    assert p.returncode == 0
    last = events(rest)[-1]
    assert last["event"] == "worker_exited" and last["cause"] == "terminated"
    with pytest.raises(ProcessLookupError):
        os.kill(first["worker"]["pid"], 0)


def test_on_crit_terminate_from_the_command_line() -> None:
    grow = "import time\nc = []\nfor _ in range(300):\n    c.append(bytearray(1 << 20)); time.sleep(0.01)\ntime.sleep(60)\n"
    r = watch("--json", "--interval", "0.05", "--warn", "40MiB", "--crit", "80MiB", "--metric", "anon",
              "--on-crit", "terminate", "--grace", "1", "--", PY, "-c", grow)
    assert r.returncode == 101, r.stderr  # a policy terminated a worker
    evs = events(r.stdout)
    levels = [e["level"] for e in evs if e["event"] == "threshold"]
    assert levels[:2] == ["warning", "critical"]
    term = next(e for e in evs if e["event"] == "terminate")
    assert term["by"] == "policy" and term["signal"] == "SIGTERM"
    assert evs[-1]["cause"] == "terminated" and evs[-1]["by"] == "policy"


@pytest.mark.cgroup
@pytest.mark.skipif(not v1_memory_writable(), reason="needs root and a writable cgroup v1 memory controller")
def test_mem_limit_oom_kill_from_the_command_line() -> None:
    r = watch("--json", "--interval", "0.05", "--mem-limit", "64MiB", "--", PY, "-c", LEAKER)
    assert r.returncode == 100, r.stderr  # a worker died of oom-kill
    evs = events(r.stdout)
    started = evs[0]
    assert started["cgroup_limit"] == 64 << 20
    assert any(e.get("cgroup_limit") == 64 << 20 for e in evs if e["event"] == "sample")
    assert (evs[-1]["cause"], evs[-1]["signal"]) == ("oom-kill", "SIGKILL")


def test_children_of_from_the_command_line(children) -> None:
    code = (
        "import os, sys, time\n"
        "r, w = os.pipe()\n"
        "kids = []\n"
        "for _ in range(2):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        # Each child waits for its go, and gives up after 30 s, so a failing test (whose
        # fixture kills only the parent) leaves no orphan behind.
        "        import select; select.select([r], [], [], 30); os._exit(0)\n"
        "    kids.append(pid)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline(); os.write(w, b'x')\n"
        "for k in kids: os.waitpid(k, 0)\n"
        "time.sleep(60)\n"
    )
    parent = children([PY, "-u", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert parent.stdout is not None and parent.stdin is not None
    assert parent.stdout.readline().strip() == b"ready"
    w = children([*OOMSCOPE, "watch", "--json", "--children-of", str(parent.pid), "--duration", "20"],
                 stdout=subprocess.PIPE, text=True)
    assert w.stdout is not None
    attached = []
    while len(attached) < 2:
        e = json.loads(w.stdout.readline())
        if e["event"] == "worker_attached":
            attached.append(e)
    assert all(e["parent_pid"] == parent.pid for e in attached)
    parent.stdin.write(b"go\n")
    parent.stdin.flush()
    exited = []
    while len(exited) < 2:
        e = json.loads(w.stdout.readline())
        if e["event"] == "worker_exited":
            exited.append(e)
    assert sorted(e["worker"]["pid"] for e in exited) == sorted(e["worker"]["pid"] for e in attached)
    # Their parent collects them: the pidfd gives their status (Linux 6.15+).
    assert all((e["cause"], e["exit_code"]) == ("exit", 0) for e in exited)
    # The parent lives on, so watch keeps following it: stop it as a user would.
    w.send_signal(signal.SIGINT)
    w.communicate(timeout=30)
    assert w.returncode == 0


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("args, text", [
    (["--attach", str(2**22 + 999)], "no process with PID"),
    (["--attach", "1"], "init"),
    (["--attach", "abc"], "not a PID"),
    (["--attach", "-4"], "not a PID"),
    (["--warn", "-5MiB", "--run", "true"], "greater than zero"),
    (["--crit", "150%", "--run", "true"], "at most 100%"),
    (["--warn", "abc", "--run", "true"], "invalid size 'abc'"),
    (["--warn", "2GiB", "--crit", "1GiB", "--run", "true"], "must be below"),
    (["--warn", "90%", "--crit", "80%", "--run", "true"], "must be below"),
    (["--mem-limit", "-5MiB", "--run", "true"], "greater than zero"),
    (["--run", ""], "empty command"),
    (["--run", "true", "--interval", "0.001"], "at least 0.05 and at most 604800"),
    (["--run", "true", "--heap-interval", "-1"], "argument --heap-interval: -1 is not allowed"),
    (["--run", "true", "--sustain", "-2"], "sustain"),
    (["--run", "true", "--hysteresis", "80%"], "hysteresis"),
    (["--run", "true", "--hysteresis", "abc"], "percentage"),
    ([], "nothing to watch"),
    (["--crit", "off", "--on-crit", "terminate", "--run", "true"], "needs a critical level"),
    (["--metric", "bytes", "--run", "true"], "invalid choice"),
    (["--record", "/nonexistent-dir/x.db", "--run", "true"], "/nonexistent-dir"),
    (["--metrics-port", "70000", "--run", "true"], "70000"),
    (["--metrics-port", "9100", "--metrics-addr", "no such host!", "--run", "true"], "no such host!"),
    (["--match", "(", "--run", "true"], "regular expression"),
    (["--", "/nonexistent/program"], "command not found"),
])
def test_bad_input_exits_2_with_a_message(args: list[str], text: str) -> None:
    r = watch(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert text in r.stderr
    assert "Traceback" not in r.stderr


def test_a_restart_that_cannot_start_ends_watch(tmp_path: Path) -> None:
    """The program removes itself and fails: the announced restart cannot start, and watch,
    which waited for it, says so and ends instead of waiting for ever."""
    prog = tmp_path / "once.sh"
    prog.write_text('#!/bin/sh\nrm -f "$0"\nexit 3\n')
    prog.chmod(0o755)
    r = watch("--json", "--restart", "2", "--", str(prog), timeout=30)
    assert r.returncode == 3, r.stderr  # the command's own status: its only life exited 3
    events = [json.loads(line) for line in r.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert "worker_exited" in kinds and kinds[-1] == "restart_cancelled", kinds
    assert "restart failed" in events[-1]["message"] and "not found" in events[-1]["message"]


def test_bad_pid_launches_nothing() -> None:
    """An error in --attach is found before any --run worker starts."""
    r = watch("--json", "--attach", str(2**22 + 998), "--", "sleep", "60")
    assert r.returncode == 2
    assert "worker_started" not in r.stdout


def test_own_pid_refused() -> None:
    script = f"exec {' '.join(OOMSCOPE)} watch --attach $$"
    r = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "oomscope itself" in r.stderr


def test_zombie_refused(children) -> None:
    z = children([PY, "-c", "pass"])
    os.waitid(os.P_PID, z.pid, os.WEXITED | os.WNOWAIT)  # exited, deliberately not reaped
    r = watch("--attach", str(z.pid))
    assert r.returncode == 2 and "zombie" in r.stderr


def test_open_of_a_missing_file_exits_2_and_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    r = subprocess.run([*OOMSCOPE, "open", str(missing)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert r.returncode == 2, r.stderr
    assert str(missing) in r.stderr and "Traceback" not in r.stderr
    assert not missing.exists()  # opening never creates the file


# -------------------------------------------------- as an unprivileged user

@pytest.fixture
def as_nobody() -> Iterator[list[str]]:
    """A command prefix running this checkout's oomscope as uid 65534 with the system Python."""
    if os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs root, setpriv and /usr/bin/python3 to run oomscope as nobody")
    top = tempfile.mkdtemp(prefix="oomscope-nobody-")
    try:
        os.chmod(top, 0o755)
        os.symlink(REPO, os.path.join(top, "oomscope"))
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                  "env", f"PYTHONPATH={top}", "/usr/bin/python3", "-m", "oomscope"]
        probe = subprocess.run([*prefix, "--help"], capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            pytest.skip(f"this checkout is not readable by nobody: {probe.stderr.strip()[-200:]}")
        yield prefix
    finally:
        shutil.rmtree(top)


def test_process_we_may_not_signal(as_nobody, children) -> None:
    target = ready_child(children, "import time; print('ready', flush=True); time.sleep(60)")
    r = subprocess.run([*as_nobody, "watch", "--attach", str(target.pid)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"not permitted to signal PID {target.pid} (owned by uid 0)" in r.stderr
    assert target.poll() is None


def test_mem_limit_where_no_cgroup_can_be_made(as_nobody) -> None:
    r = subprocess.run([*as_nobody, "watch", "--mem-limit", "64MiB", "--run", "echo should-not-run"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "cgroup" in r.stderr and "should-not-run" not in r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_heap_events_at_the_asked_rate(children) -> None:
    p = children([*OOMSCOPE, "watch", "--json", "--heap-interval", "0.1", "--duration", "60", "--",
                  "node", "-e", "setInterval(() => {}, 1000)"], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    heaps: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    while len(heaps) < 8 or not samples:  # a sample taken after the reports began
        line = p.stdout.readline()
        assert line, "watch ended before 8 heap events"
        e = json.loads(line)
        if e["event"] == "heap":
            heaps.append(e)
        elif e["event"] == "sample" and heaps:
            samples.append(e)
    p.send_signal(signal.SIGINT)  # our own watch: it stops and terminates node
    p.communicate(timeout=30)
    assert p.returncode == 0
    # About 10 a second, not the default 1: the spacing, not a count in a fixed time.
    gaps = sorted(b["t"] - a["t"] for a, b in zip(heaps, heaps[1:]))
    assert gaps[len(gaps) // 2] < 0.4, gaps
    assert all(e["thread_id"] == 0 and e["runtime"] == "node" for e in heaps)
    assert samples[-1]["heap_source"] == "reported" and samples[-1]["heap_used"] > 0


def test_settings_file_and_command_line(tmp_path, gate) -> None:
    """Levels and a per-worker override from --config; an option given on the command line wins."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        '[thresholds]\nwarn = "30MiB"\ncrit = false\nmetric = "anon"\nsustain_s = 0\n'
        '[sampling]\ninterval_s = 0.05\n'
        '[workers."quiet-worker"]\nwarn = "1GiB"\n'
    )
    first, second = gate(), gate()
    # Each holds 60 MiB, past the 30 MiB level, until the test has seen a sample of it that high.
    hold = "b = bytes(1) * (60 << 20); b = b.replace(bytes(1), b\"x\"); {}"
    seen: set[str] = set()

    def both_high(line: str) -> bool:
        if sample_of(line, anon=60 << 20):
            seen.add(json.loads(line)["worker"]["id"])
        return seen == {"w1", "w2"}

    r = run_until([*OOMSCOPE, "watch", "--json", "--config", str(cfg),
                   "--run", f"{PY} -c '{hold.format(first.wait_code)}'",
                   "--run", f"{PY} -c '{hold.format(first.wait_code)}' quiet-worker"], both_high, first.open)
    assert r.returncode == 0, r.stderr
    warned = {e["worker"]["id"] for e in events(r.stdout) if e["event"] == "threshold"}
    assert warned == {"w1"}  # w2 matches the override's 1 GiB
    r = run_until([*OOMSCOPE, "watch", "--json", "--config", str(cfg), "--warn", "off",
                   "--run", f"{PY} -c '{hold.format(second.wait_code)}'"],
                  lambda line: sample_of(line, anon=60 << 20), second.open)
    assert r.returncode == 0, r.stderr
    assert not [e for e in events(r.stdout) if e["event"] == "threshold"]


def test_bad_settings_file_names_key_and_line(tmp_path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[thresholds]\nwarn = "75%"\ncrit = "150%"\n')
    r = watch("--config", str(cfg), "--run", "true")
    assert r.returncode == 2 and f"{cfg}:3: thresholds.crit" in r.stderr, r.stderr
    missing = watch("--config", str(tmp_path / "nope.toml"), "--run", "true")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_print_config_loads_back(tmp_path) -> None:
    r = subprocess.run([*OOMSCOPE, "watch", "--print-config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "[thresholds]" in r.stdout
    (tmp_path / "c.toml").write_text(r.stdout)
    ok = watch("--config", str(tmp_path / "c.toml"), "--run", "true")
    assert ok.returncode == 0, ok.stderr


def test_restart_from_the_command_line(tmp_path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("[restart]\nbackoff_initial_s = 0.1\nbackoff_cap_s = 0.2\n")
    r = watch("--json", "--config", str(cfg), "--restart", "2", "--", PY, "-c", "import sys; sys.exit(1)")
    assert r.returncode == 1, r.stderr  # the last life's own exit status
    starts = [e for e in events(r.stdout) if e["event"] == "worker_started"]
    assert [e["worker"]["life"] for e in starts] == [1, 2, 3]
    assert len({e["worker"]["slot"] for e in starts}) == 1
    notes = [e["message"] for e in events(r.stdout, all_kinds=True) if e["event"] == "notice"]
    assert any("no restarts left" in n for n in notes)


def test_on_event_hook_gets_each_notable_event_as_json(tmp_path, gate) -> None:
    out = tmp_path / "events.jsonl"
    held = gate()
    hold = f'b = bytes(1) * (40 << 20); b = b.replace(bytes(1), b"x"); {held.wait_code}'
    r = run_until([*OOMSCOPE, "watch", "--warn", "10MiB", "--crit", "off", "--sustain", "0", "--metric", "anon",
                   "--interval", "0.05", "--on-event", f"cat >> {out}", "--run", f"{PY} -c '{hold}'"],
                  lambda line: "WARNING: anon" in line, held.open)
    assert r.returncode == 0, r.stderr
    # Hooks run side by side (the README says so): on a busy machine the threshold's `cat` may
    # append after the exit's, so the events' own times give their order. A kernel OOM kill
    # elsewhere on the machine (another test run's cgroup) is hooked too, rightly: it is left out.
    got = sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda e: e["t"])
    assert all(e["event"] == "kernel_oom" for e in got if "worker" not in e), got
    kinds = [e["event"] for e in got if "worker" in e]
    assert "threshold" in kinds and kinds[-1] == "worker_exited" and kinds.count("worker_exited") == 1, kinds
    assert all(k in ("threshold", "worker_exited") for k in kinds), kinds
    bad = watch("--on-event", "exit 7", "--warn", "1MiB", "--sustain", "0", "--run", "true")
    assert bad.returncode == 0 and "exited with code 7" in bad.stderr


# ------------------------------------------------------------------ command line over settings file

MiB = 1 << 20

# (option, typed, settings-file table, key, TOML value, what the engine gets: typed, from the file,
# built in). One table for both front ends: test_gui_app runs it through the window's path.
OPTION_CASES: list[tuple[str, str, str, str, str, Any, Any, Any]] = [
    ("--warn", "40MiB", "thresholds", "warn", '"30MiB"',
     Level(bytes=40 * MiB), Level(bytes=30 * MiB), Level(fraction=0.75)),
    ("--warn", "off", "thresholds", "warn", '"30MiB"', None, Level(bytes=30 * MiB), Level(fraction=0.75)),
    ("--crit", "2GiB", "thresholds", "crit", '"1GiB"',
     Level(bytes=2 << 30), Level(bytes=1 << 30), Level(fraction=0.9)),
    ("--crit", "off", "thresholds", "crit", '"1GiB"', None, Level(bytes=1 << 30), Level(fraction=0.9)),
    ("--metric", "anon", "thresholds", "metric", '"heap"', "anon", "heap", "rss"),
    ("--on-warn", "terminate", "thresholds", "on_warn", '"notify"', "terminate", "notify", "none"),
    ("--on-crit", "none", "thresholds", "on_crit", '"terminate"', "none", "terminate", "notify"),
    ("--sustain", "0.5", "thresholds", "sustain_s", "7", 0.5, 7.0, 2.0),
    ("--hysteresis", "10%", "thresholds", "hysteresis", '"20%"', 0.1, 0.2, 0.05),
    ("--grace", "1.5", "thresholds", "grace_s", "9", 1.5, 9.0, 3.0),
    ("--interval", "0.2", "sampling", "interval_s", "0.3", 0.2, 0.3, 1.0),
    ("--heap-interval", "0.25", "sampling", "heap_interval_s", "0.4", 0.25, 0.4, 1.0),
]


def engine_value(config: Any, option: str) -> Any:
    """The engine's setting that ``option`` sets."""
    if option in ("--interval", "--heap-interval"):
        return getattr(config, option[2:].replace("-", "_") + "_s")
    if option == "--grace":
        assert config.grace_s == config.thresholds.grace_s  # a terminate by hand waits as long
        return config.thresholds.grace_s
    field = {"--sustain": "sustain_s", "--hysteresis": "hysteresis"}.get(option, option[2:].replace("-", "_"))
    return getattr(config.thresholds, field)


def precedence_files(tmp_path: Path, table: str, key: str, value: str) -> tuple[Path, Path]:
    with_key, empty = tmp_path / "set.toml", tmp_path / "empty.toml"
    with_key.write_text(f"[{table}]\n{key} = {value}\n")
    empty.write_text("# nothing set: the built-in defaults\n")
    return with_key, empty


@pytest.mark.parametrize("option, typed, table, key, value, from_cli, from_file, default", OPTION_CASES)
def test_watch_option_beats_the_file_which_beats_the_default(
        tmp_path: Path, option: str, typed: str, table: str, key: str, value: str,
        from_cli: Any, from_file: Any, default: Any) -> None:
    with_key, empty = precedence_files(tmp_path, table, key, value)

    def config(*argv: str) -> Any:
        args = build_parser().parse_args(join_negative_values(["watch", *argv, "--run", "true"]))
        return watch_cli.config_from_args(args)[0]

    assert engine_value(config("--config", str(with_key), option, typed), option) == from_cli
    assert engine_value(config("--config", str(with_key)), option) == from_file
    assert engine_value(config("--config", str(empty)), option) == default


def test_crit_alone_below_the_default_warning_moves_the_warning_down() -> None:
    """Issue #13: `--crit 60%` alone is a lower critical level, not a clash with the 75% default."""
    notices: list[str] = []
    args = build_parser().parse_args(["watch", "--crit", "60%", "--run", "true"])
    config = watch_cli.config_from_args(args, notices)[0]
    assert config.thresholds.crit == Level(fraction=0.6)
    assert config.thresholds.warn == Level(fraction=0.5)  # the defaults' proportion, 75 to 90
    assert len(notices) == 1 and "75%" in notices[0] and "50%" in notices[0] and "--warn" in notices[0]
    # A warning level that is already below stays where it is, and nothing is said.
    quiet: list[str] = []
    args = build_parser().parse_args(["watch", "--crit", "80%", "--run", "true"])
    assert watch_cli.config_from_args(args, quiet)[0].thresholds.warn == Level(fraction=0.75) and not quiet


def test_crit_alone_as_a_user_runs_it_tells_and_watches() -> None:
    r = watch("--json", "--crit", "60%", "--interval", "0.05", "--run", "true")
    assert r.returncode == 0, r.stderr
    notices = [e for e in events(r.stdout, all_kinds=True) if e["event"] == "notice"]
    assert any("50%" in e["message"] and "--warn" in e["message"] for e in notices), r.stdout
    # Both given, and wrong: the user's own levels clash, and that stays an error.
    both = watch("--warn", "75%", "--crit", "60%", "--run", "true")
    assert both.returncode == 2 and "warning level 75% must be below critical level 60%" in both.stderr


def test_a_missing_command_is_exit_2_and_not_restarted() -> None:
    r = watch("--json", "--restart", "3", "--run", "no_such_command_xyz", timeout=30)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "no worker could be started" in r.stderr and "no_such_command_xyz" in r.stderr
    evs = events(r.stdout)
    assert [e["event"] for e in evs if e["event"] in ("worker_started", "worker_exited")] == \
        ["worker_started", "worker_exited"]
    exited = next(e for e in evs if e["event"] == "worker_exited")
    assert (exited["cause"], exited["exit_code"], exited.get("restart_in_s")) == ("exit", 127, None)
    assert exited["evidence"][0].startswith("command not found: ")


def test_one_missing_command_beside_a_started_one_is_a_failed_worker() -> None:
    # Not "no worker could be started" (2): one ran; the missing one failed by itself (the gate's 1).
    r = watch("--json", "--run", "no_such_command_xyz", "--run", "exit 0", timeout=30)
    assert r.returncode == 1, (r.stdout, r.stderr)
    causes = sorted((e["exit_code"], bool(e["evidence"])) for e in events(r.stdout)
                    if e["event"] == "worker_exited")
    assert causes == [(0, False), (127, True)]


def test_children_of_ends_when_its_parent_is_gone_and_no_child_is_left(children, gate) -> None:
    """Issue #14: watch --children-of ran for ever after saying no child could come. A child
    that outlives its parent is still followed to its end; then watch ends by itself."""
    held = gate()  # opened at teardown too: a failing test leaves no orphan waiting
    code = (
        "import os, sys\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        f"    {held.wait_code}\n"
        "    os._exit(0)\n"
        "print(pid, flush=True)\n"
        "sys.stdin.readline()\n"  # the parent exits at the test's word, leaving its child
    )
    parent = children([PY, "-u", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert parent.stdout is not None and parent.stdin is not None
    child = int(parent.stdout.readline())
    w = children([*OOMSCOPE, "watch", "--json", "--children-of", str(parent.pid)],
                 stdout=subprocess.PIPE, text=True)
    assert w.stdout is not None
    seen: list[dict[str, Any]] = []
    while not any(e["event"] == "worker_attached" for e in seen):
        seen.append(json.loads(w.stdout.readline()))
    assert [e["worker"]["pid"] for e in seen if e["event"] == "worker_attached"] == [child]
    parent.stdin.write(b"\n")
    parent.stdin.flush()
    while not any(e["event"] == "notice" and "has exited" in e["message"] for e in seen):
        seen.append(json.loads(w.stdout.readline()))
    assert w.poll() is None  # the child lives on: so does watch
    held.open()
    rest, _ = w.communicate(timeout=20)  # before: TimeoutExpired, watch never ended
    assert w.returncode == 0
    assert [json.loads(line)["worker"]["pid"] for line in rest.splitlines()
            if json.loads(line)["event"] == "worker_exited"] == [child]
