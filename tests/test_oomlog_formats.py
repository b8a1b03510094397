"""Formats the corpus does not hold, built from the kernel's and the daemons' format strings.

Each text below is what printk/journalctl/dmesg would print for the format string quoted in
``oomscope/core/oomlog/messages.py`` (tests/data/oom-corpus/FORMATS.md sections 2-4), not a copy of a sample.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

import pytest

from oomscope.core.errors import LogFormatError
from oomscope.core.oomlog import (
    KernelClock,
    KernelLine,
    KillRecord,
    LineDecoder,
    OomParser,
    parse_bytes,
    parse_file,
    parse_lines,
)
from oomscope.core.oomlog.clock import ClockOffsets


def parse(text: str, reference_time: datetime | None = None) -> list[KillRecord]:
    return parse_lines(text.split("\n"), reference_time=reference_time)


def one(text: str, reference_time: datetime | None = None) -> KillRecord:
    records = parse(text, reference_time)
    assert len(records) == 1, records
    return records[0]


# --- kernel versions ------------------------------------------------------------------------------
KERNEL_3_10 = """\
[ 1234.000001] java invoked oom-killer: gfp_mask=0xd0, order=0, oom_score_adj=0
[ 1234.000002] java cpuset=/ mems_allowed=0
[ 1234.000003] CPU: 3 PID: 4242 Comm: java Not tainted 3.10.0-1160.el7.x86_64 #1
[ 1234.000010] Task in /docker/abc killed as a result of limit of /docker
[ 1234.000011] memory: usage 524288kB, limit 524288kB, failcnt 12
[ 1234.000012] Memory cgroup stats for /docker: cache:0KB rss:524288KB rss_huge:0KB mapped_file:0KB
[ 1234.000013] [ pid ]   uid  tgid total_vm      rss nr_ptes swapents oom_score_adj name
[ 1234.000014] [ 4242]  1000  4242   500000   131072     300        0             0 java
[ 1234.000015] [ 4300]  1000  4300    10000     1000      20        0           100 Web Content
[ 1234.000020] Memory cgroup out of memory: Kill process 4300 (Web Content) score 510 or sacrifice child
[ 1234.000021] Killed process 4300 (Web Content) total-vm:40000kB, anon-rss:3000kB, file-rss:1000kB
[ 1234.000022] Kill process 4301 (Web Content) sharing same memory"""


def test_kernel_3_10_memcg_with_task_in_and_sharing() -> None:
    victim, sharer = parse(KERNEL_3_10)
    assert victim.to_json() | {"lines": None} == {
        "killer": "kernel-memcg", "pid": 4300, "comm": "Web Content", "uid": 1000,
        "total_vm_kb": 40000, "anon_rss_kb": 3000, "file_rss_kb": 1000, "shmem_rss_kb": None,
        "constraint": None, "oom_memcg": "/docker", "task_memcg": "/docker/abc",
        "kernel_time_s": 1234.000021, "wall_time": None, "lines": None,
    }
    assert victim.extra["uid_source"] == "task table row"
    assert victim.extra["chosen_pid"] == 4300 and victim.extra["chosen_score"] == 510
    assert victim.extra["oom_score_adj_task_table"] == 100
    assert victim.extra["invoker_comm"] == "java"
    assert victim.extra["cpuset"] == "/"
    assert victim.extra["kernel_version"] == "3.10.0-1160.el7.x86_64"
    assert victim.task_rows == ("[ 1234.000015] [ 4300]  1000  4300    10000     1000      20        0           100 Web Content",)
    # 3.10 kills processes sharing the victim's mm too: a kill of its own.
    assert (sharer.pid, sharer.comm, sharer.killer) == (4301, "Web Content", "kernel-memcg")
    assert sharer.extra["sharing_mm_with"] == 4300


KERNEL_4_19_GLOBAL = """\
[   50.100000] stress invoked oom-killer: gfp_mask=0x6280ca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO), nodemask=(null), order=0, oom_score_adj=0
[   50.100001] stress cpuset=/ mems_allowed=0
[   50.100002] CPU: 0 PID: 901 Comm: stress Not tainted 4.19.0-6-amd64 #1 Debian 4.19.67-2
[   50.100003] Mem-Info:
[   50.100004] active_anon:190000 inactive_anon:10 isolated_anon:0
                active_file:10 inactive_file:20 isolated_file:0
[   50.200000] Tasks state (memory values in pages):
[   50.200001] [  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name
[   50.200002] [    900]    33   900   200000   190000  1600000        0             0 stress
[   50.200003] Out of memory: Kill process 900 (stress) score 950 or sacrifice child
[   50.200004] Killed process 900 (stress) total-vm:800000kB, anon-rss:760000kB, file-rss:0kB, shmem-rss:0kB
[   50.230000] oom_reaper: reaped process 900 (stress), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB"""


def test_kernel_4_19_global_sacrifice_child_form() -> None:
    rec = one(KERNEL_4_19_GLOBAL)
    assert (rec.killer, rec.pid, rec.comm, rec.uid) == ("kernel-global", 900, "stress", 33)
    assert (rec.total_vm_kb, rec.anon_rss_kb, rec.file_rss_kb, rec.shmem_rss_kb) == (800000, 760000, 0, 0)
    assert rec.extra["gfp_mask"] == "0x6280ca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO)"
    assert rec.extra["oom_reaper"] == {
        "anon_rss_kb": 0, "file_rss_kb": 0, "shmem_rss_kb": 0, "kernel_time_s_reaper": 50.23,
    }
    assert rec.kernel_time_s == 50.200004


def test_kernel_5_1_to_5_3_prefix_form_and_constraint_bug() -> None:
    # 5.0-5.2 printed constraint=CONSTRAINT_NONE for memcg OOMs: oom_memcg= decides.
    # comm is unescaped: it may hold ") ", "(" and ",pid=".
    rec = one(
        "[   77.000001] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,"
        "oom_memcg=/test,task_memcg=/test/sub,task=x) y,pid=1 (z,pid=6707,uid=1001\n"
        "[   77.000002] Memory cgroup out of memory: Killed process 6707 (x) y,pid=1 (z) total-vm:1000kB, "
        "anon-rss:500kB, file-rss:100kB, shmem-rss:4kB"
    )
    assert (rec.killer, rec.pid, rec.comm, rec.uid) == ("kernel-memcg", 6707, "x) y,pid=1 (z", 1001)
    assert (rec.constraint, rec.oom_memcg, rec.task_memcg) == ("CONSTRAINT_NONE", "/test", "/test/sub")
    assert rec.extra["uid_source"] == "oom-kill summary line"
    assert rec.shmem_rss_kb == 4


def test_kernel_5_0_summary_names_the_chosen_parent_not_the_sacrificed_child() -> None:
    rec = one(
        "[ 3.0] [  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name\n"
        "[ 3.0] [    200]  1000   200     1000      100    65536        0             0 worker\n"
        "[ 3.1] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/app,"
        "task_memcg=/app,task=master,pid=100,uid=0\n"
        "[ 3.2] Memory cgroup out of memory: Kill process 100 (master) score 900 or sacrifice child\n"
        "[ 3.3] Killed process 200 (worker) total-vm:4000kB, anon-rss:400kB, file-rss:0kB, shmem-rss:0kB"
    )
    assert (rec.pid, rec.comm, rec.uid, rec.killer) == (200, "worker", 1000, "kernel-memcg")
    assert (rec.oom_memcg, rec.task_memcg) == ("/app", "/app")
    assert rec.extra["chosen_pid"] == 100 and rec.extra["summary_pid"] == 100


def test_kernel_5_4_plus_uid_pgtables_adj_and_early_5_4_pgtables_in_bytes() -> None:
    rec = one(
        "[  663.895592] Out of memory: Killed process 6356 (node) total-vm:984976kB, anon-rss:64768kB, "
        "file-rss:33596kB, shmem-rss:0kB, UID:1000 pgtables:593920kB oom_score_adj:300"
    )
    assert (rec.killer, rec.uid, rec.extra["oom_score_adj"]) == ("kernel-global", 1000, 300)
    assert rec.extra["pgtables_kb"] == 580 and rec.extra["pgtables_printed_in_bytes"] is True


def test_oom_kill_allocating_task_variant() -> None:
    rec = one(
        "[   10.000000] Out of memory (oom_kill_allocating_task): Killed process 321 (hog) total-vm:2000kB, "
        "anon-rss:1500kB, file-rss:10kB, shmem-rss:0kB, UID:0 pgtables:40kB oom_score_adj:0"
    )
    assert (rec.killer, rec.pid, rec.comm) == ("kernel-global", 321, "hog")
    assert rec.extra["oom_kill_allocating_task"] is True


def test_unable_to_reap() -> None:
    rec = one(
        "[    5.000000] Out of memory: Killed process 77 (a) total-vm:10kB, anon-rss:5kB, file-rss:1kB, "
        "shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0\n"
        "[    7.000000] oom_reaper: unable to reap pid:77 (a)"
    )
    assert rec.extra["oom_reaper"] == {"unable_to_reap": True, "kernel_time_s_reaper": 7.0}


def test_kernel_2_6_vsz_and_a_child_wording() -> None:
    rec = one("Out of memory: kill process 123 (x) score 100 or a child\n"
              "Killed process 123 (x) vsz:1000kB, anon-rss:10kB, file-rss:5kB")
    assert (rec.killer, rec.pid, rec.total_vm_kb, rec.anon_rss_kb) == ("kernel-global", 123, 1000, 10)


def test_memory_oom_group_kills_all_carry_the_group() -> None:
    recs = parse(
        "[ 37.1] Memory cgroup out of memory: Killed process 9188 (a.out) total-vm:14456kB, anon-rss:10324kB, file-rss:504kB, shmem-rss:0kB\n"
        "[ 37.2] Tasks in /test1 are going to be killed due to memory.oom.group set\n"
        "[ 37.3] Memory cgroup out of memory: Killed process 9189 (b.out) total-vm:1kB, anon-rss:1kB, file-rss:1kB, shmem-rss:0kB\n"
        "[ 37.4] Memory cgroup out of memory: Killed process 9190 (c.out) total-vm:1kB, anon-rss:1kB, file-rss:1kB, shmem-rss:0kB"
    )
    assert [r.pid for r in recs] == [9188, 9189, 9190]
    assert all(r.extra["oom_group"] == "/test1" for r in recs)
    assert recs[0].revision == 1 and recs[1].revision == 0


# mm/memcontrol.c mem_cgroup_print_oom_meminfo() on the unified hierarchy (v2): ``memory:`` then
# ``swap:`` (v1 prints ``memory+swap:`` and ``kmem:``), each "%s: usage %llukB, limit %llukB, failcnt %lu".
KERNEL_6_1_V2 = """\
[ 71.000001] node invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
[ 71.000002] CPU: 1 PID: 812 Comm: node Not tainted 6.1.0-18-amd64 #1 Debian 6.1.76-1
[ 71.000003] memory: usage 262144kB, limit 262144kB, failcnt 0
[ 71.000004] swap: usage 0kB, limit 9007199254740988kB, failcnt 0
[ 71.000005] Memory cgroup stats for /system.slice/app.service:
[ 71.000006] anon 266178560
[ 71.000007] Tasks state (memory values in pages):
[ 71.000008] [  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name
[ 71.000009] [    812]  1000   812   300000    65000   700000        0             0 node
[ 71.000010] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/system.slice/app.service,task_memcg=/system.slice/app.service,task=node,pid=812,uid=1000
[ 71.000011] Memory cgroup out of memory: Killed process 812 (node) total-vm:1200000kB, anon-rss:259000kB, file-rss:1000kB, shmem-rss:0kB, UID:1000 pgtables:684kB oom_score_adj:0"""


def test_the_cgroup_usage_lines_stay_in_the_kill_record() -> None:
    """The ``memory: usage … limit … failcnt …`` line says the cgroup hit its limit: kept, parsed."""
    v1 = parse(KERNEL_3_10)[0]
    assert "[ 1234.000011] memory: usage 524288kB, limit 524288kB, failcnt 12" in v1.lines
    assert (v1.extra["memory_usage_kb"], v1.extra["memory_limit_kb"], v1.extra["memory_failcnt"]) == (524288, 524288, 12)
    v2 = one(KERNEL_6_1_V2)
    usage = [x for x in v2.lines if ": usage " in x]
    assert usage == ["[ 71.000003] memory: usage 262144kB, limit 262144kB, failcnt 0",
                     "[ 71.000004] swap: usage 0kB, limit 9007199254740988kB, failcnt 0"]
    assert (v2.extra["memory_usage_kb"], v2.extra["memory_limit_kb"], v2.extra["memory_failcnt"]) == (262144, 262144, 0)
    # In the kernel's order, before the task table and the kill; and among the key lines.
    assert v2.lines.index(usage[1]) < v2.lines.index("[ 71.000009] [    812]  1000   812   300000    65000   700000        0             0 node")
    assert usage[0] in v2.key_lines() and usage[1] not in v2.key_lines()  # the limit that was hit
    assert v2.to_json()["lines"] == list(v2.lines)


def test_a_usage_line_whose_header_was_cut_still_opens_the_report() -> None:
    rec = one("[ 5.0] memory: usage 1024kB, limit 1024kB, failcnt 3\n"
              "[ 5.1] Killed process 9 (x) total-vm:1kB, anon-rss:1kB, file-rss:1kB, shmem-rss:0kB")
    assert rec.killer == "kernel-memcg" and rec.extra["memory_failcnt"] == 3
    assert rec.lines[0] == "[ 5.0] memory: usage 1024kB, limit 1024kB, failcnt 3"
    # The counters after ``memory:`` belong to an open report; alone they are nobody's.
    assert parse("[ 6.0] swap: usage 0kB, limit 10kB, failcnt 0\n[ 6.1] kmem: usage 1kB, limit 2kB, failcnt 0") == []


def test_each_report_keeps_its_own_usage_line() -> None:
    a, b = parse(
        "[ 1.0] a invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n"
        "[ 1.1] memory: usage 100kB, limit 100kB, failcnt 1\n"
        "[ 1.2] Memory cgroup out of memory: Killed process 5 (a) total-vm:1kB, anon-rss:1kB, file-rss:1kB, shmem-rss:0kB\n"
        "[ 1.3] b invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n"
        "[ 1.4] memory: usage 200kB, limit 200kB, failcnt 2\n"
        "[ 1.5] Memory cgroup out of memory: Killed process 6 (b) total-vm:1kB, anon-rss:1kB, file-rss:1kB, shmem-rss:0kB"
    )
    assert [x for x in a.lines if "usage" in x] == ["[ 1.1] memory: usage 100kB, limit 100kB, failcnt 1"]
    assert [x for x in b.lines if "usage" in x] == ["[ 1.4] memory: usage 200kB, limit 200kB, failcnt 2"]
    assert (a.extra["memory_limit_kb"], b.extra["memory_limit_kb"]) == (100, 200)


def test_header_without_kill_is_no_record_and_suppressed_header_kill_is_one() -> None:
    assert parse(
        "[ 1.0] oom_kill_process: 70 callbacks suppressed\n"
        "[ 1.1] python3 invoked oom-killer: gfp_mask=0x0(), order=0, oom_score_adj=0\n"
        "[ 1.2] Out of memory and no killable processes...\n"
    ) == []
    rec = one(
        "[ 1.0] oom_kill_process: 70 callbacks suppressed\n"
        "[ 1.3] Out of memory: Killed process 5 (x) total-vm:1kB, anon-rss:1kB, file-rss:1kB, shmem-rss:0kB"
    )
    assert rec.pid == 5 and "invoker_comm" not in rec.extra


def test_old_report_context_does_not_leak_into_a_much_later_kill() -> None:
    first, later = parse(
        "[ 10.0] a invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n"
        "[ 10.1] Out of memory: Killed process 5 (x) total-vm:1kB, anon-rss:1kB, file-rss:1kB, shmem-rss:0kB\n"
        "[ 90.0] Out of memory: Killed process 6 (y) total-vm:1kB, anon-rss:1kB, file-rss:1kB, shmem-rss:0kB"
    )
    assert first.extra["invoker_comm"] == "a" and "invoker_comm" not in later.extra


def test_a_summary_after_a_kill_starts_the_next_report() -> None:
    a, b = parse(
        "[ 1.0] a invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n"
        "[ 1.1] Out of memory: Killed process 5 (x) total-vm:1kB, anon-rss:1kB, file-rss:1kB, shmem-rss:0kB\n"
        "[ 1.5] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/m,"
        "task_memcg=/m,task=y,pid=6,uid=0\n"
        "[ 1.6] Memory cgroup out of memory: Killed process 6 (y) total-vm:1kB, anon-rss:1kB, file-rss:1kB, shmem-rss:0kB"
    )
    assert a.extra["invoker_comm"] == "a" and "invoker_comm" not in b.extra
    assert (b.pid, b.task_memcg, b.killer) == (6, "/m", "kernel-memcg")


def test_summary_without_kill_line_becomes_a_record_when_the_next_report_starts() -> None:
    parser = OomParser()
    dec = LineDecoder()
    lines = [
        "[ 5.0] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a,task_memcg=/a,task=t,pid=42,uid=7",
        "[ 6.0] b invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
    ]
    first = [parser.feed(ln) for ln in (dec.decode(x) for x in lines) if ln is not None]
    assert first[0] == []
    rec, = first[1]
    assert (rec.pid, rec.comm, rec.uid, rec.killer) == (42, "t", 7, "kernel-memcg")
    assert rec.extra["evidence"] == "oom-kill summary line only"


def test_truncated_last_line_without_newline() -> None:
    data = (
        b"[ 1.0] [  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name\n"
        b"[ 1.1] [    123]   100   123     4382      411    77824        0             0 node\n"
        b"[ 1.2] Memory cgroup out of memory: Killed process 123 (no"
    )
    rec, = parse_bytes(data)
    assert (rec.pid, rec.comm, rec.uid, rec.killer) == (123, "node", 100, "kernel-memcg")
    assert rec.extra["truncated_killed_line"] is True
    assert rec.extra["comm_source"] == "task table row (Killed line is cut)"


def test_crlf_gives_the_same_records_as_lf() -> None:
    lf = KERNEL_4_19_GLOBAL.encode()
    crlf = lf.replace(b"\n", b"\r\n") + b"\r\n"
    assert parse_bytes(crlf) == parse_bytes(lf)


def test_non_utf8_bytes_never_crash() -> None:
    data = (
        b"\x80\x81\xfe garbage \xff\n"
        b"[ 2.0] Out of memory: Killed process 9 (ab\xff\xfe) total-vm:1kB, anon-rss:2kB, file-rss:3kB, shmem-rss:0kB\n"
        b"\x00\x01\x02\n"
    )
    rec, = parse_bytes(data)
    assert rec.pid == 9 and rec.comm == "ab\ufffd\ufffd"


# --- transports and time formats --------------------------------------------------------------------
KILL_5_4 = ("Memory cgroup out of memory: Killed process 6356 (node) total-vm:984976kB, anon-rss:64768kB, "
            "file-rss:33596kB, shmem-rss:0kB, UID:0 pgtables:580kB oom_score_adj:0")


def test_journal_short_iso_precise() -> None:
    rec = one(f"2026-11-29T06:20:23.507022+0000 vm kernel: {KILL_5_4}")
    assert rec.wall_time_text == "2026-11-29T06:20:23.507022+0000"
    assert rec.wall_time == "2026-11-29T06:20:23.507022+00:00"
    assert rec.wall_time_unix == pytest.approx(1795933223.507022)
    assert rec.kernel_time_s is None


def test_journal_short_unix() -> None:
    rec = one(f"1795933223.507022 vm kernel: {KILL_5_4}")
    assert rec.wall_time == "2026-11-29T06:20:23.507022+00:00"


def test_journal_short_full_and_monotonic() -> None:
    assert one(f"Sun 2026-11-29 06:20:23 UTC vm kernel: {KILL_5_4}").wall_time == "2026-11-29T06:20:23"
    rec = one(f"[  663.895592] vm kernel: {KILL_5_4}")
    assert rec.kernel_time_s == 663.895592 and rec.monotonic_time_s is None


def test_rsyslog_rfc3339_with_kernel_stamp() -> None:
    rec = one(f"2026-11-29T06:20:23.507022+00:00 host kernel: [  663.895592] {KILL_5_4}")
    assert rec.kernel_time_s == 663.895592
    assert rec.wall_time == "2026-11-29T06:20:23.507022+00:00"


def test_dmesg_x_with_ctime_and_localized_dmesg_t() -> None:
    rec = one(f"kern  :err   : [Sun Nov 29 06:20:22 2026] {KILL_5_4}")
    assert rec.wall_time_text == "Sun Nov 29 06:20:22 2026" and rec.wall_time == "2026-11-29T06:20:22"
    assert one(f"[Вс ноя 29 06:20:22 2026] {KILL_5_4}").wall_time == "2026-11-29T06:20:22"
    assert one(f"Mär 03 01:02:03 pc kernel: {KILL_5_4}",
               reference_time=datetime(2026, 6, 1)).wall_time == "2026-03-03T01:02:03"


def test_year_less_stamp_takes_the_latest_year_not_in_the_future() -> None:
    rec = one(f"Dec 18 19:34:56 host kernel: {KILL_5_4}", reference_time=datetime(2027, 1, 5))
    assert rec.wall_time == "2026-12-18T19:34:56"


def test_kmsg_escapes_and_user_space_writes() -> None:
    rec = one(r"3,10,1000000,-;Memory cgroup out of memory: Killed process 5 (a\x09b) total-vm:1kB, anon-rss:1kB, file-rss:1kB, shmem-rss:0kB")
    assert rec.comm == "a\tb" and rec.kernel_time_s == 1.0
    # Anyone with write access to /dev/kmsg can print this; facility 1 shows it is not the kernel.
    assert parse("12,11,1000001,-;Killed process 6 (x) total-vm:1kB, anon-rss:1kB, file-rss:1kB, shmem-rss:0kB") == []


def test_journal_json_message_as_byte_array() -> None:
    text = "Memory cgroup out of memory: Killed process 5 (a\x01b) total-vm:1kB, anon-rss:2kB, file-rss:3kB, shmem-rss:0kB"
    entry = {
        "MESSAGE": list(text.encode()), "_TRANSPORT": "kernel", "SYSLOG_FACILITY": "0", "PRIORITY": "3",
        "_SOURCE_MONOTONIC_TIMESTAMP": "5000000", "__MONOTONIC_TIMESTAMP": "5020000",
        "__REALTIME_TIMESTAMP": "1795933223509707", "_BOOT_ID": "b",
    }
    rec = one(json.dumps(entry))
    assert rec.comm == "a\x01b" and rec.kernel_time_s == 5.0
    assert rec.wall_time == "2026-11-29T06:20:23.489707+00:00"
    assert rec.lines == (text,)


def test_gzip_file(tmp_path: Path) -> None:
    path = tmp_path / "kern.log.1.gz"
    path.write_bytes(gzip.compress(KERNEL_4_19_GLOBAL.encode()))
    assert [r.pid for r in parse_file(path)] == [900]


# --- user-space killers -----------------------------------------------------------------------------
def test_earlyoom_1_2_wording_and_exit() -> None:
    rec = one('killing process 27541 "bash" with signal 15: badness 550, VmRSS 7609 MiB\n'
              "process 27541 exited after 1.9 seconds")
    assert (rec.killer, rec.pid, rec.comm) == ("earlyoom", 27541, "bash")
    assert rec.extra.items() >= {"signal": 15, "badness": 550, "vmrss_mib": 7609, "exited_after_s": 1.9}.items()


def test_earlyoom_very_old_and_journal_kill_failed() -> None:
    assert one("Killing process 123 firefox").comm == "firefox"
    rec = one('Oct 07 19:16:10 h earlyoom[26328]: sending SIGKILL to process 5 uid 1000 "x y": badness 9, VmRSS 5 MiB\n'
              "Oct 07 19:16:10 h earlyoom[26328]: kill failed: No such process")
    assert (rec.comm, rec.uid, rec.extra["kill_failed"]) == ("x y", 1000, "No such process")


def test_systemd_oomd_swap_wordings() -> None:
    rec = one("Sep 10 14:59:49 h systemd-oomd[34]: Killed /user.slice/x.scope due to memory used (1000) / "
              "total (2000) and swap used (900) / total (1000) being more than 90.00%")
    assert rec.killer == "systemd-oomd" and rec.pid is None
    assert rec.extra.items() >= {"killed_cgroup": "/user.slice/x.scope", "reason": "swap", "limit_pct": 90.0,
                                 "swap_used_bytes": 900}.items()
    old = one("Sep 10 14:59:49 h systemd-oomd[34]: Killed /a.scope due to swap used (900) / total (1000) being more than 90.00%")
    assert old.extra["swap_total_bytes"] == 1000


def test_a_comm_holding_kill_wording_does_not_hide_its_line() -> None:
    rec = one(
        "[ 9.0] CPU: 0 PID: 5 Comm: Killed process Not tainted 6.1.0 #1\n"
        "[ 9.1] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,"
        "task_memcg=/,task=Killed process,pid=5,uid=0\n"
        "[ 9.2] Out of memory: Killed process 5 (Killed process) total-vm:1kB, anon-rss:1kB, file-rss:1kB, "
        "shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0\n"
        "[ 9.3] oom_reaper: reaped process 5 (Killed process), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB"
    )
    assert (rec.pid, rec.comm, rec.task_memcg, rec.killer) == (5, "Killed process", "/", "kernel-global")
    assert rec.extra["oom_reaper"]["kernel_time_s_reaper"] == 9.3


def test_other_programs_lines_are_not_kills() -> None:
    assert parse(
        'May  8 14:05:34 h containerd: msg="Killed process 5 (x) total-vm:1kB, anon-rss:1kB" pid=25004\n'
        "May  8 14:05:34 h bash[5]: sending SIGTERM to process 5 uid 0 \"x\": badness 1, VmRSS 1 MiB\n"
        "May  8 14:05:34 h kernel: research: oomd attempting to kill 5 with KILL"
    ) == []


# --- errors -----------------------------------------------------------------------------------------
def test_unknown_format_and_binary_raise_log_format_error(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="no known log format"):
        parse("hello world\nthis is not a log")
    with pytest.raises(LogFormatError, match="binary"):
        parse_bytes(b"\x00\x01\x02\x03" * 100 + b"\n\x00\x00\x00\n")
    with pytest.raises(LogFormatError, match="no such file"):
        parse_file(tmp_path / "missing.log")
    with pytest.raises(LogFormatError, match="directory"):
        parse_file(tmp_path)
    assert parse("") == [] and parse_bytes(b"\n\n  \n") == []


# --- time mapping -----------------------------------------------------------------------------------
def test_kernel_clock_maps_printk_time_and_flags_replayed_records_after_suspend() -> None:
    clock = KernelClock(lambda: ClockOffsets(1_795_932_559.5907, 120.0, 1e-6))
    w = clock.to_wall(663.895592)
    assert w.unix == pytest.approx(1_795_933_223.486292, abs=1e-6)
    assert w.iso.startswith("2026-11-29T06:20:23.4862") and w.max_late_s == 120.0
    parser = OomParser(clock)
    line = LineDecoder().decode(f"3,1,663895592,-;{KILL_5_4}", history=True)
    assert isinstance(line, KernelLine)
    rec, = parser.feed(line)
    assert rec.history and rec.wall_time == w.iso and rec.extra["wall_time_max_late_s"] == 120.0


def test_real_clock_offsets_are_sane() -> None:
    clock = KernelClock()
    now = datetime.now().timestamp()
    assert abs(clock.to_wall(KernelClock.monotonic_now_s()).unix - now) < 1.0


def test_stamps_no_calendar_holds_do_not_stop_the_reader() -> None:
    """Found by the fuzz test: a mutated journal stamp far outside the calendar."""
    import json as _json

    from oomscope.core.oomlog import parse_lines

    killed = ("Memory cgroup out of memory: Killed process 4242 (node) total-vm:1kB, anon-rss:2kB, "
              "file-rss:3kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0")
    entry = {"MESSAGE": killed, "_TRANSPORT": "kernel", "__REALTIME_TIMESTAMP": "-71795933223531911",
             "__MONOTONIC_TIMESTAMP": "5", "_SOURCE_MONOTONIC_TIMESTAMP": "4"}
    records = parse_lines([_json.dumps(entry)], check_format=False)
    assert [r.pid for r in records] == [4242]
    assert records[0].wall_time is None
    entry["__REALTIME_TIMESTAMP"] = str(10**19)  # far past year 9999
    assert parse_lines([_json.dumps(entry)], check_format=False)[0].wall_time is None


def test_readable_line_shows_kmsg_records_as_dmesg_does() -> None:
    from oomscope.core.oomlog.lines import readable_line

    raw = "3,60442,18056244410,-;Memory cgroup out of memory: Killed process 7711 (python3) caf\\xc3\\xa9"
    assert readable_line(raw) == "[ 18056.244410] Memory cgroup out of memory: Killed process 7711 (python3) café"
    assert readable_line("6,12,5,-,caller=T42;x") == "[     0.000005] x"
    plain = "[ 8700.139923] Out of memory: Killed process 1 (a)"
    assert readable_line(plain) == plain
