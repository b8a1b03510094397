"""Restarting launched workers: exponential backoff, a healthy-run reset, a crash-loop guard.

A *slot* is one launched command across its lives: a restarted worker is a new process (new
worker id, new PID) in the same slot, so "slot 3, 5th life, 4 OOMs" can be told. A child of
an attached parent (a pool, a cluster) that dies leaves its slot free, and the child the parent
starts next takes it (the lowest free one; a child started while its predecessor still runs, as
a gunicorn reload does, waits a moment for that slot: core/intake.py).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .causes import EXIT, HEAP_OOM, OOM_KILL, TERMINATED
from .errors import BadInput
from .events import CrashLoop, WorkerRef
from .launch import LaunchSpec

_MEMORY_DEATHS = (OOM_KILL, HEAP_OOM)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """``[restart]`` of the settings file, and what the engine follows for a launched worker."""

    max: int = 0
    backoff_initial_s: float = 1.0
    backoff_cap_s: float = 60.0
    healthy_s: float = 60.0
    crash_loop_kills: int = 2
    crash_loop_window_s: float = 60.0

    def __post_init__(self) -> None:
        # The names are the settings file's keys ([restart]); --restart N sets max.
        if self.max < 0:
            raise BadInput(f"max: {self.max} restarts: give 0 or more")
        if not self.backoff_initial_s > 0:
            # A zero first delay would double to zero forever: restarts with no backoff at all.
            raise BadInput(f"backoff_initial_s: {self.backoff_initial_s:g} must be above 0")
        if self.backoff_cap_s < self.backoff_initial_s:
            raise BadInput(f"backoff_cap_s {self.backoff_cap_s:g} must not be below backoff_initial_s "
                           f"{self.backoff_initial_s:g}")
        if self.healthy_s < 0:
            raise BadInput(f"healthy_s: {self.healthy_s:g} must not be negative")
        if self.crash_loop_kills < 1:
            raise BadInput(f"crash_loop_kills: {self.crash_loop_kills} must be 1 or more")
        if not self.crash_loop_window_s > 0:
            raise BadInput(f"crash_loop_window_s: {self.crash_loop_window_s:g} must be above 0")


@dataclass(slots=True)
class Slot:
    number: int
    spec: LaunchSpec | None  # None: a child of an attached parent (the parent respawns it)
    policy: RestartPolicy
    lives: int = 0
    restarts: int = 0
    streak: int = 0  # restarts since the last healthy run: the backoff's exponent
    deaths: dict[str, int] = field(default_factory=dict)
    memory_deaths: deque[float] = field(default_factory=deque)
    stopped_reason: str | None = None

    def died(self, cause: str, by: str | None, exit_code: int | None, ran_s: float,
             now_mono: float, *, not_found: bool = False) -> tuple[float | None, str]:
        """The delay before the next life, or None with the reason there is none.

        ``not_found``: the shell could not find the command; another life would not either."""
        self.deaths[cause] = self.deaths.get(cause, 0) + 1
        if cause in _MEMORY_DEATHS:
            self.memory_deaths.append(now_mono)
        while self.memory_deaths and now_mono - self.memory_deaths[0] > self.policy.crash_loop_window_s:
            self.memory_deaths.popleft()
        if cause == TERMINATED and by != "policy":
            return None, f"terminated by {by}"
        if cause == EXIT and exit_code == 0:
            return None, "it exited cleanly"
        if not_found:
            return None, "its command was not found: not restarted (check the spelling, or give the full path)"
        if len(self.memory_deaths) >= self.policy.crash_loop_kills:
            self.stopped_reason = self._crash_loop_reason()
            return None, self.stopped_reason
        if self.restarts >= self.policy.max:
            return None, f"no restarts left ({self.policy.max} allowed)"
        if ran_s >= self.policy.healthy_s:
            self.streak = 0  # a healthy run forgives the earlier failures
        delay = min(self.policy.backoff_cap_s, self.policy.backoff_initial_s * 2 ** self.streak)
        self.streak += 1
        self.restarts += 1
        return delay, f"restart {self.restarts} of {self.policy.max} in {delay:g} s"

    def cause_changed(self, previous: str, cause: str, died_mono: float) -> str | None:
        """A late kernel record turned a death into another cause: count it as that cause.

        Returns the crash-loop reason when this makes one (the pending restart must then not
        happen); None otherwise.
        """
        if self.deaths.get(previous, 0) > 0:
            self.deaths[previous] -= 1
            if not self.deaths[previous]:
                del self.deaths[previous]
        self.deaths[cause] = self.deaths.get(cause, 0) + 1
        if cause not in _MEMORY_DEATHS or previous in _MEMORY_DEATHS:
            return None
        self.memory_deaths.append(died_mono)
        self.memory_deaths = deque(sorted(self.memory_deaths))
        latest = self.memory_deaths[-1]
        while self.memory_deaths and latest - self.memory_deaths[0] > self.policy.crash_loop_window_s:
            self.memory_deaths.popleft()
        if self.stopped_reason is None and self.spec is not None and \
                len(self.memory_deaths) >= self.policy.crash_loop_kills:
            self.stopped_reason = self._crash_loop_reason()
            return self.stopped_reason
        return None

    def crash_loop(self, t: float, ref: WorkerRef, reason: str) -> CrashLoop:
        """The event telling that the guard tripped on ``ref``'s death; ``reason`` is what
        ``died``/``cause_changed`` returned."""
        return CrashLoop(t, ref, len(self.memory_deaths), self.policy.crash_loop_window_s,
                         f"{self.summary()}: {reason}")

    def _crash_loop_reason(self) -> str:
        return (f"crash loop: {len(self.memory_deaths)} memory deaths (oom-kill/heap-oom) within "
                f"{self.policy.crash_loop_window_s:g} s; not restarted again until you start it")

    def summary(self) -> str:
        causes = ", ".join(f"{n} {c}" for c, n in sorted(self.deaths.items()))
        return f"slot {self.number}, life {self.lives}" + (f", deaths: {causes}" if causes else "")


class Slots:
    """Numbers slots, and keeps the slots pool children left free (a slot in use is held by
    its worker alone: a launch without restarts takes a slot, and churn must not keep them all)."""

    def __init__(self) -> None:
        self._slot_numbers = itertools.count(1)
        self._free_child_slots: dict[int, list[Slot]] = {}
        # Told the parent PID whenever one of its children leaves a slot free: a replacement
        # the parent started before its predecessor ended may be waiting for it (core/intake.py).
        self.on_child_slot_freed: Callable[[int], None] | None = None

    def new_slot(self, spec: LaunchSpec, policy: RestartPolicy) -> Slot:
        spec.argv()  # a bad command is refused before it takes a slot
        return Slot(next(self._slot_numbers), spec, policy)

    def child_slot(self, parent_pid: int) -> Slot:
        """The lowest slot a child of this parent left free, else a new one."""
        free = self._free_child_slots.get(parent_pid)
        if free:
            lowest = min(free, key=lambda s: s.number)
            free.remove(lowest)
            return lowest
        return Slot(next(self._slot_numbers), None, RestartPolicy())

    def has_free_child_slot(self, parent_pid: int) -> bool:
        return bool(self._free_child_slots.get(parent_pid))

    def child_died(self, parent_pid: int, slot: Slot, cause: str) -> None:
        """A pool child's slot waits for the child its parent starts in its place."""
        slot.deaths[cause] = slot.deaths.get(cause, 0) + 1
        self._free_child_slots.setdefault(parent_pid, []).append(slot)
        if self.on_child_slot_freed is not None:
            self.on_child_slot_freed(parent_pid)
