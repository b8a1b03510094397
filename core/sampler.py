"""Sampling inside the engine: each tick's memory reads, the levels they cross, the growth
forecast, and what a level's policy does (terminate) when a worker enters it.

It runs on the engine thread only and reaches the engine through what it is given: the event
queue, the worker table, a terminate, and the slow tick's other chores (once a second).
"""

from __future__ import annotations

import os
import selectors
import time
from collections.abc import Callable

from . import procfs
from .cgroup.limited import MemoryCgroup
from .errors import Error, WorkerGone
from .events import Event, LevelPending, LevelsChanged, Notice, Sample, Samples, Threshold
from .crossings import (BURST_INTERVAL_S, BURST_S, FAST_HOLD_S, FAST_INTERVAL_S, FAST_LOOKAHEAD_TICKS,
                        climb_outlook, imminent, kernel_levels)
from .forecast import GROWING_MIN_BYTES_PER_S
from .cgroup.notify import DEFAULT_PSI_TRIGGER, WatchUnavailable, watch_cgroup
from .procfs import PAGE_SIZE
from .sizes import format_size
from .thresholds import CRITICAL, LEVEL_RANK, NORMAL, ThresholdConfig, heap_values, limit_values
from .worker import Worker, WorkerTable

# What need not be read every tick (swap, cgroup limits, a full look for exits) is read at
# most once a second.
SLOW_PERIOD_S = 1.0


class Sampler:
    def __init__(
        self,
        *,
        emit: Callable[[Event], None],
        selector: selectors.BaseSelector,
        interval_s: float,
        table: WorkerTable,
        thresholds: ThresholdConfig,
        terminate: Callable[[Worker, str, bool, float | None, str | None], None],
        slow_tick: Callable[[float], None],
    ) -> None:
        self._emit = emit
        self._selector = selector
        self._interval_s = interval_s
        self._table = table
        self._live = table.live
        self._terminate = terminate
        self._slow_tick = slow_tick
        self.thresholds = thresholds
        self.swap_enabled = procfs.swap_total_bytes() > 0
        self._next_slow = 0.0
        self.suspects: list[Worker] = []  # read as gone or empty by this tick's sampling pass
        self.sampling_cpu_s = 0.0
        self.worker_samples = 0
        self.kernel_wakeups = 0
        self._watch_refused: str | None = None  # told once: why the kernel cannot notify

    def sample(self, only: list[Worker] | None = None) -> None:
        """One sampling pass: every live worker, or ``only`` these (a kernel wake-up, the fast
        ones between ticks), which skips the once-a-second chores."""
        cpu0 = time.thread_time()
        now = time.time()
        mono = time.monotonic()
        slow_tick = only is None and mono >= self._next_slow
        if slow_tick:
            # Swap (from the costlier status file) and cgroup limits (which rarely change)
            # are read at most once a second; statm and cgroup usage every tick.
            self._next_slow = mono + SLOW_PERIOD_S
            self._slow_tick(mono)
        read_swap = slow_tick and self.swap_enabled
        usage_now: dict[MemoryCgroup, int | None] = {}
        samples: list[Sample] = []
        append = samples.append
        hits: list[tuple[Worker, str, int, int | None]] = []  # level entries that may act
        metric_is_rss = self.thresholds.metric == "rss"
        metric_is_heap = self.thresholds.metric == "heap"
        pread = os.pread
        horizon_s = FAST_LOOKAHEAD_TICKS * self._interval_s
        for w in (self._live if only is None else only):
            # The statm read is inlined, not a StatmReader method: this loop is the engine's
            # hot path, and a method call per worker costs a third of it. statm's "shared" is
            # RssFile + RssShmem, so resident - shared is RssAnon (the OOM killer's anon-rss).
            try:
                fields = pread(w.statm_fd, 96, 0).split(b" ", 3)
                resident = int(fields[1])
            except (OSError, IndexError, ValueError):
                self.suspects.append(w)  # exiting: its pidfd (or Exits.poll) tells the loop
                continue
            if not resident:
                # Dead and not yet reaped (a zombie's statm is all zeros): not a sample of its
                # memory, and a curve must not plunge to 0 at every death. Its pidfd fires next.
                self.suspects.append(w)
                continue
            rss = resident * PAGE_SIZE
            anon = (resident - int(fields[2])) * PAGE_SIZE
            if read_swap and w.statm is not None:
                w.swap = w.statm.read_swap()
            cg = w.cgroup
            ht = w.heap.totals
            # The trend follows the metric the levels use (heap: the reported heap, else anon).
            w.last_value = rss if metric_is_rss else (ht.used if metric_is_heap and ht is not None else anon)
            w.trend.add(mono, w.last_value)
            own_usage: int | None = None
            if cg is None and ht is None and w.rate is None:
                append(Sample(w.ref, rss, anon, w.swap))
            else:
                usage = None
                if cg is not None:
                    # Workers sharing a cgroup (a pool, a container) share one read per tick.
                    if cg in usage_now:
                        usage = usage_now[cg]
                    else:
                        usage = usage_now[cg] = cg.usage_bytes()
                if w.limited is not None:
                    own_usage = usage  # its own cgroup: the usage is this worker's alone
                if ht is None:
                    append(Sample(w.ref, rss, anon, w.swap, usage, w.cgroup_limit, None, None, None,
                                  w.rate, w.eta_limit_s, w.eta_crit_s))
                else:
                    append(Sample(w.ref, rss, anon, w.swap, usage, w.cgroup_limit,
                                  ht.used, ht.total, ht.limit, w.rate, w.eta_limit_s, w.eta_crit_s))
            # What the kernel compares with the limit: the cgroup's usage where it is this
            # worker's alone, else anon RSS (the part of a process the OOM killer counts).
            limit_value = own_usage if own_usage is not None else anon
            w.velocity.add(mono, limit_value)
            # Hot path: one velocity read, plain arithmetic (crossings.climb_outlook says why).
            to_limit, fast = climb_outlook(w.velocity.bytes_per_s(), limit_value, w.cgroup_limit,
                                           w.last_value, w.crit_bytes, horizon_s)
            if fast:
                w.fast_until = mono + FAST_HOLD_S
            if w.warn_bytes is not None or w.crit_bytes is not None or w.level != NORMAL:
                if metric_is_heap and ht is not None:
                    warn_v, crit_v = heap_values(w.thresholds, ht.used, ht.old_used)
                else:  # without a heap reporter anonymous RSS stands in for the heap
                    warn_v = crit_v = rss if metric_is_rss else anon
                cfg = w.thresholds
                if own_usage is not None and not metric_is_heap:
                    # Percent levels compare what the limit counts: the cgroup's usage.
                    warn_v, crit_v = limit_values(cfg, own_usage, warn_v, crit_v)
                sustain = cfg.sustain_s
                if sustain > 0 and imminent(to_limit, sustain):
                    sustain = 0.0  # the kernel's limit comes first: sustain must not let it win
                level = w.tracker.update(warn_v, crit_v, w.warn_bytes, w.crit_bytes, mono,
                                         sustain, cfg.hysteresis)
                value = crit_v if level == CRITICAL else warn_v
                pending = w.tracker.pending() if sustain > 0 else None
                if (pending[0] if pending else None) != w.pending:
                    if pending is not None:
                        p_level, p_since = pending
                        p_value = crit_v if p_level == CRITICAL else warn_v
                        self._emit(LevelPending(now, w.ref, p_level, self.thresholds.metric, p_value,
                                                w.crit_bytes if p_level == CRITICAL else w.warn_bytes,
                                                now - (mono - p_since), sustain))
                    else:
                        self._emit(LevelPending(now, w.ref, None, self.thresholds.metric, value, None,
                                                None, sustain))
                    w.pending = pending[0] if pending else None
                if level != w.level:
                    limit_b = w.crit_bytes if level == CRITICAL else w.warn_bytes
                    # Stamped now, not with the pass's start: under load the reads before this
                    # one take milliseconds, and a crossing's time must not precede what it saw
                    # (bench_policy_race read -1.4 ms at a load of 10).
                    self._emit(
                        Threshold(time.time(), w.ref, level, self.thresholds.metric, value,
                                  limit_b if level != NORMAL else None, previous=w.level)
                    )
                    if level != NORMAL and LEVEL_RANK[level] > LEVEL_RANK[w.level]:
                        hits.append((w, level, value, limit_b))
                    w.level = level
        if samples:
            self._emit(Samples(now, tuple(samples)))
        self.worker_samples += len(samples)
        self.sampling_cpu_s += time.thread_time() - cpu0
        for w, level, value, limit_b in hits:
            action = w.thresholds.on_crit if level == CRITICAL else w.thresholds.on_warn
            if action == "terminate":
                self._policy_terminate(w, level, value, limit_b)

    def forecast(self) -> None:
        """Growth rate and time to the critical level and to the cgroup limit, once a second."""
        for w in self._live:
            rate = w.trend.rate_bytes_per_s()
            w.rate = rate
            if rate is None or rate < GROWING_MIN_BYTES_PER_S:
                w.eta_limit_s = w.eta_crit_s = None  # not growing: no time to anything
                continue
            limit = w.cgroup_limit if self.thresholds.metric != "heap" else (
                w.heap.totals.limit if w.heap.totals is not None else w.cgroup_limit)
            w.eta_limit_s = w.trend.eta_s(limit, w.last_value)
            w.eta_crit_s = w.trend.eta_s(w.crit_bytes, w.last_value)

    def refresh_comms(self) -> None:
        """A launched worker's comm changes when its wrapper execs the program: follow it for
        its first seconds, so a kernel record's comm can be checked against it."""
        for w in self._live:
            if w.comm_checks_left > 0:
                w.comm_checks_left -= 1
                w.comm = procfs.comm(w.ref.pid) or w.comm

    def _policy_terminate(self, w: Worker, level: str, value: int, limit_b: int | None) -> None:
        if w.terminating_by is not None:
            return
        setting = w.thresholds.crit if level == CRITICAL else w.thresholds.warn
        reason = (
            f"{w.thresholds.metric} {format_size(value)} at or above {level} "
            f"{setting} ({format_size(limit_b)})"
        )
        try:
            self._terminate(w, "policy", False, w.thresholds.grace_s, reason)
        except Error as e:
            self._emit(Notice(time.time(), "warning",
                              f"policy could not terminate {w.ref.name} (PID {w.ref.pid}): {e}", w.ref))

    def announce_own_levels(self, w: Worker) -> None:
        """A new worker that the settings file gives levels of its own: told like any change,
        right after the worker itself, so the window and a recording know them."""
        if w.override is not None:
            self._emit(LevelsChanged(time.time(), w.ref, w.thresholds))

    def set_worker_thresholds(self, w: Worker, config: ThresholdConfig | None) -> None:
        if w.exited:
            raise WorkerGone(f"worker {w.ref.id} ({w.ref.name}, PID {w.ref.pid}) has already exited")
        before = w.thresholds if w.override is not None else None
        w.override = config
        w.refresh_levels(self.thresholds)
        self.watch_own_cgroup(w)
        # The event says what is in force: an override is compared on the global metric.
        after = w.thresholds if config is not None else None
        if after != before:
            self._emit(LevelsChanged(time.time(), w.ref, after))

    def set_thresholds(self, config: ThresholdConfig) -> None:
        changed = config != self.thresholds
        self.thresholds = config
        for w in self._table.by_id.values():
            w.refresh_levels(config)
            self.watch_own_cgroup(w)
        if changed:
            self._emit(LevelsChanged(time.time(), None, config))

    # ------------------------------------------------------- kernel-notified crossings

    def watch_own_cgroup(self, w: Worker) -> None:
        """Ask the kernel to wake us when a launched worker's own cgroup crosses its levels
        (core/crossings.py says why the ladder above each). Only a cgroup oomscope made for this
        worker: its usage is this worker's alone. Where the kernel cannot, say so once; sampling
        still sees the crossing, at the interval and faster while a worker climbs fast."""
        cg = w.cgroup
        if w.limited is None or cg is None or w.exited or self._watch_refused is not None:
            return
        levels = kernel_levels([w.warn_bytes, w.crit_bytes], w.cgroup_limit)
        if w.watch is not None:
            if w.watch.levels == tuple(levels):
                return
            drop_watch(self._selector, w)
        try:
            watch = watch_cgroup(cg.version, cg.directory, levels,
                                 psi_trigger=DEFAULT_PSI_TRIGGER if cg.version == 2 else None)
        except WatchUnavailable as e:
            self._watch_refused = str(e)
            self._emit(Notice(time.time(), "warning",
                              f"the kernel cannot notify crossings here ({e}): levels are checked at "
                              f"each sample ({self._interval_s:g} s, faster while a worker climbs fast)",
                              w.ref))
            return
        w.watch = watch
        self._selector.register(watch.fileno(), selectors.EVENT_READ, lambda: self._on_crossing(w))

    def rewatch(self) -> None:
        """Levels may have moved with a limit (the slow tick): keep the kernel's in step."""
        for w in self._live:
            if w.limited is not None:
                self.watch_own_cgroup(w)

    def _on_crossing(self, w: Worker) -> None:
        """The kernel says the worker's cgroup crossed a level: sample it now, then fast."""
        watch = w.watch
        if watch is None:
            return
        crossing = watch.read()
        if crossing is None or w.exited:
            drop_watch(self._selector, w)
            return
        self.kernel_wakeups += 1
        now = time.monotonic()
        w.fast_until = now + FAST_HOLD_S
        w.burst_until = now + BURST_S
        self.sample([w])
        if crossing.events.get("high") and not w.high_told:
            w.high_told = True  # once a worker: the kernel counts every reclaim pass
            limited = w.limited
            high = f" {format_size(limited.high_bytes)}" if limited is not None and limited.high_bytes else ""
            self._emit(Notice(time.time(), "warning",
                              f"{w.ref.name} (PID {w.ref.pid}) reached its memory.high{high} "
                              f"(usage {format_size(crossing.usage_bytes)}, limit "
                              f"{format_size(w.cgroup_limit)}): the kernel is throttling it", w.ref))

    def fast_workers(self, now: float) -> tuple[list[Worker], float]:
        """The workers to sample between ticks, and how often: every FAST_INTERVAL_S, or every
        BURST_INTERVAL_S while one of them is in the burst after a kernel wake-up."""
        fast = [w for w in self._live if w.fast_until > now]
        burst = any(w.burst_until > now for w in fast)
        return fast, (BURST_INTERVAL_S if burst else FAST_INTERVAL_S)


def drop_watch(selector: selectors.BaseSelector, w: Worker) -> None:
    """Stop the kernel's notifications for a worker (before its cgroup goes)."""
    if w.watch is None:
        return
    try:
        selector.unregister(w.watch.fileno())
    except (KeyError, ValueError):
        pass
    w.watch.close()
    w.watch = None
