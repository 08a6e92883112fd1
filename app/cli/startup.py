"""The cyclic garbage collector while the ``doascope`` command starts and ends.

Importing numpy, numba and scipy and loading the cached kernels makes about 120 000 objects that live
until the process ends. With the collector on, every few hundred new objects it walks them all again
(``gc_collect_main`` held a fifth of a 1 s ``locate``'s samples under ``perf``), and the interpreter
walks them once more at exit (0.4 s here between ``main()`` returning and the process ending). The console entry point
therefore turns the collector off while the command starts (:func:`hold`), and the command turns it
back on once its set-up is done (:func:`release`), after moving everything made so far into the
permanent generation (:func:`gc.freeze`), which no later collection walks, the one at exit included.
Garbage made after that is collected as usual, so a long ``run``, ``serve`` or ``gui`` is unchanged.

Only the console entry point holds the collector: code that calls ``main()`` in its own process (the
tests, a notebook) keeps its collector as it was, and :func:`release` is then a no-op.
"""

from __future__ import annotations

import gc

_held = False


def hold() -> None:
    """Turn the cyclic collector off for the start of the command (console entry point only)."""
    global _held
    if gc.isenabled():
        gc.disable()
        _held = True


def release() -> None:
    """Set-up is over: freeze what it made (modules, kernels, the localizer, all alive until exit) and
    turn the collector back on. Idempotent; a no-op unless :func:`hold` turned the collector off."""
    global _held
    if _held:
        _held = False
        gc.freeze()
        gc.enable()
