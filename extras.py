"""Optional parts of doascope (pip extras) and the one-line error a missing one ends in.

A bare ``pip install doascope`` localizes files and live arrays (numpy, scipy, numba, soundfile,
sounddevice, rich, threadpoolctl). Everything else is an extra, named for what it enables; the
packages each one installs are listed in ``pyproject.toml``, and :data:`EXTRAS` names the modules
that tell whether it is installed. Every place that needs an optional package calls
:func:`require` before it starts work (so a missing extra costs no waiting) and imports the module
through :func:`optional_import`, so that a missing extra always ends in the same single line::

    this needs doascope[gui]: pip install 'doascope[gui]'
"""

from __future__ import annotations

import importlib
import importlib.util

from doascope import DoascopeError

#: extra -> the top-level modules it provides (its pip packages are in pyproject.toml)
EXTRAS: dict[str, tuple[str, ...]] = {
    "sim": ("pyroomacoustics",),
    "plot": ("matplotlib",),
    "gui": ("PySide6", "pyqtgraph"),
    "net": ("websockets", "jsonschema"),
    "dnn": ("torch",),
    "mqtt": ("paho",),
    "hdf5": ("h5py",),
    "batch": ("pyarrow", "ray"),
}

# pip's own `pip install torch` pulls the CUDA build (~3 GB of vendor wheels) on Linux; say how to
# get the CPU one, which is all doascope uses.
_HINTS = {"dnn": " (for the CPU-only torch, first: pip install torch --index-url "
                 "https://download.pytorch.org/whl/cpu)"}


class MissingExtra(DoascopeError, ImportError):
    """An optional part of doascope is not installed; the message says which pip extra brings it."""

    def __init__(self, extra: str):
        self.extra = extra
        super().__init__(f"this needs doascope[{extra}]: pip install 'doascope[{extra}]'{_HINTS.get(extra, '')}")


def _extra_of(module: str) -> str:
    top = module.split(".")[0]
    for extra, modules in EXTRAS.items():
        if top in modules:
            return extra
    raise KeyError(f"{module} belongs to no doascope extra")


def installed(extra: str) -> bool:
    """Whether every module of ``extra`` can be found (without importing it).

    >>> installed("no-such-extra")
    Traceback (most recent call last):
    ...
    KeyError: "unknown extra 'no-such-extra'"
    """
    try:
        modules = EXTRAS[extra]
    except KeyError:
        raise KeyError(f"unknown extra {extra!r}") from None
    for m in modules:
        try:
            if importlib.util.find_spec(m) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True


def require(*extras: str) -> None:
    """Raise :class:`MissingExtra` for the first of ``extras`` that is not installed.

    Cheap (no import): call it before a command starts its work.
    """
    for extra in extras:
        if not installed(extra):
            raise MissingExtra(extra)


def optional_import(module: str):
    """Import ``module`` (e.g. ``"pyroomacoustics"``, ``"PySide6.QtWidgets"``), or raise
    :class:`MissingExtra` naming the extra that provides it.

    A module that is installed but fails to load (a missing system library, say) raises a
    DoascopeError with the reason instead.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = _extra_of(module)
        if not installed(extra):
            raise MissingExtra(extra) from None
        raise DoascopeError(f"{module} (doascope[{extra}]) is installed but does not load: {exc}") from None
