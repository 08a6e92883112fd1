"""Plane-wave recordings for GUI and engine tests (device channel layout of a profile)."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from doascope.hardware_profiles import load_profile
from helpers import plane_wave


def plane_wave_file(path, profile_id: str, *, azimuth: float, seconds: float = 3.0):
    prof = load_profile(profile_id)
    x = plane_wave(prof.positions, prof.sample_rate, azimuth, seconds=seconds)
    dev = np.zeros((x.shape[0], prof.channels), np.float32)
    dev[:, list(prof.mic_channels)] = 0.3 * x / np.abs(x).max()
    sf.write(path, dev, prof.sample_rate)
    return path
