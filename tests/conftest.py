"""Shared test set-up: make tests/ importable (helpers.py, reference.py) whatever pytest's import
mode, and whether doascope is installed or found on PYTHONPATH."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_LOGGING_RULES", "qt.qpa.*=false")


def pytest_sessionfinish(session, exitstatus):
    session.config._doascope_exitstatus = int(exitstatus)


def pytest_unconfigure(config):
    # PySide6 6.12 with pyqtgraph can abort while the interpreter finalises the Qt objects of a
    # full window ("bool_dealloc", a refcount error inside the bindings), after every test has
    # run and the summary is printed. When Qt was used, leave with pytest's own status instead.
    if "PySide6.QtWidgets" in sys.modules and hasattr(config, "_doascope_exitstatus"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config._doascope_exitstatus)
