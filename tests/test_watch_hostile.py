"""Hostile and absurd input to ``oomscope watch`` and the window's command line (issue 14):
durations that are not durations, a memory limit no machine has, patterns that match everything,
refusals repeated for ever, a hook storm, and process names that are terminal escapes."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ready_child
from oomscope.core.cli import build_parser
from oomscope.core.config import OomscopeConfig, load_config
from oomscope.core.errors import BadInput
from oomscope.core.events import Notice
from oomscope.core.options import engine_config_from
from oomscope.core.sizes import machine_memory, parse_mem_limit
from oomscope.core.watch.hook import EventHook
from test_watch_cli import OOMSCOPE, as_nobody, watch  # noqa: F401 (as_nobody: a fixture)

DURATIONS = ["--interval", "--heap-interval", "--sustain", "--grace"]
WATCH_ONLY_DURATIONS = ["--duration", "--metrics-expire", "--metrics-linger"]


def parse_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What the parser says about ``argv``, which it must refuse with exit code 2."""
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


# ------------------------------------------------------------------------------ durations

@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308", "604801"])
@pytest.mark.parametrize("option", DURATIONS + WATCH_ONLY_DURATIONS)
def test_watch_refuses_durations_out_of_range(option: str, value: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    err = parse_error(["watch", f"{option}={value}", "--run", "true"], capsys)
    assert f"argument {option}:" in err and "and at most 604800 (a week)" in err, err
    assert "too short" not in err and "usage:" not in err


@pytest.mark.parametrize("value", ["nan", "inf", "1e308"])
@pytest.mark.parametrize("option", DURATIONS + ["--after"])
def test_window_refuses_durations_out_of_range(option: str, value: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    err = parse_error([f"{option}={value}"], capsys)
    assert f"argument {option}:" in err and "604800" in err, err


def test_durations_in_range_are_taken(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["watch", "--interval", "604800", "--sustain", "0", "--grace",
                                      "2.5", "--duration", "1e2", "--run", "true"])
    assert (args.interval, args.sustain, args.grace, args.duration) == (604800.0, 0.0, 2.5, 100.0)
    assert "not a number" in parse_error(["watch", "--grace", "soon", "--run", "true"], capsys)


@pytest.mark.parametrize("text", ["[sampling]\ninterval_s = 1e308\n", "[restart]\nbackoff_cap_s = 1e9\n",
                                  "[thresholds]\ngrace_s = 604801\n"])
def test_settings_file_refuses_absurd_durations(tmp_path: Path, text: str) -> None:
    f = tmp_path / "config.toml"
    f.write_text(text)
    with pytest.raises(BadInput, match="at most 604800 \\(a week\\)"):
        load_config(f)


def test_interval_nan_end_to_end() -> None:
    r = watch("--interval", "nan", "--run", "true")
    assert r.returncode == 2
    assert "--interval" in r.stderr and "at least 0.05 and at most 604800" in r.stderr
    assert len(r.stderr.splitlines()) == 2, r.stderr  # the reason and the hint, no usage


# ------------------------------------------------------------------------------ --mem-limit

def test_mem_limit_above_the_machine_is_refused_naming_its_memory() -> None:
    ram, swap = machine_memory()
    assert ram > 0
    r = watch("--mem-limit", "99999TiB", "--run", "echo should-not-run")
    assert r.returncode == 2, r.stderr
    assert "more than this machine has" in r.stderr and "of RAM" in r.stderr
    assert f"at most {(ram + swap) // 2**20}MiB" in r.stderr
    for mechanism in ("cgroup v2", "systemd-run", "cgroup v1"):  # a size problem, not theirs
        assert mechanism not in r.stderr
    assert "should-not-run" not in r.stdout + r.stderr


def test_mem_limit_against_a_given_machine() -> None:
    gib = 2**30
    assert parse_mem_limit("1GiB", (gib, gib)) == gib
    assert parse_mem_limit("2GiB", (gib, gib)) == 2 * gib  # RAM + swap is reachable
    with pytest.raises(BadInput, match=r"1\.0 GiB of RAM \+ 1\.0 GiB of swap = 2\.0 GiB"):
        parse_mem_limit("2049MiB", (gib, gib))
    assert parse_mem_limit("8GiB", (0, 0)) == 8 * gib  # unknown machine: not refused


def test_the_window_and_mem_high_refuse_an_oversized_limit_too() -> None:
    """Both front ends go through engine_config_from; --mem-high with it is not blamed."""
    for high in (None, "50%"):
        args = argparse.Namespace(mem_limit="99999TiB", mem_high=high)
        with pytest.raises(BadInput, match="^--mem-limit: .*more than this machine has"):
            engine_config_from(args, OomscopeConfig())


# ------------------------------------------------------------------------------ --attach, --match

def test_attach_0_says_the_reason_without_the_usage() -> None:
    r = watch("--attach", "0")
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 2 and "'0' is not a PID" in lines[0] and "--help" in lines[1], r.stderr


@pytest.mark.parametrize("pattern", ["", "   ", ".*", "x?"])
def test_a_match_that_matches_everything_is_refused(pattern: str) -> None:
    r = watch("--json", "--match", pattern, "--duration", "5")
    assert r.returncode == 2, r.stdout[-2000:]
    assert "matches every process" in r.stderr
    assert "worker_attached" not in r.stdout


def test_match_never_attaches_oomscope_or_its_ancestors(children) -> None:
    """The shell watch runs in has the pattern in its command line; only the real target is
    taken."""
    marker = f"hostile-marker-{os.getpid()}"
    target = ready_child(children, f"import time; print('ready', flush=True); time.sleep(60)  # {marker}")
    shell = children(["/bin/sh", "-c", f"{' '.join(OOMSCOPE)} watch --json --match {marker} "
                      f"--duration 3; : {marker}"], stdout=subprocess.PIPE, text=True)
    out, _ = shell.communicate(timeout=60)
    attached = [e["worker"]["pid"] for e in map(json.loads, out.splitlines())
                if e["event"] == "worker_attached"]
    assert target.pid in attached  # the pattern works
    assert shell.pid not in attached, attached
    assert len(attached) == 1, attached


def test_not_permitted_is_said_once_per_pid(as_nobody, children) -> None:
    marker = f"root-owned-{os.getpid()}"
    target = ready_child(children, f"import time; print('ready', flush=True); time.sleep(60)  # {marker}")
    # 3 s of rescans (every 0.5 s): the refusal used to come again at each.
    r = subprocess.run([*as_nobody, "watch", "--json", "--match", marker, "--duration", "3"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    told = [e for e in map(json.loads, r.stdout.splitlines())
            if e["event"] == "notice" and f"cannot watch PID {target.pid}" in e["message"]]
    assert len(told) == 1, told
    assert "not permitted" in told[0]["message"]


# ------------------------------------------------------------------------------ --on-event

def hook_timeline(log: Path) -> tuple[int, int]:
    """(hooks started, most running at once) from the ``start PID`` / ``end PID`` lines."""
    running = most = started = 0
    for line in log.read_text().splitlines():
        if line.startswith("start"):
            started += 1
            running += 1
            most = max(most, running)
        else:
            running -= 1
    return started, most


def test_on_event_runs_at_most_8_hooks_at_once(tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    hook = f"echo start $$ >> {log}; cat > /dev/null; sleep 0.3; echo end $$ >> {log}"
    runs = [a for _ in range(30) for a in ("--run", "true")]
    r = watch("--json", "--on-event", hook, *runs, timeout=120)
    assert r.returncode == 0, r.stderr
    hooked = [e for e in map(json.loads, r.stdout.splitlines()) if e["event"] == "worker_exited"]
    assert len(hooked) == 30
    started, most = hook_timeline(log)
    assert started >= 30  # every exit (and whatever else is notable) got its hook
    assert 2 <= most <= 8, most
    assert "dropped" not in r.stderr


def test_on_event_drops_beyond_its_queue_and_says_so_once(tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    release = tmp_path / "release"
    # Each hook waits until the test releases it: the queue fills while the one hook runs.
    hook = f"echo start $$ >> {log}; while [ ! -e {release} ]; do sleep 0.02; done; echo end $$ >> {log}"
    err = io.StringIO()
    h = EventHook(hook, err, finish_timeout_s=30, max_running=1, max_queued=3)
    for i in range(20):
        h.run(Notice(time.time(), "info", f"event {i}"))
    release.touch()
    h.finish()
    started, most = hook_timeline(log)
    assert most == 1
    assert h.dropped == 20 - started and 16 <= h.dropped <= 17, (h.dropped, started)
    said = err.getvalue()
    assert said.count("events are dropped until they catch up") == 1, said
    assert f"{h.dropped} events were dropped" in said


# ------------------------------------------------------------------------------ terminal escapes

RENAME = ("import ctypes, time\n"
          "ctypes.CDLL(None).prctl(15, b'\\x1b[2J\\x1b[31mEVIL', 0, 0, 0)\n"
          "print('ready', flush=True); time.sleep(60)\n")


def test_text_output_escapes_a_process_name_made_of_escapes(children) -> None:
    target = ready_child(children, RENAME)
    assert Path(f"/proc/{target.pid}/comm").read_bytes() == b"\x1b[2J\x1b[31mEVIL\n"
    r = watch("--match", "EVIL", "--duration", "2",
              "--run", "printf 'out \\033]0;TITLE\\007 \\033[2J\\n'; sleep 1")
    assert r.returncode == 0, r.stderr
    assert f"EVIL[{target.pid}] attached" in r.stdout, r.stdout
    assert "\\x1b[2J\\x1b[31mEVIL" in r.stdout  # shown, escaped
    assert "\\x1b]0;TITLE\\x07" in r.stdout  # the worker's output line too
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "\x1b" not in r.stderr


def test_json_mode_escapes_worker_output_on_stderr() -> None:
    r = watch("--json", "--run", "printf 'out \\033[2J\\n'")
    assert r.returncode == 0, r.stderr
    assert "out \\x1b[2J" in r.stderr and "\x1b" not in r.stderr
