"""Moved to :mod:`doascope.sim.scenes` (simulation is its own layer, which ``doascope.models`` trains on
without importing ``doascope.app``). ``doascope.app.scenes`` stays the very same module object, so that
existing imports and patches keep working."""

import sys

from doascope.sim import scenes as _scenes

sys.modules[__name__] = _scenes
