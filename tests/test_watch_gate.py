"""`oomscope watch` as a CI gate (issue 16): real workers under real cgroup limits give the
documented exit status, the summary on stderr, a summary file, a JUnit file valid against the
Jenkins/Ant schema, and GitHub Actions annotations."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from conftest import PY, REPO, run_until, v1_memory_writable

OOMSCOPE = [PY, "-m", "oomscope"]
SCHEMA = etree.XMLSchema(etree.parse(str(REPO / "tests" / "data" / "junit.xsd")))
NODE = shutil.which("node")
PY_LEAKER = "import time\nchunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20)); time.sleep(0.004)\n"
# Buffers in timer callbacks, so the heap reporter speaks (and the doctor with it) before the kill.
NODE_LEAKER = "const a = []; setInterval(() => a.push(Buffer.alloc(16 << 20, 1)), 60);"
needs_cgroup = pytest.mark.skipif(not v1_memory_writable(),
                                  reason="needs root and a writable cgroup v1 memory controller")


class Run:
    """One gated watch run and what it left: status, stdout, stderr, summary file, JUnit tree."""

    def __init__(self, r: subprocess.CompletedProcess[str], tmp: Path) -> None:
        self.status = r.returncode
        self.stdout = r.stdout
        self.stderr = r.stderr
        self.summary: dict[str, Any] = json.loads((tmp / "summary.json").read_text())
        self.junit = etree.parse(str(tmp / "junit.xml"))
        SCHEMA.assertValid(self.junit)  # raises with the schema's complaint

    @property
    def cases(self) -> list[Any]:
        return self.junit.findall(".//testcase")

    def failures(self) -> list[Any]:
        return self.junit.findall(".//testcase/failure")

    def errors(self) -> list[str]:
        """The ``::error`` workflow commands: on stdout, or on stderr with ``--json``."""
        return [ln for ln in (self.stdout + self.stderr).splitlines() if ln.startswith("::error ")]


def gated(tmp: Path, *args: str, github: bool = True, until: Any = None, then: Any = None,
          extra_env: dict[str, str] | None = None) -> Run:
    argv = [*OOMSCOPE, "watch", "--interval", "0.05", "--summary", str(tmp / "summary.json"),
            "--junit", str(tmp / "junit.xml"), *args]
    env = {**os.environ, "GITHUB_ACTIONS": "true" if github else "false", **(extra_env or {})}
    if until is not None:
        return Run(run_until(argv, until, then, env=env), tmp)
    return Run(subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env), tmp)


def sample_of(line: str, anon: int) -> bool:
    e = json.loads(line) if line.startswith("{") else {}
    return e.get("event") == "sample" and e["anon"] >= anon


def only_worker(run: Run) -> dict[str, Any]:
    (w,) = run.summary["workers"]
    assert isinstance(w, dict)
    return w


@pytest.mark.cgroup
@needs_cgroup
def test_python_leaker_oom_killed_fails_with_the_memory_status(tmp_path: Path) -> None:
    run = gated(tmp_path, "--mem-limit", "64MiB", "--", PY, "-c", PY_LEAKER)
    assert run.status == 100, run.stderr
    w = only_worker(run)
    assert w["exit"]["cause"] == "oom-kill" and w["exit"]["signal"] == "SIGKILL"
    assert "Killed process" in w["exit"]["kill_line"] and str(w["worker"]["pid"]) in w["exit"]["kill_line"]
    assert w["cgroup_limit"] == 64 << 20 and w["peak"]["cgroup"] > 48 << 20
    assert w["time_above_s"]["warning"] >= w["time_above_s"]["critical"] >= 0
    assert [f["kind"] for f in w["failures"]] == ["oom-kill"]
    assert run.summary["exit_status"] == 100
    (failure,) = run.failures()
    assert failure.get("type") == "oom-kill" and "Killed process" in failure.text
    assert "summary: 1 worker(s), 1 failed; exit status 100" in run.stderr
    assert "kernel: " in run.stderr and "Killed process" in run.stderr
    (error,) = run.errors()
    assert error.startswith("::error title=oomscope%3A w1 python") and "oom-kill::" in error
    assert "Killed process" in error and "\n" not in error


@pytest.mark.cgroup
@needs_cgroup
@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_node_leaker_oom_killed_with_the_doctors_advice(tmp_path: Path) -> None:
    assert NODE is not None
    run = gated(tmp_path, "--heap-interval", "0.05", "--mem-limit", "160MiB", "--", NODE, "-e", NODE_LEAKER)
    assert run.status == 100, run.stderr
    w = only_worker(run)
    assert w["exit"]["cause"] == "oom-kill" and "(node)" in w["exit"]["kill_line"]
    # 75 % of 160 MiB: the seed's rule, in the summary, the log and the annotations.
    assert any(a["suggested"] == "--max-old-space-size=120" for a in w["doctor"]), w["doctor"]
    assert w["heap_limit"] and w["peak"]["heap"]
    assert "doctor: set --max-old-space-size=120" in run.stderr
    assert any(ln.startswith("::warning title=oomscope%3A w1 node doctor::set --max-old-space-size=120")
               for ln in run.stdout.splitlines())
    (failure,) = run.failures()
    assert failure.get("type") == "oom-kill" and "oom-kill:constraint=CONSTRAINT_MEMCG" in failure.text
    assert len(run.errors()) == 1


def test_clean_worker_passes(tmp_path: Path) -> None:
    run = gated(tmp_path, "--", PY, "-c", "print('fine')")
    assert run.status == 0, run.stderr
    w = only_worker(run)
    assert w["exit"]["cause"] == "exit" and w["exit"]["exit_code"] == 0 and w["failures"] == []
    assert len(run.cases) == 1 and run.failures() == []
    assert run.junit.getroot().get("failures") == "0"
    assert run.errors() == []
    assert "exit status 0 (passed)" in run.stderr


def test_worker_exiting_3_gives_its_own_status(tmp_path: Path) -> None:
    run = gated(tmp_path, "--json", "--", PY, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)")
    assert run.status == 3, run.stderr
    # --json: stdout is the events, nothing else; the summary and the annotations go to stderr.
    assert all(json.loads(ln)["event"] for ln in run.stdout.splitlines())
    assert any(ln.startswith("::error ") for ln in run.stderr.splitlines())
    w = only_worker(run)
    assert w["exit"]["exit_code"] == 3 and [f["kind"] for f in w["failures"]] == ["exit"]
    (failure,) = run.failures()
    assert failure.get("type") == "exit" and "stderr: boom" in failure.text
    assert run.junit.find(".//system-err").text == "boom"
    (error,) = run.errors()
    assert "exit code 3" in error
    assert "exit status 3 (the command's own exit status)" in run.stderr


def test_worker_over_budget_fails_though_it_lived(tmp_path: Path, gate: Any) -> None:
    held = gate()
    hold = f"b = bytearray(48 << 20); b[::4096] = b'x' * len(b[::4096]); {held.wait_code}"

    def big(line: str) -> bool:
        return sample_of(line, 48 << 20)

    run = gated(tmp_path, "--json", "--metric", "anon", "--budget", "32MiB", "--", PY, "-c", hold,
                until=big, then=held.open)
    assert run.status == 103, run.stderr
    w = only_worker(run)
    assert w["exit"]["exit_code"] == 0
    assert w["alert_peak"] >= 48 << 20 and run.summary["budget"] == "32.0 MiB"
    assert [f["kind"] for f in w["failures"]] == ["budget"]
    (failure,) = run.failures()
    assert failure.get("type") == "budget" and "passed the budget 32.0 MiB" in failure.get("message")
    (error,) = run.errors()
    assert "budget::" in error
    # The same run under a budget it keeps passes: the budget, not the memory, failed it.
    held2 = gate()
    hold2 = hold.replace(held.path, held2.path)
    again = gated(tmp_path, "--json", "--metric", "anon", "--budget", "200MiB", "--", PY, "-c", hold2,
                  until=big, then=held2.open)
    assert again.status == 0, again.stderr
    assert again.failures() == []


def test_policy_terminate_and_several_workers(tmp_path: Path) -> None:
    grow = "import time\nc = []\nfor _ in range(300):\n    c.append(bytearray(1 << 20)); time.sleep(0.01)\ntime.sleep(60)\n"
    run = gated(tmp_path, "--warn", "20MiB", "--crit", "40MiB", "--metric", "anon", "--sustain", "0",
                "--on-crit", "terminate", "--grace", "1", "--run", f"{PY} -c 'print(1)'", "--", PY, "-c", grow)
    assert run.status == 101, run.stderr
    kinds = {w["worker"]["slot"]: [f["kind"] for f in w["failures"]] for w in run.summary["workers"]}
    assert kinds == {1: [], 2: ["terminated"]}
    assert len(run.cases) == 2 and len(run.failures()) == 1
    # Chosen away, a policy's terminate is the command's own death: with two workers, status 1.
    run = gated(tmp_path, "--fail-on", "oom-kill", "--warn", "20MiB", "--crit", "40MiB", "--metric", "anon",
                "--sustain", "0", "--on-crit", "terminate", "--grace", "1", "--run", f"{PY} -c 'print(1)'",
                "--", PY, "-c", grow, github=False)
    assert run.status == 1, run.stderr
    assert run.errors() == []  # GITHUB_ACTIONS is not "true"


def test_fail_on_critical_and_a_signal_status(tmp_path: Path, gate: Any) -> None:
    held = gate()
    burst = f"b = bytearray(40 << 20); b[::4096] = b'x' * len(b[::4096]); {held.wait_code}"
    run = gated(tmp_path, "--json", "--fail-on", "critical", "--crit", "20MiB", "--metric", "anon",
                "--sustain", "0", "--", PY, "-c", burst,
                until=lambda line: json.loads(line).get("level") == "critical", then=held.open)
    assert run.status == 102, run.stderr
    assert [f["kind"] for f in only_worker(run)["failures"]] == ["critical"]
    # A single command killed by a signal: 128+N, as a shell says it.
    run = gated(tmp_path, "--", PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGUSR1)")
    assert run.status == 128 + 10, run.stderr
    assert only_worker(run)["exit"]["signal"] == "SIGUSR1"


def test_compare_with_a_baseline(tmp_path: Path, gate: Any) -> None:
    def held_run(*args: str, code: str = "") -> Run:
        # The gate's path comes through the environment: the command line, by which the
        # baseline finds the worker again, is the same in every run.
        held = gate()
        wait = 'import fcntl, os; fcntl.flock(open(os.environ["GATE"]), fcntl.LOCK_SH)'
        hold = f"b = bytearray(40 << 20); b[::4096] = b'x' * len(b[::4096]); {wait}{code}"
        return gated(tmp_path, "--json", "--metric", "anon", *args, "--", PY, "-c", hold,
                     until=lambda line: sample_of(line, 40 << 20), then=held.open,
                     extra_env={"GATE": held.path})

    first = held_run()
    assert first.status == 0, first.stderr
    peak = only_worker(first)["peak"]["anon"]
    assert peak >= 40 << 20
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(first.summary))
    same = held_run("--compare-with", str(baseline), "--max-growth", "50%")
    assert same.status == 0, same.stderr
    (row,) = same.summary["baseline"]["workers"]
    assert row["baseline"] == peak and not row["failed"]
    # A baseline from when the worker needed half as much: the regression fails the run.
    doc = first.summary
    doc["workers"][0]["peak"]["anon"] = peak // 2
    baseline.write_text(json.dumps(doc))
    grew = held_run("--compare-with", str(baseline))
    assert grew.status == 104, grew.stderr
    (failure,) = grew.failures()
    assert failure.get("type") == "growth" and "over the baseline" in failure.get("message")
    # Another worker (another command) has no baseline: nothing to compare, no failure.
    other = held_run("--compare-with", str(baseline), code="  # v2")
    assert other.status == 0 and other.summary["baseline"]["workers"][0]["baseline"] is None


@pytest.mark.parametrize("args, text", [
    (["--fail-on", "oom,exit"], "--fail-on 'oom,exit'"),
    (["--budget", "lots"], "size"),
    (["--max-growth", "ten"], "--max-growth"),
    (["--compare-with", "/nonexistent/base.json"], "no such file"),
    (["--junit", "/nonexistent/dir/j.xml"], "no directory"),
])
def test_bad_gate_options_exit_2_and_start_nothing(tmp_path: Path, args: list[str], text: str) -> None:
    marker = tmp_path / "ran"
    r = subprocess.run([*OOMSCOPE, "watch", *args, "--", "touch", str(marker)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and text in r.stderr, r.stderr
    assert not marker.exists()


def test_a_summary_that_is_not_one_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "b.json"
    bad.write_text('{"workers": []}')
    r = subprocess.run([*OOMSCOPE, "watch", "--compare-with", str(bad), "--", "true"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "not an oomscope watch --summary file" in r.stderr


@pytest.mark.cgroup
@needs_cgroup
@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_doctors_advice_followed_is_not_given_again(tmp_path: Path) -> None:
    """docs/ci.md's job: 512 MiB, --max-old-space-size=384 (75 %). V8's heap_size_limit adds
    the young generation to it (387 MiB): the doctor once repeated its own advice to it."""
    assert NODE is not None
    quiet = gated(tmp_path, "--heap-interval", "0.05", "--mem-limit", "512MiB", "--",
                  NODE, "--max-old-space-size=384", "-e", "setTimeout(() => {}, 800)")
    assert quiet.status == 0, quiet.stderr
    w = only_worker(quiet)
    assert w["heap_limit"] and w["heap_limit"] > 384 << 20  # the young generation on top
    assert w["doctor"] == [] and "doctor:" not in quiet.stderr
    told = gated(tmp_path, "--heap-interval", "0.05", "--mem-limit", "512MiB", "--",
                 NODE, "--max-old-space-size=400", "-e", "setTimeout(() => {}, 800)")
    assert told.status == 0, told.stderr
    assert [a["suggested"] for a in only_worker(told)["doctor"]] == ["--max-old-space-size=384"]


@pytest.mark.cgroup
@needs_cgroup
def test_a_test_runners_child_oom_killed_fails_the_run(tmp_path: Path) -> None:
    """A runner (here a shell) that forks its tests and reports a kill as its own exit code 1:
    the kernel's record names a process in the worker's own cgroup, and that is a memory death."""
    leak = tmp_path / "leak.py"
    leak.write_text(PY_LEAKER)
    run = gated(tmp_path, "--mem-limit", "64MiB", "--budget", "50%", "--",
                "sh", "-c", f"{PY} {leak}; exit 1")
    assert run.status == 100, run.stderr
    w = only_worker(run)
    assert (w["exit"]["cause"], w["exit"]["exit_code"]) == ("exit", 1)
    (kill,) = w["cgroup_kills"]
    assert kill["pid"] != w["worker"]["pid"] and "Killed process" in kill["kill_line"]
    assert kill["relation"] == "cgroup"
    # A percent budget is of what the limit counts, as the levels: the cgroup's usage.
    assert sorted(f["kind"] for f in w["failures"]) == ["budget", "exit", "oom-kill"]
    assert any("peak cgroup usage" in f["message"] for f in w["failures"])
    assert {f.get("type") for f in run.failures()} == {"budget", "exit", "oom-kill"}
    assert "in its cgroup: " in run.stderr
    assert "does not watch" not in run.stderr


def test_many_workers_keep_every_failure_and_add_up_the_passing_rest(tmp_path: Path) -> None:
    """Issue #14: the summary of a churned fleet is bounded. Of 121 workers (more than the 50
    passing ones kept), every failure is listed, the 50 highest passing peaks too (a big one
    among them), and the other passing workers are only counted, in the JSON and in JUnit."""
    from oomscope.core.gate.summary import KEPT_PASSING

    passing, failing = 110, 10
    runs = [arg for _ in range(passing) for arg in ("--run", "sleep 0.4")]
    runs += [arg for i in range(failing) for arg in ("--run", f"sleep 0.4; exit {3 + i}")]
    runs += ["--run", f"{PY} -c \"import time; b = bytearray(48 << 20); b[::4096] = b'x' * len(b[::4096]); "
             "time.sleep(1)\""]
    run = gated(tmp_path, *runs, github=False)
    assert run.status == 1, run.stderr  # several workers, failed by themselves: exit codes
    total = passing + failing + 1
    s = run.summary
    listed = s["workers"]
    failed = [w for w in listed if w["failures"]]
    kept_passing = [w for w in listed if not w["failures"]]
    assert sorted(w["exit"]["exit_code"] for w in failed) == list(range(3, 3 + failing))
    assert len(kept_passing) == KEPT_PASSING == s["kept_passing"]
    others = s["others"]
    assert others["workers"] == total - failing - KEPT_PASSING == s["workers_total"] - len(listed)
    assert s["workers_total"] == total and others["failed"] == 0 and others["causes"] == {"exit": others["workers"]}
    # The highest passing peaks are the ones listed: the big worker's first of all.
    big = max(kept_passing, key=lambda w: w["alert_peak"] or -1)
    assert "bytearray" in " ".join(big["worker"]["cmd"]) and big["alert_peak"] >= 48 << 20
    assert others["alert_peak_max"] is not None
    assert min(w["alert_peak"] or -1 for w in kept_passing) >= others["alert_peak_max"]
    assert 0 < others["measured"] <= others["workers"]
    assert others["alert_peak_total"] <= others["alert_peak_max"] * others["measured"]
    # JUnit: the listed workers and one test case for the rest; every failure there.
    root = run.junit.getroot()
    assert root.get("tests") == str(len(listed) + 1) and root.get("failures") == str(failing)
    assert len(run.failures()) == failing
    (aggregate,) = [c for c in run.cases if c.get("classname") == "oomscope.others"]
    assert aggregate.get("name") == f"{others['workers']} other workers: all passed"
    assert aggregate.find("failure") is None
    assert f"== oomscope watch summary: {total} worker(s), {failing} failed;" in run.stderr
    assert f"{others['workers']} other worker(s) passed, not listed ({others['workers']} exit)" in run.stderr


def test_the_summary_stays_bounded_while_workers_churn(make_engine: Any) -> None:
    """Issue #14: while workers come and go (a real engine's events, fed as watch feeds them),
    the summary never holds more than the failed, the kept passing and those awaiting a late
    record; a late kernel record that fails a worker already added up lists it again."""
    from oomscope.core.causes import OOM_KILL
    from oomscope.core.events import CauseUpdated
    from oomscope.core.gate.summary import SummaryBuilder
    from oomscope.core.launch import LaunchSpec

    engine, log = make_engine(interval_s=0.05)
    def failed(w: Any) -> bool:
        return w.death is not None and (w.death.cause == OOM_KILL or w.death.exit_code not in (0, None))

    builder = SummaryBuilder("rss", failed=failed, keep=3, late_window=4)
    n, failing = 30, {7, 19}
    held: list[int] = []
    exits: list[Any] = []
    for i in range(n):
        ref = engine.launch(LaunchSpec(f"exit {5 if i in failing else 0}", name=f"c{i}")).result()
        exit_ev = log.wait_exit(ref.id)
        exits.append(exit_ev)
        for ev in log.events:
            builder(ev)
        log.events.clear()
        held.append(len(builder.workers))
    assert max(held) <= len(failing) + 3 + 4 + 1  # failed, kept passing, awaiting, the live one
    workers = builder.finish()
    assert sorted(w.death.exit_code for w in workers if w.death and w.death.exit_code) == [5, 5]
    assert len(workers) == len(failing) + 3 and builder.others.workers == n - len(workers)
    assert builder.others.causes == {"exit": n - len(workers)}
    # The kernel's record of a worker added up comes late: it is listed again, as a failure.
    first = next(e.worker for e in exits if e.worker.id not in builder.workers)
    builder(CauseUpdated(time.time(), first, cause=OOM_KILL, previous="exit", evidence=("late record",)))
    assert builder.workers[first.id].death.cause == OOM_KILL  # type: ignore[union-attr]
    assert builder.others.workers == n - len(workers) - 1
