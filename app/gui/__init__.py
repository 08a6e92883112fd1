"""doascope's Qt GUI (PySide6 + pyqtgraph). Widgets are touched only on the GUI thread: the
window polls the engine's latest frame at ~30 Hz and never waits on the engine."""

from __future__ import annotations

import os


def display_available() -> bool:
    """Whether a window can be shown: a display server and an importable Qt."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        import pyqtgraph  # noqa: F401
        from PySide6 import QtWidgets  # noqa: F401
    except Exception:
        return False
    return True
