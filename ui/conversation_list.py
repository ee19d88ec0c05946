"""The conversations sidebar: saved conversations, newest first, with search, new, rename and delete.

A passive view: it lists the rows it is given and asks for every change through its signals."""
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QInputDialog, QLabel, QLineEdit, QListWidget, QListWidgetItem, QMenu,
                               QMessageBox, QToolButton, QVBoxLayout, QWidget)

ID_ROLE = Qt.UserRole


class ConversationList(QWidget):
    newRequested = Signal()
    openRequested = Signal(str)           # conversation id
    renameRequested = Signal(str, str)    # id, new title
    deleteRequested = Signal(str)         # id; confirmed by the user
    searchChanged = Signal(str)

    def __init__(self):
        super().__init__(objectName="conversationList")
        title = QLabel("Conversations", objectName="panelTitle")
        self.new = QToolButton(text="New", toolTip="Start a new conversation (Ctrl+N)")  # compact: the title fits
        self.new.clicked.connect(self.newRequested)
        self.search = QLineEdit(placeholderText="Search conversations", clearButtonEnabled=True)
        self.search.textChanged.connect(self.searchChanged)
        self.list = QListWidget(wordWrap=True, uniformItemSizes=False)
        self.list.setTextElideMode(Qt.ElideRight)
        self.list.itemClicked.connect(self._open)
        self.list.itemActivated.connect(self._open)
        self.list.setContextMenuPolicy(Qt.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.note = QLabel(objectName="panelNote", wordWrap=True)
        self.note.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.note.hide()
        head = QHBoxLayout()
        head.addWidget(title, 1)
        head.addWidget(self.new)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 4, 8)
        layout.addLayout(head)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.note)

    def set_conversations(self, rows: list[tuple[str, str, str]], current: str | None, note: str = ""):
        """rows: (id, title, detail: when it was last changed, or the text a search found); current: the open one;
        note: files that could not be read, or why nothing is listed."""
        self.list.clear()
        for conversation_id, title, detail in rows:
            item = QListWidgetItem(f"{title}\n{detail}" if detail else title)
            item.setData(ID_ROLE, conversation_id)
            item.setToolTip(title + (f"\n{detail}" if detail else "") + "\nRight-click to rename or delete")
            self.list.addItem(item)
        self.set_current(current)
        self.note.setText(note)
        self.note.setVisible(bool(note))

    def set_current(self, conversation_id: str | None):
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ID_ROLE) == conversation_id:
                self.list.setCurrentItem(item)
                return
        self.list.clearSelection()
        self.list.setCurrentItem(None)

    def _open(self, item: QListWidgetItem):
        self.openRequested.emit(item.data(ID_ROLE))

    def _title(self, item: QListWidgetItem) -> str:
        return item.text().split("\n", 1)[0]

    def _menu(self, pos):
        item = self.list.itemAt(pos)
        if item is None:
            return
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self._rename(item))
        menu.addAction("Delete…", lambda: self._delete(item))
        menu.exec(self.list.viewport().mapToGlobal(pos))

    def _rename(self, item: QListWidgetItem):
        title, ok = QInputDialog.getText(self, "Rename conversation", "Title:", text=self._title(item))
        if ok and title.strip():
            self.renameRequested.emit(item.data(ID_ROLE), title.strip())

    def _delete(self, item: QListWidgetItem):
        answer = QMessageBox.question(self, "Delete conversation",
                                      f"Delete “{self._title(item)}” and its routing trace? This cannot be undone.")
        if answer == QMessageBox.Yes:
            self.deleteRequested.emit(item.data(ID_ROLE))
