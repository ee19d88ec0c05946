"""The process that tests/test_conversation_store.py SIGKILLs while it saves a conversation. Not a test module.

    python tests/conversation_worker.py ROOT ID once KILL_AT_OP
        load conversation ID, mark it version 1 (title "version 1", every sentence "1") and save it, SIGKILLed
        just before its KILL_AT_OP-th file-system step (0: never); prints the steps it made
    python tests/conversation_worker.py ROOT ID loop
        save versions 1, 2, 3, ... of it until killed, printing "saving" before the first
Every version is whole: a reader that finds title "version n" must find every sentence equal to "n".
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.conversation_store import ConversationStore  # noqa: E402
from fs_steps import counted_ops  # noqa: E402


def mark(saved, n: int):
    saved.title = f"version {n}"
    for turn in saved.conversation.turns:
        for s in turn.sentences:
            s.text = str(n)


def main():
    root, conversation_id, mode = sys.argv[1:4]
    store = ConversationStore(root)
    saved = store.load(conversation_id)
    if mode == "once":
        mark(saved, 1)
        with counted_ops(int(sys.argv[4]) or None) as count:
            store.save(saved)
        print(count[0], flush=True)
        return
    print("saving", flush=True)
    n = 1
    while True:
        mark(saved, n)
        store.save(saved)
        n += 1


if __name__ == "__main__":
    main()
