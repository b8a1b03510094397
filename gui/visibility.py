"""Which workers' curves the plot draws: the one state the legend, the table's check boxes and the
table's filter share, so hiding a curve in one place hides it everywhere."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .qt import QObject, Signal


class CurveVisibility(QObject):
    """Workers the user hid (legend click, table check box) and the table filter's verdict.

    ``changed`` fires on every change of either; the plot redraws, the legend and the table's
    check boxes repaint. The filter is asked, not copied: a worker that starts or changes state
    while a filter is typed in is judged by the table's own rule at the next redraw."""

    changed = Signal()
    # The user's choice alone (not the filter's): the table repaints its check boxes on it. The
    # filter's verdict changes while the table's proxy is mid-way through its own rows, where a
    # dataChanged from the source would cut into the proxy's change.
    hidden_changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.hidden: set[str] = set()
        # Worker id -> does the table's filter let it through; None: no filter in use.
        self.passes_filter: Callable[[str], bool] | None = None

    def is_hidden(self, worker_id: str) -> bool:
        """Hidden by the user (the check box is off), whatever the filter says."""
        return worker_id in self.hidden

    def filtered_out(self, worker_id: str) -> bool:
        return self.passes_filter is not None and not self.passes_filter(worker_id)

    def shown(self, worker_id: str) -> bool:
        return worker_id not in self.hidden and not self.filtered_out(worker_id)

    def set_hidden(self, worker_id: str, hidden: bool) -> None:
        if hidden == (worker_id in self.hidden):
            return
        if hidden:
            self.hidden.add(worker_id)
        else:
            self.hidden.discard(worker_id)
        self.hidden_changed.emit()
        self.changed.emit()

    def toggle(self, worker_id: str) -> None:
        self.set_hidden(worker_id, worker_id not in self.hidden)

    def set_filter(self, passes: Callable[[str], bool] | None) -> None:
        self.passes_filter = passes
        self.changed.emit()

    def forget(self, worker_ids: Iterable[str]) -> None:
        self.hidden.difference_update(worker_ids)
