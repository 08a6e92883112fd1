"""Tabs of the main window, discovered at start: every module in this package that defines a
:class:`Tab` subclass with a title becomes a tab (sorted by ``order``), if ``unavailable()`` says
nothing against it. A new tab is a new module here; the window needs no change.
"""

from __future__ import annotations

import importlib
import pkgutil


class Tab:
    """One tab. Subclasses set ``title`` and ``order`` and build ``self.widget`` in __init__."""

    title: str = ""
    order: int = 100

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this tab cannot work here (e.g. a missing optional package), or None."""
        return None

    def __init__(self, context) -> None:
        self.context = context
        self.widget = None

    def activate(self) -> None:
        """Called each time the tab is brought to front (the first time included): a tab that
        shows a shipped result starts reading it here, so that the window opens fast and only
        the tabs a user looks at spend CPU."""

    def shutdown(self) -> None:
        """Stop threads and timers; called when the window closes."""


def discover_tabs() -> list[type[Tab]]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Tab) and obj is not Tab and obj.title \
                    and obj.__module__ == module.__name__:
                found.append(obj)
    return sorted(found, key=lambda c: (c.order, c.title))
