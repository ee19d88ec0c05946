"""ConversationsController: the conversations sidebar (ui/conversation_list.py) on the saved conversations
(app/conversation_store.py).

The open conversation is written when it has something to keep: after the user sends a message, after every
finished reply and edit, and when its system prompt or settings change. A new conversation is only listed once
its first message is sent. Opening one (or New) emits `opened`, and the main controller shows it."""
from datetime import datetime

from PySide6.QtCore import QObject, Signal

from engine.errors import SwitchboardError

from .conversation import Conversation
from .conversation_store import ConversationStore, SavedConversation


class ConversationsController(QObject):
    opened = Signal(object)  # the SavedConversation to show, or None for a new, empty one

    def __init__(self, store: ConversationStore, view, message):
        """view: the sidebar; message(text): tell the user (the status bar)."""
        super().__init__(view)
        self.store, self.view, self._message = store, view, message
        self.saved: SavedConversation | None = None  # the open conversation, once written
        self._query = ""
        view.newRequested.connect(self.new)
        view.openRequested.connect(self.open)
        view.renameRequested.connect(self.rename)
        view.deleteRequested.connect(self.delete)
        view.searchChanged.connect(self.search)

    def open_latest(self):
        """At start: the conversation changed most recently, else a new one."""
        latest = self.store.list()[:1]
        self.open(latest[0].id) if latest else self.new()

    def new(self):
        self.saved = None
        self.refresh()
        self.opened.emit(None)

    def open(self, conversation_id: str):
        if self.saved is not None and self.saved.id == conversation_id:
            return
        try:
            saved = self.store.load(conversation_id)
        except SwitchboardError as e:  # deleted or damaged since it was listed
            self._message(str(e))
            self.refresh()
            return
        self.saved = saved
        self.refresh()
        self.opened.emit(saved)

    def save(self, conversation: Conversation, system_prompt: str, settings):
        """Write the open conversation (made on its first save); a failure is told, and the chat goes on."""
        try:
            if self.saved is None:
                self.saved = self.store.new(system_prompt, settings)
            self.saved.conversation, self.saved.system_prompt, self.saved.settings = conversation, system_prompt, \
                settings
            self.store.save(self.saved)
        except (OSError, SwitchboardError) as e:
            self._message(f"The conversation could not be saved in {self.store.root}: {e}")
        self.refresh()

    def rename(self, conversation_id: str, title: str):
        try:
            renamed = self.store.rename(conversation_id, title)
        except (OSError, SwitchboardError) as e:
            self._message(f"Could not rename the conversation: {e}")
        else:
            if self.saved is not None and self.saved.id == conversation_id:
                self.saved.title = renamed.title
        self.refresh()

    def delete(self, conversation_id: str):
        try:
            self.store.delete(conversation_id)
        except (OSError, SwitchboardError) as e:
            self._message(f"Could not delete the conversation: {e}")
            return
        if self.saved is not None and self.saved.id == conversation_id:
            self.new()
        else:
            self.refresh()

    def search(self, query: str):
        self._query = query
        self.refresh()

    def refresh(self):
        """List the conversations (those matching the search, with the text it found) and what could not be read."""
        found = self.store.search(self._query) if self._query.strip() else self.store.list()
        rows = [(s.id, s.title, s.snippet or when(s.updated)) for s in found]
        note = "\n".join(self.store.problems) or ("No conversation holds these words." if self._query.strip() and
                                                  not rows else "")
        self.view.set_conversations(rows, self.saved.id if self.saved else None, note)


def when(iso: str, now: datetime | None = None) -> str:
    """A saved time as the list shows it: "today 14:03", "Mon 09:12" within a week, else "2026-11-30"."""
    try:
        t = datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return ""
    now = now or datetime.now().astimezone()
    days = (now.date() - t.date()).days
    return f"today {t:%H:%M}" if days == 0 else f"{t:%a %H:%M}" if 0 < days < 7 else f"{t:%Y-%m-%d}"
