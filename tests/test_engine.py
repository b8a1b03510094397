"""The engine against real processes: launch, attach, sample, exits, terminate, thresholds."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from conftest import PY, ready_child, sleeper_code
from oomscope.core.errors import BadInput, Refused, WorkerGone
from oomscope.core.launch import LaunchSpec
from oomscope.core.sizes import parse_level
from oomscope.core.thresholds import ThresholdConfig
from pid_reuse import BLOCKING_CHILD, can_force_pid, has_pending, spawn_with_pid

GROWER = (
    "import sys, time\n"
    "chunks = []\n"
    "print('ready', flush=True)\n"
    "for _ in range(400):\n"
    "    chunks.append(bytearray(1 << 20))\n"  # 1 MiB of touched anonymous memory
    "    time.sleep(0.01)\n"
    "time.sleep(60)\n"
)


def test_launch_samples_and_clean_exit(make_engine, gate) -> None:
    eng, log = make_engine()
    held = gate()
    code = f"b = bytearray(30 << 20); print('hello'); {held.wait_code}; print('bye')"
    ref = eng.launch(LaunchSpec((PY, "-c", code))).result(5)
    assert ref.launched and ref.name == os.path.basename(PY)
    # It holds its 30 MiB until a sample has shown them, then exits by itself.
    log.wait_for(lambda e: any(s.anon >= 30 << 20 for s in log.samples_of(ref.id)))
    held.open()
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.exit_code, exited.signal) == ("exit", 0, None)
    samples = log.samples_of(ref.id)
    assert samples, "no samples while it ran"
    assert max(s.rss for s in samples) >= 30 << 20
    assert max(s.anon for s in samples) >= 30 << 20
    assert all(s.anon <= s.rss for s in samples)
    assert all(isinstance(s.swap, int) and s.swap >= 0 for s in samples)
    out = [e.line for e in log.of("output", ref.id) if e.stream == "stdout"]
    assert out == ["hello", "bye"]


def test_exit_code_and_stderr_tail(make_engine) -> None:
    eng, log = make_engine()
    ref = eng.launch(LaunchSpec("echo oops >&2; exit 3")).result(5)
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.exit_code) == ("exit", 3)
    assert exited.stderr_tail == ("oops",)
    assert ref.name == "echo"


def test_external_kill_is_signal(make_engine) -> None:
    eng, log = make_engine()
    ref = eng.launch(LaunchSpec(tuple(sleeper_code()))).result(5)
    log.wait_samples(ref.id)
    os.kill(ref.pid, signal.SIGKILL)  # our own launched child, by PID
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.signal, exited.exit_code) == ("signal", "SIGKILL", None)


def test_terminate_sigterm_ends_it(make_engine) -> None:
    eng, log = make_engine()
    ref = eng.launch(LaunchSpec(tuple(sleeper_code()))).result(5)
    eng.terminate(ref.id).result(5)
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.by, exited.signal) == ("terminated", "user", "SIGTERM")
    assert [t.signal for t in log.of("terminate", ref.id)] == ["SIGTERM"]


def test_terminate_escalates_to_sigkill_after_grace(make_engine) -> None:
    eng, log = make_engine(grace_s=0.3)
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    ref = eng.launch(LaunchSpec((PY, "-u", "-c", code))).result(5)
    log.wait_for(lambda e: e.kind == "output" and e.line == "ready")
    eng.terminate(ref.id).result(5)
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.signal) == ("terminated", "SIGKILL")
    assert [t.signal for t in log.of("terminate", ref.id)] == ["SIGTERM", "SIGKILL"]


def test_kill_now(make_engine) -> None:
    eng, log = make_engine()
    ref = eng.launch(LaunchSpec(tuple(sleeper_code()))).result(5)
    eng.terminate(ref.id, kill_now=True).result(5)
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.signal) == ("terminated", "SIGKILL")


def test_terminate_after_exit_reports_gone(make_engine) -> None:
    eng, log = make_engine()
    ref = eng.launch(LaunchSpec((PY, "-c", "pass"))).result(5)
    log.wait_exit(ref.id)
    with pytest.raises(WorkerGone, match="already exited"):
        eng.terminate(ref.id).result(5)


def test_attach_sees_exit_at_once_with_its_status(make_engine, children) -> None:
    """The test is its parent and collects it: the pidfd then gives its status (Linux 6.15+)."""
    eng, log = make_engine()
    p = ready_child(children, "import time; print('ready', flush=True); time.sleep(60)")
    ref = eng.attach(p.pid).result(5)
    assert not ref.launched and ref.pid == p.pid
    assert log.wait_for(lambda e: e.kind == "worker_attached").worker.id == ref.id
    log.wait_samples(ref.id)
    p.kill()
    p.wait()
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.signal, exited.exit_code) == ("signal", "SIGKILL", None)


def test_attach_twice_gives_same_worker(make_engine, children) -> None:
    eng, _ = make_engine()
    p = ready_child(children, "import time; print('ready', flush=True); time.sleep(60)")
    assert eng.attach(p.pid).result(5) == eng.attach(p.pid).result(5)


def test_terminate_attached(make_engine, children) -> None:
    eng, log = make_engine()
    p = ready_child(children, "import time; print('ready', flush=True); time.sleep(60)")
    ref = eng.attach(p.pid).result(5)
    eng.terminate(ref.id).result(5)
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.signal, exited.by) == ("terminated", "SIGTERM", "user")
    assert p.wait(5) == -signal.SIGTERM


@pytest.mark.skipif(not can_force_pid(), reason="needs root to write /proc/sys/kernel/ns_last_pid")
def test_terminate_stale_worker_after_pid_reuse_signals_nothing(make_engine, children) -> None:
    eng, log = make_engine()
    old = ready_child(children, BLOCKING_CHILD)
    ref = eng.attach(old.pid).result(5)
    old.kill()
    old.wait()
    log.wait_exit(ref.id)
    new = spawn_with_pid(ref.pid, children)
    with pytest.raises(WorkerGone):
        eng.terminate(ref.id).result(5)
    with pytest.raises(WorkerGone):
        eng.terminate(ref.id, kill_now=True).result(5)
    assert new.poll() is None and not has_pending(new.pid, signal.SIGTERM)
    assert not log.of("terminate")


@pytest.mark.parametrize("pid, error, text", [
    (1, Refused, "init"),
    (2**22 + 4321, WorkerGone, "no process"),
])
def test_attach_refusals(make_engine, pid, error, text) -> None:
    eng, _ = make_engine()
    with pytest.raises(error, match=text):
        eng.attach(pid).result(5)


def test_attach_self_refused(make_engine) -> None:
    eng, _ = make_engine()
    with pytest.raises(Refused, match="oomscope itself"):
        eng.attach(os.getpid()).result(5)


def test_attach_zombie_refused(make_engine, children) -> None:
    eng, _ = make_engine()
    p = children([PY, "-c", "pass"])
    # Not reaped: wait until the kernel shows it as a zombie (waitid with WNOWAIT blocks
    # until it exits without reaping it).
    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
    with pytest.raises(Refused, match="zombie"):
        eng.attach(p.pid).result(5)


def test_attach_kernel_thread_refused(make_engine) -> None:
    eng, _ = make_engine()
    with pytest.raises(Refused, match="kernel thread"):
        eng.attach(2).result(5)


def test_launch_bad_commands(make_engine, tmp_path) -> None:
    eng, _ = make_engine()
    with pytest.raises(BadInput, match="empty command"):
        eng.launch(LaunchSpec("  ")).result(5)
    with pytest.raises(BadInput, match="empty command"):
        eng.launch(LaunchSpec(())).result(5)
    with pytest.raises(BadInput, match="command not found"):
        eng.launch(LaunchSpec(("/nonexistent/prog",))).result(5)
    with pytest.raises(BadInput, match="does not exist"):
        eng.launch(LaunchSpec(("true",), cwd=str(tmp_path / "nope"))).result(5)


def test_launch_cwd_and_env(make_engine, tmp_path) -> None:
    eng, log = make_engine()
    ref = eng.launch(LaunchSpec('echo "$PWD $OOMSCOPE_T"', cwd=str(tmp_path), env={"OOMSCOPE_T": "x1"})).result(5)
    log.wait_exit(ref.id)
    assert [e.line for e in log.of("output", ref.id)] == [f"{tmp_path} x1"]


def test_children_of_picks_up_pool_and_respawns(make_engine, children) -> None:
    eng, log = make_engine(rescan_s=0.1)
    code = (
        "import multiprocessing as mp, sys, time\n"
        "def work(_):\n"
        "    time.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    mp.set_start_method('fork')\n"
        "    procs = [mp.Process(target=work, args=(i,)) for i in range(3)]\n"
        "    for p in procs: p.start()\n"
        "    print('ready', flush=True)\n"
        "    for line in sys.stdin:\n"  # each line: respawn one more child
        "        q = mp.Process(target=work, args=(0,)); q.start(); print(q.pid, flush=True)\n"
    )
    parent = children([PY, "-u", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert parent.stdout is not None and parent.stdin is not None
    assert parent.stdout.readline().strip() == b"ready"
    refs = eng.watch_children(parent.pid).result(5)
    assert len(refs) == 3
    # One child dies (killed by us, as an OOM kill would), the parent starts a replacement.
    os.kill(refs[0].pid, signal.SIGKILL)
    log.wait_exit(refs[0].id)
    parent.stdin.write(b"respawn\n")
    parent.stdin.flush()
    new_pid = int(parent.stdout.readline())
    ev = log.wait_for(lambda e: e.kind == "worker_attached" and e.worker.pid == new_pid)
    assert ev.parent_pid == parent.pid
    # The replacement takes the slot of the child it replaced, one life further.
    assert (ev.worker.slot, ev.worker.life) == (refs[0].slot, 2)
    assert len({r.slot for r in refs}) == 3 and all(r.life == 1 for r in refs)
    parent.stdin.close()


def test_match_regex_attaches_new_processes(make_engine, children) -> None:
    eng, log = make_engine(rescan_s=0.1)
    tag = f"oomscope-match-{os.getpid()}"
    assert eng.watch_matching(tag).result(5) == []
    p = children([PY, "-c", "import time, sys; time.sleep(60)", tag])
    ev = log.wait_for(lambda e: e.kind == "worker_attached" and e.worker.pid == p.pid)
    assert tag in " ".join(ev.worker.cmd)
    with pytest.raises(BadInput, match="regular expression"):
        eng.watch_matching("(unclosed")


def test_thresholds_warning_then_critical_then_policy_terminate(make_engine) -> None:
    config = ThresholdConfig(warn=parse_level("100MiB"), crit=parse_level("200MiB"),
                             metric="anon", on_crit="terminate")
    eng, log = make_engine(thresholds=config, interval_s=0.05, grace_s=1.0)
    ref = eng.launch(LaunchSpec((PY, "-u", "-c", GROWER))).result(5)
    exited = log.wait_exit(ref.id, timeout=30)
    levels = [(t.previous, t.level) for t in log.of("threshold", ref.id)]
    assert levels[:2] == [("normal", "warning"), ("warning", "critical")]
    warn, crit = log.of("threshold", ref.id)[:2]
    assert warn.value >= 100 << 20 and warn.limit == 100 << 20
    assert crit.value >= 200 << 20 and crit.limit == 200 << 20
    term = log.of("terminate", ref.id)[0]
    assert term.by == "policy" and term.signal == "SIGTERM" and "critical" in term.reason
    assert (exited.cause, exited.by, exited.signal) == ("terminated", "policy", "SIGTERM")


def test_percent_threshold_without_limit_stays_inactive(make_engine, gate) -> None:
    config = ThresholdConfig(warn=parse_level("1%"), metric="rss")
    eng, log = make_engine(thresholds=config)
    held = gate()
    ref = eng.launch(LaunchSpec((PY, "-c", held.wait_code))).result(5)
    log.wait_samples(ref.id, 2)  # two samples judged against the level, then it may go
    held.open()
    log.wait_exit(ref.id)
    assert not log.of("threshold")


def test_stop_terminates_launched_workers(make_engine) -> None:
    eng, log = make_engine()
    ref = eng.launch(LaunchSpec(tuple(sleeper_code()))).result(5)
    eng.stop()
    exited = log.wait_exit(ref.id)
    assert exited.cause == "terminated" and exited.by == "oomscope-exit"
    assert log.wait_for(lambda e: e.kind == "stopped")
    with pytest.raises(Exception, match="stopped"):
        eng.launch(LaunchSpec(tuple(sleeper_code()))).result(5)


def test_interval_minimum() -> None:
    from oomscope.core.engine import EngineConfig
    with pytest.raises(BadInput, match="minimum"):
        EngineConfig(interval_s=0.01)


def test_vanishing_mid_sample_is_an_ordinary_exit(make_engine) -> None:
    """Many short-lived workers at the fastest interval: every one ends with an exit event."""
    eng, log = make_engine(interval_s=0.05)
    refs = [eng.launch(LaunchSpec((PY, "-c", "import time; time.sleep(0.0%d)" % i))).result(5) for i in range(8)]
    for ref in refs:
        assert log.wait_exit(ref.id).cause == "exit"
    assert not [n for n in log.of("notice") if n.level == "error"]



def test_per_worker_threshold_override(make_engine) -> None:
    config = ThresholdConfig(warn=parse_level("1GiB"), crit=parse_level("2GiB"), metric="anon")
    eng, log = make_engine(thresholds=config, interval_s=0.05, grace_s=1.0)
    ref = eng.launch(LaunchSpec((PY, "-u", "-c", GROWER))).result(5)
    other = eng.launch(LaunchSpec((PY, "-u", "-c", GROWER))).result(5)
    override = ThresholdConfig(warn=parse_level("50MiB"), crit=parse_level("100MiB"), on_crit="terminate")
    eng.set_worker_thresholds(ref.id, override).result(5)
    assert eng.worker_thresholds(ref.id).result(5) == override
    exited = log.wait_exit(ref.id, timeout=30)
    assert (exited.cause, exited.by) == ("terminated", "policy")
    crit = [t for t in log.of("threshold", ref.id) if t.level == "critical"][0]
    assert crit.metric == "anon" and crit.limit == 100 << 20  # the global metric, its own levels
    assert not log.of("threshold", other.id)  # the other worker keeps the global 1 GiB / 2 GiB
    eng.set_worker_thresholds(other.id, None).result(5)
    with pytest.raises(WorkerGone):
        eng.set_worker_thresholds(ref.id, None).result(5)


@pytest.mark.parametrize("text, simple", [
    ("python3 x.py", True), ("node app.js > out.log", True), ('echo "a;b"', True),
    ("cd x && python y", False), ("a | b", False), ("A=1 node x", False), ("sleep 1; echo", False),
    ("(cd x)", False), ("exit 3", False), ("node a.js &", False), ("echo 'unbalanced", False),
])
def test_simple_shell_commands_are_execed(text: str, simple: bool) -> None:
    from oomscope.core.launch import is_simple_command
    assert is_simple_command(text) is simple


def test_a_simple_shell_command_is_the_worker_itself(make_engine, gate) -> None:
    """`--run 'python3 -c …'`: the worker's PID is python's, so its memory is what is measured."""
    eng, log = make_engine()
    held = gate()
    ref = eng.launch(LaunchSpec(f"{PY} -c 'b = b\"x\" * (40 << 20); {held.wait_code}'")).result(5)
    assert log.wait_for(lambda e: e.kind == "samples" and any(
        s.worker.id == ref.id and s.anon >= 40 << 20 for s in e.samples), timeout=15)
    held.open()
    assert log.wait_exit(ref.id).exit_code == 0
