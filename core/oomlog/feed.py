"""The live kernel log inside the engine: one source, one incremental parser.

The engine registers :meth:`KernelFeed.fileno` in its selectors loop and calls
:meth:`KernelFeed.read` when it is readable — and also right before it decides an exit's
cause, because the kernel prints its ``Killed process`` line before the victim is gone: the
record is usually in the ring buffer by the time the pidfd reports the exit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import KernelClock, KernelLine, KillRecord, LiveSource, OomParser, SourceState, open_live_source


@dataclass(frozen=True, slots=True)
class FeedLine:
    line: KernelLine
    oom: bool


class KernelFeed:
    def __init__(self, source: LiveSource, states: list[SourceState]) -> None:
        self.source = source
        self.states = states
        self.clock = KernelClock()
        self.parser = OomParser(clock=self.clock)
        self.ok = True

    @classmethod
    def open(cls) -> tuple[KernelFeed | None, list[SourceState]]:
        source, states = open_live_source()
        if source is None:
            return None, states
        return cls(source, states), states

    def fileno(self) -> int:
        return self.source.fileno()

    def read(self) -> tuple[list[FeedLine], list[KillRecord], bool]:
        """Lines now available (with a wall time where they carry only the kernel's), the kill
        records they completed, and whether the source ended."""
        lines = self.source.read_available()
        out: list[FeedLine] = []
        records: list[KillRecord] = []
        boot: float | None = None
        for line in lines:
            if line.wall_time_unix is None and line.kernel_time_s is not None:
                # One offset a batch: the lines of one read are milliseconds apart.
                boot = self.clock.boot_time_unix() if boot is None else boot
                line = replace(line, wall_time_unix=boot + line.kernel_time_s,
                               wall_time_source=self.clock.source)
            matched = self.parser.matched
            found = self.parser.feed(line)
            records.extend(found)
            out.append(FeedLine(line, bool(found) or self.parser.matched != matched))
        # Pipe sources (journalctl, dmesg) end when their follower dies; /dev/kmsg never does.
        ended = bool(getattr(self.source, "ended", False))
        return out, records, ended

    def flush(self) -> list[KillRecord]:
        return self.parser.flush()

    def close(self) -> None:
        self.source.close()
