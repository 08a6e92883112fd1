"""doascope's Qt GUI (PySide6 + pyqtgraph). Widgets are touched only on the GUI thread: the
window polls the engine's latest frame at ~30 Hz and never waits on the engine."""

from __future__ import annotations

import os


def display_server() -> bool:
    """Whether a display server is there to show a window on: WAYLAND_DISPLAY, or a DISPLAY whose
    local X server socket exists (Qt aborts the process when it cannot connect)."""
    if os.environ.get("WAYLAND_DISPLAY"):
        return True
    display = os.environ.get("DISPLAY", "")
    if not display:
        return False
    if display.startswith(":"):  # a local X server listens on a socket named after its number
        return os.path.exists(f"/tmp/.X11-unix/X{display[1:].split('.')[0]}")
    return True


def can_open_window() -> bool:
    """Whether Qt can create the window: a display server, or a Qt platform that needs none
    (QT_QPA_PLATFORM=offscreen, vnc, ...)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0]
    if platform and platform not in ("xcb", "wayland"):
        return True
    return display_server()


def display_available() -> bool:
    """Whether a window can be shown: a display server and an importable Qt."""
    if not display_server():
        return False
    try:
        import pyqtgraph  # noqa: F401
        from PySide6 import QtWidgets  # noqa: F401
    except Exception:
        return False
    return True
