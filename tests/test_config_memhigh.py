"""``--mem-high`` and ``[launch] mem_high`` as a user gives them: the settings file's key with its
line, ``oomscope watch`` as a real subprocess (bad input exits 2 before anything starts), and
the real cgroup v1 of this machine, where the throttle is refused with a notice while the worker
runs under its hard limit. The v2 write itself is tested on a faithful tree in test_cgroups.py
and test_memwatch.py (this machine's cgroup v2 has no memory controller)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import PY, v1_memory_writable
from oomscope.core.config import load_config
from oomscope.core.errors import BadInput
from oomscope.core.options import engine_config_from
from oomscope.core.sizes import Level

OOMSCOPE = [PY, "-m", "oomscope"]
MiB = 1 << 20


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.mark.parametrize(("value", "expected"), [
    ('"auto"', Level(fraction=0.9)),
    ('"85%"', Level(fraction=0.85)),
    ('"230MiB"', Level(bytes=230 * MiB)),
    ("false", None),
])
def test_the_settings_file_key(tmp_path: Path, value: str, expected: Level | None) -> None:
    config = load_config(write(tmp_path, f"[launch]\nmem_high = {value}\n"))
    assert config.mem_high == expected


@pytest.mark.parametrize(("value", "advice"), [
    ('"0"', "greater than zero"),
    ('"-5MiB"', "greater than zero"),
    ('"150%"', "at most 100%"),
    ("0.9", '"auto"'),
    ("true", "false for no throttle"),
])
def test_a_bad_settings_value_names_key_and_line(tmp_path: Path, value: str, advice: str) -> None:
    path = write(tmp_path, f"[sampling]\ninterval_s = 1.0\n\n[launch]\nmem_high = {value}\n")
    with pytest.raises(BadInput) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:5: launch.mem_high: "), message
    assert advice in message


def test_an_unknown_launch_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, '[launch]\nmem_hihg = "auto"\n')
    with pytest.raises(BadInput, match=r":2: launch.mem_hihg: unknown key \(did you mean mem_high\?\)"):
        load_config(path)


def _args(**given: str | None) -> argparse.Namespace:
    return argparse.Namespace(**given)


def test_the_command_line_beats_the_file_and_is_checked_against_the_limit(tmp_path: Path) -> None:
    file = load_config(write(tmp_path, '[launch]\nmem_high = "200MiB"\n'))
    assert engine_config_from(_args(), file).mem_high == Level(bytes=200 * MiB)  # no limit typed: kept
    assert engine_config_from(_args(mem_limit="256MiB"), file).mem_high == Level(bytes=200 * MiB)
    assert engine_config_from(_args(mem_high="off", mem_limit="128MiB"), file).mem_high is None
    assert engine_config_from(_args(mem_high="80%", mem_limit="128MiB"), file).mem_high == Level(fraction=0.8)
    with pytest.raises(BadInput, match=rf"^{tmp_path}/config.toml: launch.mem_high: memory.high 200.0 MiB"):
        engine_config_from(_args(mem_limit="128MiB"), file)


def watch(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OOMSCOPE, "watch", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("args", "message"), [
    (["--mem-limit", "64MiB", "--mem-high", "0"], "--mem-high: invalid size '0': a size must be greater than zero"),
    (["--mem-limit", "64MiB", "--mem-high", "-5MiB"], "--mem-high: invalid size '-5MiB'"),
    (["--mem-limit", "64MiB", "--mem-high", "64MiB"], "--mem-high: memory.high 64.0 MiB (64.0 MiB) is not below the memory limit"),
    (["--mem-limit", "64MiB", "--mem-high", "150%"], "--mem-high: invalid percentage '150%'"),
    (["--mem-limit", "64MiB", "--mem-high", "100%"], "is not below the memory limit (64.0 MiB)"),
    (["--mem-high", "auto"], "--mem-high sets a throttle below a memory limit: add --mem-limit SIZE"),
])
def test_bad_input_exits_2_before_anything_starts(tmp_path: Path, args: list[str], message: str) -> None:
    marker = tmp_path / "ran"
    r = watch("--json", *args, "--", PY, "-c", f"open({str(marker)!r}, 'w')")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr, r.stderr
    assert r.stderr.startswith("oomscope watch: ")
    assert "Traceback" not in r.stderr
    assert r.stdout == "" and not marker.exists()


def test_the_gui_takes_the_same_option_and_refuses_the_same_way() -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run([*OOMSCOPE, "--mem-limit", "64MiB", "--mem-high", "70MiB", "--run", "true"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--mem-high: memory.high 70.0 MiB" in r.stderr and "not below the memory limit" in r.stderr


@pytest.mark.cgroup
@pytest.mark.skipif(not v1_memory_writable(), reason="needs a writable cgroup v1 memory controller (root)")
def test_on_real_cgroup_v1_the_throttle_is_refused_and_the_worker_runs_limited() -> None:
    """This machine's memory controller is v1: no memory.high, said once, hard limit kept."""
    code = "import os; print(open('/proc/self/cgroup').read(), flush=True)"
    r = watch("--json", "--mem-limit", "64MiB", "--mem-high", "auto", "--", PY, "-c", code)
    assert r.returncode == 0, r.stderr
    evs = [json.loads(line) for line in r.stdout.splitlines()]
    notices = [e for e in evs if e["event"] == "notice" and "memory.high" in e["message"]]
    assert len(notices) == 1, evs
    assert notices[0]["level"] == "warning"
    assert notices[0]["message"].startswith("memory.high needs cgroup v2: ")
    assert "hard limit of 64.0 MiB alone" in notices[0]["message"]
    started = next(e for e in evs if e["event"] == "worker_started")
    assert started["cgroup_limit"] == 64 * MiB and started["cgroup"].startswith("/oomscope/")
    assert started["worker"]["id"] == notices[0]["worker"]["id"]
    exited = next(e for e in evs if e["event"] == "worker_exited")
    assert (exited["cause"], exited["exit_code"]) == ("exit", 0)
    # The worker's own v1 cgroup was there while it ran (its output says so) and is gone now.
    assert f"memory:{started['cgroup']}" in r.stderr
    assert not os.path.exists("/sys/fs/cgroup/memory" + started["cgroup"])


@pytest.mark.parametrize("command", [["watch", "--help"], ["--help"]])
def test_the_option_is_in_the_help_of_both_front_ends(command: list[str]) -> None:
    """argparse %-formats help texts: a bare % in ours once made --help raise."""
    r = subprocess.run([*OOMSCOPE, *command], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert r.returncode == 0, r.stderr
    assert "--mem-high X" in r.stdout and "auto (90% of the limit)" in " ".join(r.stdout.split())
