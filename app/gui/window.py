"""The main window: tabs discovered from doascope.app.gui.tabs, a status bar, clean shutdown."""

from __future__ import annotations

import gc
import signal
import sys
import time
from collections import deque

from PySide6 import QtCore, QtWidgets

from doascope.app.gui.tabs import discover_tabs


def tab_index(titles: list[str], wanted: str) -> int:
    """Index of the tab whose title starts with ``wanted`` (any case), or one clear error."""
    match = [i for i, t in enumerate(titles) if t.lower().startswith(wanted.lower())]
    if not match:
        from doascope import ParameterError

        raise ParameterError(f"no tab {wanted!r} here; the tabs are {', '.join(titles)}")
    return match[0]


class Context:
    """What tabs get from the window: the command-line arguments and the status bar."""

    def __init__(self, window, args):
        self.window, self.args = window, args

    def status(self, text: str | None, *, error: bool = False) -> None:
        bar = self.window.statusBar()
        bar.setStyleSheet("color: #ff6b6b" if error else "")
        bar.showMessage(text or "")


class MainWindow(QtWidgets.QMainWindow):
    def __init__(self, args=None):
        super().__init__()
        self.setWindowTitle("doascope")
        self.resize(1400, 860)
        self.context = Context(self, args)
        self.tabs_widget = QtWidgets.QTabWidget()
        self.setCentralWidget(self.tabs_widget)
        self.tabs = []
        for cls in discover_tabs():
            reason = cls.unavailable()
            if reason:
                continue  # a tab appears when it works; no placeholders
            tab = cls(self.context)
            self.tabs.append(tab)
            self.tabs_widget.addTab(tab.widget, cls.title)
        self.tabs_widget.currentChanged.connect(self._activate)
        wanted = getattr(args, "tab", None)
        if wanted:
            self.tabs_widget.setCurrentIndex(tab_index([t.title for t in self.tabs], wanted))
        self._activate(self.tabs_widget.currentIndex())
        # Everything built so far (Qt, numpy, scipy, pyqtgraph objects) lives as long as the window:
        # move it out of the collector's reach, or each full collection stalls the event loop for
        # 50-100 ms walking objects that are never garbage.
        gc.collect()
        gc.freeze()
        # Event-loop health: the largest gap between 10 ms ticks, for tests and the status bar.
        self.max_stall = 0.0
        self.stalls: deque[float] = deque(maxlen=3000)  # recent tick delays, seconds
        self._last_tick = time.monotonic()
        self._tick = QtCore.QTimer(self)
        self._tick.setInterval(10)
        self._tick.timeout.connect(self._on_tick)
        self._tick.start()

    def _activate(self, index: int) -> None:
        if 0 <= index < len(self.tabs):
            self.tabs[index].activate()

    def tab(self, title: str):
        return next(t for t in self.tabs if t.title == title)

    def _on_tick(self) -> None:
        now = time.monotonic()
        late = max(0.0, now - self._last_tick - 0.010)
        self.stalls.append(late)
        self.max_stall = max(self.max_stall, late)
        self._last_tick = now

    def closeEvent(self, event) -> None:
        for tab in self.tabs:
            tab.shutdown()
        super().closeEvent(event)


def _qt_messages(mode, context, message) -> None:
    # The offscreen platform (tests, screenshots) reports every unsupported window hint.
    if "propagateSizeHints" not in message:
        print(message, file=sys.stderr)


def check_gui_options(args) -> None:
    """What `doascope gui` refuses before opening a window: the same device `run` refuses, and no
    display to open it on."""
    from doascope import ParameterError
    from doascope.app.gui import can_open_window

    if not can_open_window():
        raise ParameterError("no display to open the GUI on: set DISPLAY, run it under `xvfb-run doascope gui ...`, "
                             "or use `doascope run` for the terminal view")
    if getattr(args, "device", None) is not None:
        from doascope.app.runtime.sources import check_device
        from doascope.hardware_profiles import load_profile

        profile = load_profile(args.profile) if getattr(args, "profile", None) else None
        check_device(args.device, profile)


def run_gui(args) -> int:
    """Open the window; returns when it is closed (or after --quit-after, saving --screenshot)."""
    check_gui_options(args)
    import pyqtgraph as pg

    from doascope.app.gui.widgets import set_dark_palette

    if getattr(args, "tab", None):  # a wrong name ends here, before any window exists
        tab_index([c.title for c in discover_tabs() if not c.unavailable()], args.tab)
    QtCore.qInstallMessageHandler(_qt_messages)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("doascope")
    set_dark_palette(app)
    pg.setConfigOptions(antialias=True, background="#202124", foreground="#e8eaed")
    win = MainWindow(args)
    win.show()
    # Python handles SIGINT/SIGTERM only when the interpreter runs: a timer gives it the chance.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: win.close())
    wake = QtCore.QTimer()
    wake.start(200)
    wake.timeout.connect(lambda: None)
    quit_after = getattr(args, "quit_after", None)
    if quit_after:
        def finish():
            if getattr(args, "screenshot", None):
                win.grab().save(args.screenshot)
            win.close()
        QtCore.QTimer.singleShot(int(quit_after * 1000), finish)
    app.exec()
    return 0
