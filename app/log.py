"""The app's log file (app.paths.log_file()): warnings and failures, with tracebacks, from every thread; they
still go to stderr too. Rotated at 1 MB, three files kept."""
import logging
import logging.handlers
import sys
import threading
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"


def start(path: Path) -> Path | None:
    """Log to `path` from now on; -> the path, or None when it cannot be written (the app runs on without)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=2**20, backupCount=3, encoding="utf-8")
    except OSError as e:
        print(f"switchboard: no log file ({e})", file=sys.stderr)
        return None
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.addHandler(logging.StreamHandler())  # stderr, as before there was a file
    root.setLevel(logging.WARNING)

    def uncaught(kind, value, tb):  # a bug in a Qt slot or the main thread: logged, and the app goes on
        logging.getLogger("switchboard").error("uncaught exception", exc_info=(kind, value, tb))

    sys.excepthook = uncaught
    threading.excepthook = lambda args: uncaught(args.exc_type, args.exc_value, args.exc_traceback)
    return path
