"""Reading multichannel recordings for a profile: any soundfile format, channel map, resampling."""

from __future__ import annotations

import os
from math import gcd

import numpy as np

from doascope import AudioInputError
from doascope.hardware_profiles import Profile


def map_channels(audio: np.ndarray, profile: Profile, *, what: str = "the input") -> np.ndarray:
    """Select the profile's microphone channels from (frames, channels) audio.

    Accepts either all of the device's channels (the map is applied) or exactly the microphone
    channels in profile order (a recording already reduced to the mics).
    """
    ch = audio.shape[1]
    if ch == profile.channels:
        return np.ascontiguousarray(audio[:, list(profile.mic_channels)], dtype=np.float32)
    if ch == profile.n_mics:
        return np.ascontiguousarray(audio, dtype=np.float32)
    raise AudioInputError(
        f"{what} has {ch} channel{'s' if ch != 1 else ''} but profile '{profile.id}' expects "
        f"{profile.channels} device channels (or its {profile.n_mics} microphone channels)")


def resample(audio: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    """Polyphase resampling of (frames, channels) float32 audio from fs_in to fs_out Hz."""
    if fs_in == fs_out:
        return audio
    from scipy.signal import resample_poly

    g = gcd(int(fs_in), int(fs_out))
    out = resample_poly(audio, int(fs_out) // g, int(fs_in) // g, axis=0)
    return np.ascontiguousarray(out, dtype=np.float32)


def read_recording(path: str | os.PathLike, profile: Profile) -> tuple[np.ndarray, int]:
    """Read a recording for ``profile``: (frames, mics) float32 at the profile's sample rate.

    Raises AudioInputError with one sentence for a missing, unreadable or corrupt file, a channel
    count that does not fit the profile, or NaN/infinite samples.
    """
    import soundfile as sf

    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioInputError(f"no such file: {path}")
    if os.path.isdir(path):
        raise AudioInputError(f"{path} is a directory, not an audio file")
    try:
        audio, fs = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, TypeError, ValueError) as exc:
        raise AudioInputError(f"cannot read {path} as audio: {str(exc).strip() or type(exc).__name__}") from None
    except OSError as exc:
        raise AudioInputError(f"cannot open {path}: {exc.strerror or exc}") from None
    if audio.shape[0] == 0:
        raise AudioInputError(f"{path} holds no audio frames")
    if not np.all(np.isfinite(audio)):
        bad = int(np.count_nonzero(~np.isfinite(audio)))
        raise AudioInputError(f"{path} contains {bad} NaN or infinite samples")
    audio = map_channels(audio, profile, what=path)
    return resample(audio, int(fs), profile.sample_rate), profile.sample_rate
