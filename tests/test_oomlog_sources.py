"""Live sources against this machine's real kernel log: /dev/kmsg, dmesg, journalctl.

Synchronisation is by waiting on the source's file descriptor in a selectors loop until the
line written for the test arrives (a deadline bounds the wait; nothing sleeps).
"""

from __future__ import annotations

import os
import selectors
import shutil
import time
import uuid
from collections.abc import Callable

import pytest

from oomscope.core.errors import SourceUnavailable
from oomscope.core.oomlog import (
    DmesgSource,
    JournalctlSource,
    KernelLine,
    KmsgSource,
    LiveSource,
    open_live_source,
)
from oomscope.core.oomlog.sources import _journald_running

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="writing /dev/kmsg needs root")


def _write_kmsg(text: str) -> None:
    with open("/dev/kmsg", "w") as f:
        f.write(text + "\n")


def _wait_for(src: LiveSource, pred: Callable[[KernelLine], bool], timeout_s: float = 10.0) -> KernelLine:
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(src.fileno(), selectors.EVENT_READ)
        while True:
            for line in src.read_available():
                if pred(line):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{src.name}: the line did not arrive within {timeout_s} s")
            sel.select(left)


@needs_root
def test_kmsg_replays_history_then_delivers_new_lines() -> None:
    marker = f"oomscope-test: hello {uuid.uuid4().hex}"
    with KmsgSource() as src:
        history = src.read_available()
        assert history and all(ln.history for ln in history)
        assert all(ln.fmt == "kmsg" and ln.seq is not None for ln in history)
        dropped_before = src.dropped
        before = time.clock_gettime(time.CLOCK_MONOTONIC)
        _write_kmsg(marker)
        line = _wait_for(src, lambda ln: ln.message == marker)
        after = time.clock_gettime(time.CLOCK_MONOTONIC)
    assert line.history is False
    # A user-space write: facility 1 (user), never taken for a kernel message.
    assert (line.facility, line.ident) == (1, "user")
    assert line.kernel_time_s is not None and before - 0.5 <= line.kernel_time_s <= after + 0.5
    # Read as soon as opened, a line at a time: the kernel overwrote nothing before we read it.
    assert src.dropped == 0


def test_kmsg_missing_device_is_a_clear_error() -> None:
    with pytest.raises(SourceUnavailable, match="not present"):
        KmsgSource("/nonexistent/kmsg")


@needs_root
def test_dmesg_source_follows_new_lines() -> None:
    marker = f"oomscope-test: dmesg {uuid.uuid4().hex}"
    src = DmesgSource()
    try:
        history = src.read_available()
        assert history and all(ln.history for ln in history)
        _write_kmsg(marker)
        line = _wait_for(src, lambda ln: ln.message == marker)
        assert line.history is False and line.fmt == "dmesg-raw"
    finally:
        src.close()


def test_journalctl_source_works_or_says_why() -> None:
    try:
        src = JournalctlSource()
    except SourceUnavailable as e:
        # The reason names this machine's real obstacle, not just any.
        if shutil.which("journalctl") is None:
            assert "journalctl not found" in str(e)
        elif not _journald_running():
            assert "journald not running" in str(e)
        else:
            assert "not readable for this user" in str(e) or "failed (exit" in str(e), e
        return
    try:
        history = src.read_available()
        # Opened with nothing to show is only right where a journald runs (and has no match yet).
        assert history or _journald_running()
        assert all(ln.history for ln in history)
    finally:
        src.close()


def test_open_live_source_prefers_kmsg_and_reports_each_state() -> None:
    src, states = open_live_source(("no-such-source", "kmsg", "dmesg"))
    try:
        assert states[0].name == "no-such-source" and not states[0].ok and states[0].reason
        if os.access("/dev/kmsg", os.R_OK):
            assert src is not None and src.name == "kmsg"
            assert states[-1].ok and states[-1].name == "kmsg" and len(states) == 2
    finally:
        if src is not None:
            src.close()
