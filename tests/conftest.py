"""Shared test set-up: make tests/ importable (helpers.py, reference.py) whatever pytest's import
mode, and whether doascope is installed or found on PYTHONPATH."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_LOGGING_RULES", "qt.qpa.*=false")
