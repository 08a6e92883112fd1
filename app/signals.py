"""Moved to :mod:`doascope.sim.signals` (simulation is its own layer, which ``doascope.models`` trains on
without importing ``doascope.app``). ``doascope.app.signals`` stays the very same module object, so that
existing imports and patches keep working."""

import sys

from doascope.sim import signals as _signals

sys.modules[__name__] = _signals
