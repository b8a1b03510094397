"""Parse throughput of the OOM log parser on a synthetic 1,000,000-line dmesg log.

The log is mostly noise (driver, filesystem, network, audit, segfault and user-space /dev/kmsg
lines) with realistic OOM reports interleaved: 6.x memcg reports (stack, memcg stats, task table,
``oom-kill:`` summary, ``Killed process``), 4.x-style global reports with a 300-row task table and
``Kill process ... or sacrifice child``, and the odd oom_reaper line. Generation is not timed.

    $ python bench/bench_parse.py
    {"benchmark": "oom-log parse", "lines": 1000000, "kills": 384, "expected_kills": 384,
     "seconds": 0.63, "lines_per_s": 1580000, "from_bytes_lines_per_s": 1190000, ...}
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oomscope.core.oomlog import parse_bytes, parse_lines

N_LINES = 1_000_000
REPORT_EVERY = 2600  # one OOM report per ~2600 lines: ~4% of the lines belong to reports

_NOISE = (
    "usb {a}-{b}: new high-speed USB device number {n} using xhci_hcd",
    "EXT4-fs (sda{a}): mounted filesystem {h} r/w with ordered data mode. Quota mode: none.",
    "IPv6: ADDRCONF(NETDEV_CHANGE): eth{a}: link becomes ready",
    "audit: type=1400 audit({t}:{n}): apparmor=\"DENIED\" operation=\"open\" profile=\"snap.{h}\" pid={n} comm=\"python3\"",
    "python3[{n}]: segfault at {h} ip 00007f{h} sp 00007ffd{h} error 4 in libc.so.6[7f{h}+195000]",
    "research-noise: tick {n}",
    "systemd-journald[{a}{b}]: Data hash table of /var/log/journal/{h}/system.journal has a fill level at 75.0 ({n} of {n} items)",
    "e1000e 0000:00:1f.6 eno1: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx",
    "nvme nvme0: I/O {n} QID {a} timeout, completion polled",
    "TCP: request_sock_TCP: Possible SYN flooding on port {n}. Sending cookies.  Check SNMP counters.",
    "docker0: port {a}(veth{h}) entered forwarding state",
    "kauditd_printk_skb: {n} callbacks suppressed",
)


def _noise(rng: random.Random) -> str:
    tpl = rng.choice(_NOISE)
    return tpl.format(a=rng.randint(0, 9), b=rng.randint(1, 9), n=rng.randint(1, 99999),
                      h=f"{rng.getrandbits(40):010x}", t=rng.randint(10**9, 2 * 10**9))


def _memcg_report(rng: random.Random, pid: int) -> list[str]:
    cg = f"/kubepods/burstable/pod{rng.getrandbits(64):016x}/{rng.getrandbits(128):032x}"
    comm = rng.choice(["node", "python3", "java", "Web Content", "x) y,pid=1 (z"])
    anon = rng.randint(10_000, 900_000)
    lines = [
        f"{comm} invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        f"CPU: 1 UID: 0 PID: {pid} Comm: {comm} Not tainted 6.18.44-fc-v595 #1 PREEMPT(none) ",
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x57/0x80",
        " dump_header+0x43/0x1c0",
        " oom_kill_process.cold+0x8/0x8a",
        " out_of_memory+0x214/0x500",
        " mem_cgroup_out_of_memory+0xc0/0x110",
        " try_charge_memcg+0x422/0x6f0",
        " </TASK>",
        "memory: usage 65536kB, limit 65536kB, failcnt 148",
        "memory+swap: usage 65536kB, limit 9007199254740988kB, failcnt 0",
        f"Memory cgroup stats for {cg}:",
    ]
    lines += [f"{k} {rng.randint(0, 10**8)}" for k in (
        "cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback", "swap",
        "pgpgin", "pgpgout", "pgfault", "pgmajfault", "inactive_anon", "active_anon",
        "inactive_file", "active_file", "unevictable", "hierarchical_memory_limit")]
    lines += [
        "Tasks state (memory values in pages):",
        "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name",
    ]
    for other in range(3):
        opid = pid - 3 + other
        lines.append(f"[{opid:7d}] {0:5d} {opid:5d} {2000:8d} {500:8d} {400:8d} {100:8d} {0:8d} {65536:8d} {0:8d}         {0:5d} sh")
    lines.append(f"[{pid:7d}] {0:5d} {pid:5d} {246244:8d} {24591:8d} {16192:8d} {8399:8d} {0:8d} {593920:8d} {0:8d}         {0:5d} {comm}")
    lines.append(
        f"oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg={cg},"
        f"task_memcg={cg},task={comm},pid={pid},uid=0"
    )
    lines.append(
        f"Memory cgroup out of memory: Killed process {pid} ({comm}) total-vm:984976kB, anon-rss:{anon}kB, "
        "file-rss:33596kB, shmem-rss:0kB, UID:0 pgtables:580kB oom_score_adj:0"
    )
    if rng.random() < 0.3:
        lines.append(f"oom_reaper: reaped process {pid} ({comm}), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB")
    return lines


def _global_report(rng: random.Random, pid: int) -> list[str]:
    lines = [
        "java invoked oom-killer: gfp_mask=0x14200ca(GFP_HIGHUSER_MOVABLE), nodemask=(null),  order=0, oom_score_adj=0",
        "java cpuset=/ mems_allowed=0",
        "CPU: 9 PID: 14881 Comm: java Tainted: G    B          ------------ T 4.14.67 #1",
        "Mem-Info:",
        "active_anon:57988 inactive_anon:147 isolated_anon:0",
        "Node 0 active_anon:231952kB inactive_anon:588kB active_file:2314276kB",
        "Free swap  = 0kB",
        "Total swap = 0kB",
        "4194174 pages RAM",
        "[ pid ]   uid  tgid total_vm      rss nr_ptes nr_pmds swapents oom_score_adj name",
    ]
    for i in range(300):
        opid = 1000 + i
        lines.append(f"[{opid:5d}] {0:5d} {opid:5d} {rng.randint(1000, 99999):8d} {rng.randint(10, 9999):8d} {12:7d} {4:7d} {0:8d}         {0:5d} worker-{i}")
    lines.append(f"[{pid:5d}] {1000:5d} {pid:5d} {5063909:8d} {119961:8d} {1661:7d} {4:7d} {0:8d}         {0:5d} java")
    lines.append(f"Out of memory: Kill process {pid} (java) score 900 or sacrifice child")
    lines.append(f"Killed process {pid} (java) total-vm:20255636kB, anon-rss:466160kB, file-rss:13684kB, shmem-rss:0kB")
    return lines


def generate(n_lines: int = N_LINES, seed: int = 1) -> tuple[list[str], int]:
    """The synthetic log (dmesg format) and how many kills it holds."""
    rng = random.Random(seed)
    out: list[str] = []
    t = 100.0
    kills = 0
    pid = 20000
    next_report = REPORT_EVERY
    while len(out) < n_lines:
        if len(out) >= next_report:
            pid += 7
            body = _global_report(rng, pid) if kills % 10 == 9 else _memcg_report(rng, pid)
            if len(out) + len(body) > n_lines:
                break
            kills += 1
            next_report += REPORT_EVERY
        else:
            body = [_noise(rng)]
        for msg in body:
            t += rng.random() * 0.002
            out.append(f"[{t:12.6f}] {msg}")
    while len(out) < n_lines:
        t += 0.001
        out.append(f"[{t:12.6f}] {_noise(rng)}")
    return out, kills


def run(n_lines: int = N_LINES, repeats: int = 3) -> dict[str, Any]:
    """Generate the log, parse it ``repeats`` times, report the best throughput."""
    lines, expected = generate(n_lines)
    best = float("inf")
    kills = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        records = parse_lines(lines, name="synthetic")
        best = min(best, time.perf_counter() - t0)
        kills = len(records)
    # The same log as file bytes: adds UTF-8 decoding and line splitting (what parse_file does).
    data = ("\n".join(lines) + "\n").encode()
    best_bytes = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        parse_bytes(data, name="synthetic")
        best_bytes = min(best_bytes, time.perf_counter() - t0)
    return {
        "benchmark": "oom-log parse",
        "lines": len(lines),
        "kills": kills,
        "expected_kills": expected,
        "seconds": round(best, 3),
        "lines_per_s": int(len(lines) / best),
        "from_bytes_lines_per_s": int(len(lines) / best_bytes),
        "target_lines_per_s": 500_000,
    }


def main(quick: bool = False) -> None:
    r = run(30_000, 1) if quick else run()
    print(f"oom-log parse: {r['lines']:,} synthetic dmesg lines, {r['kills']} of {r['expected_kills']} kills found: "
          f"{r['lines_per_s']:,} lines/s (from raw bytes, decoding included: {r['from_bytes_lines_per_s']:,} lines/s)")


if __name__ == "__main__":
    import benchargs  # beside this script (the tests load it as a module, without it)

    ap = benchargs.parser(__doc__)
    ap.add_argument("--json", action="store_true", help="the figures as one JSON object")
    args = ap.parse_args()
    if args.json:
        print(json.dumps(run(30_000, 1) if args.quick else run()))
    else:
        main(args.quick)
