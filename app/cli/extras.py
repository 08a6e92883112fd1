"""What the command line adds around every command: the pip extras it needs, checked before any
work starts, and doascope's warnings printed as one line each."""

from __future__ import annotations

import sys
import warnings

# The pip extras a command needs before it starts (doascope.extras); --sim and --plot add theirs.
COMMAND_EXTRAS = {"gui": ("gui",), "serve": ("net",), "listen": ("net",), "demo": ("sim",), "bench": ("sim",),
                  "train": ("dnn", "sim"), "clip": ("dnn", "plot"), "meta": ("dnn",)}
META_EXTRAS = {"sinusoid": ("plot",), "calibration": ("sim", "plot")}   # `calibrate` needs dnn only


def require_extras(args) -> None:
    """Raise doascope.extras.MissingExtra (one line, exit 2) for the first extra the command lacks."""
    from doascope.extras import require

    require(*COMMAND_EXTRAS.get(args.command, ()), *META_EXTRAS.get(getattr(args, "meta_command", None), ()))
    if getattr(args, "sim", None):
        require("sim")
    if getattr(args, "plot", None):
        require("plot")
    if getattr(args, "mqtt", None):
        require("mqtt")


_python_show_warning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None):
    from doascope import DoascopeWarning

    if issubclass(category, DoascopeWarning):
        print(f"doascope: warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


def print_warnings_as_lines() -> None:
    """doascope's own warnings (DoascopeWarning) as `doascope: warning: ...` on stderr; others as
    Python prints them."""
    warnings.showwarning = _show_warning
