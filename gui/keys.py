"""Keyboard paths between a search box and the list it filters: Down goes into the list, Esc
empties the search (and only a second Esc reaches the dialog or window behind it)."""

from __future__ import annotations

from .qt import QItemSelectionModel, QObject, QtCore, QtGui, QtWidgets, Qt


class SearchKeys(QObject):
    """Installed on ``edit``: Down/PageDown focus ``view`` (selecting its first row when none is
    current), Esc clears a non-empty ``edit``."""

    def __init__(self, edit: QtWidgets.QLineEdit, view: QtWidgets.QAbstractItemView) -> None:
        super().__init__(edit)
        self.edit = edit
        self.view = view
        edit.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QtCore.QEvent) -> bool:
        if watched is not self.edit or event.type() != QtCore.QEvent.Type.KeyPress:
            return False
        assert isinstance(event, QtGui.QKeyEvent)
        key = event.key()
        if key in (Qt.Key.Key_Down, Qt.Key.Key_PageDown):
            self.enter_view()
            return True
        if key == Qt.Key.Key_Escape and self.edit.text():
            self.edit.clear()
            return True
        return False

    def enter_view(self) -> None:
        model = self.view.model()
        if model is not None and model.rowCount() and not self.view.selectionModel().selectedRows():
            first = model.index(0, 0)
            self.view.selectionModel().setCurrentIndex(
                first, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
        self.view.setFocus(Qt.FocusReason.TabFocusReason)
