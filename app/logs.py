"""The package's logging, set up once by the CLI (``-v``, ``--log-level``).

Every module logs to ``logging.getLogger(__name__)``; nothing is printed by the library itself.
Warnings and errors reach stderr as ``doascope: message`` lines by default; ``-v`` adds what is
going on (devices reopened, files closed), ``-vv`` or ``--log-level debug`` the tracebacks and
the audio libraries' own messages. A command with a live view (``run``) routes the lines through
it with :func:`set_printer` so that they do not tear the view.
"""

from __future__ import annotations

import logging
import sys

LEVELS = ("debug", "info", "warning", "error")

_printer = None


def set_printer(fn) -> None:
    """Send log lines to ``fn(text)`` instead of stderr (None: back to stderr)."""
    global _printer
    _printer = fn


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if _printer is not None:
                _printer(text)
            else:
                print(text, file=sys.stderr, flush=True)
        except Exception:  # never let logging break the program
            self.handleError(record)


def setup_logging(verbose: int = 0, level: str | None = None) -> None:
    """Configure the ``doascope`` logger: ``level`` by name, else WARNING, INFO, DEBUG for
    ``verbose`` 0, 1, 2+."""
    if level is None:
        level = LEVELS[max(0, 2 - int(verbose or 0))]
    value = getattr(logging, level.upper())
    root = logging.getLogger("doascope")
    for h in list(root.handlers):
        if isinstance(h, _Handler):
            root.removeHandler(h)
    handler = _Handler()
    fmt = "doascope: %(message)s" if value > logging.DEBUG else "doascope: %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(value)
    root.propagate = False
