"""Localizing a recording offline (``locate``, ``batch``, ``eval``, the Python API): the localizer it
is analysed with, the check that it holds one block, and the record written for each block."""

from __future__ import annotations

from doascope import ParameterError
from doascope.config import AnalysisConfig
from doascope.dsp.analysis import build_localizer
from doascope.hardware_profiles import Profile


def localizer_for(config: AnalysisConfig, profile: Profile):
    """What ``locate`` (and ``batch``) analyse a recording with: the offline Localizer (blocks not
    overlapping), or in position mode the PositionLocalizer, at the profile's rate."""
    return build_localizer(config, profile, profile.sample_rate)


def require_one_block(path, n_samples: int, fs: int, localizer) -> None:
    """Refuse a recording shorter than one analysis block (it would give no result at all)."""
    if n_samples < localizer.block_samples:
        raise ParameterError(f"{path} is shorter ({n_samples / fs:.3f} s) than one analysis block "
                             f"({localizer.block_samples / fs:.3f} s)")


def block_record(t: float, found) -> dict:
    """The DESIGN.md `locate` record of one block: directions (Peak) or positions (SourcePosition)."""
    return {"t": round(t, 4), "sources": [s.as_dict() for s in found]}
