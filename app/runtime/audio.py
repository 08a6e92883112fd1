"""Reading multichannel recordings for a profile: any soundfile format, channel map, resampling."""

from __future__ import annotations

import os
from math import gcd

import numpy as np

from doascope import AudioInputError
from doascope.hardware_profiles import Profile


def mic_map_for(n_channels: int, profile: Profile, *, what: str = "the input") -> tuple[int, ...]:
    """Which of an input's channels are the profile's microphones, in profile order.

    Accepts either all of the device's channels (the profile's map applies) or exactly the
    microphone channels in profile order (a recording already reduced to the mics).
    """
    if n_channels == profile.channels:
        return tuple(profile.mic_channels)
    if n_channels == profile.n_mics:
        return tuple(range(n_channels))
    raise AudioInputError(
        f"{what} has {n_channels} channel{'s' if n_channels != 1 else ''} but profile '{profile.id}' expects "
        f"{profile.channels} device channels (or its {profile.n_mics} microphone channels)")


def select_channels(audio: np.ndarray, mic_map) -> np.ndarray:
    """(frames, mics) float32 from (frames, channels) audio; no copy when the map is the identity."""
    if tuple(mic_map) == tuple(range(audio.shape[1])):
        return np.ascontiguousarray(audio, dtype=np.float32)
    return np.ascontiguousarray(audio[:, list(mic_map)], dtype=np.float32)


def resample(audio: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    """Polyphase resampling of (frames, channels) float32 audio from fs_in to fs_out Hz."""
    if fs_in == fs_out:
        return audio
    from scipy.signal import resample_poly

    g = gcd(int(fs_in), int(fs_out))
    out = resample_poly(audio, int(fs_out) // g, int(fs_in) // g, axis=0)
    return np.ascontiguousarray(out, dtype=np.float32)


def read_raw(path: str | os.PathLike, profile: Profile, *, start: int = 0,
             stop: int | None = None) -> tuple[np.ndarray, tuple[int, ...]]:
    """Read a recording for ``profile`` with all its channels, at the profile's sample rate.

    ``start``/``stop`` read only those frames (a part of a long recording); a part can only be read
    from a file already at the profile's rate, since resampling a part differs at its edges.

    Returns (audio (frames, channels) float32, mic_map). Raises AudioInputError with one sentence
    for a missing, unreadable or corrupt file, a channel count that does not fit the profile, or
    NaN/infinite samples.
    """
    import soundfile as sf

    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioInputError(f"no such file: {path}")
    if os.path.isdir(path):
        raise AudioInputError(f"{path} is a directory, not an audio file")
    if is_hdf5(path):
        audio, fs = read_hdf5_time_data(path)
        audio = audio[start:stop]
    else:
        audio, fs = _read_soundfile(sf, path, start, stop)
    if audio.shape[0] == 0:
        raise AudioInputError(f"{path} holds no audio frames")
    if not np.all(np.isfinite(audio)):
        bad = int(np.count_nonzero(~np.isfinite(audio)))
        raise AudioInputError(f"{path} contains {bad} NaN or infinite samples")
    mic_map = mic_map_for(audio.shape[1], profile, what=path)
    if (start or stop is not None) and int(fs) != profile.sample_rate:
        raise AudioInputError(f"{path} is at {fs} Hz, not the profile's {profile.sample_rate} Hz: "
                              "only whole files can be resampled")
    return resample(audio, int(fs), profile.sample_rate), mic_map


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: str) -> bool:
    """Whether the file starts with the HDF5 signature (whatever its name)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == _HDF5_SIGNATURE
    except OSError:
        return False


def read_hdf5_time_data(path: str) -> tuple[np.ndarray, int]:
    """Multichannel time data from an HDF5 file in acoular's layout: a dataset ``time_data`` of shape
    (samples, channels) with the attribute ``sample_freq`` (Hz). Needs the [hdf5] extra (h5py).

    Returns ((samples, channels) float32, fs).
    """
    from doascope.extras import optional_import

    h5py = optional_import("h5py")
    try:
        with h5py.File(path, "r") as f:
            if "time_data" not in f:
                raise AudioInputError(f"{path} has no 'time_data' dataset (acoular's layout: time_data of shape "
                                      "(samples, channels) with the attribute sample_freq)")
            ds = f["time_data"]
            if "sample_freq" not in ds.attrs:
                raise AudioInputError(f"{path}: the time_data dataset has no 'sample_freq' attribute")
            fs = float(np.asarray(ds.attrs["sample_freq"]).reshape(-1)[0])
            if ds.ndim != 2:
                raise AudioInputError(f"{path}: time_data must have shape (samples, channels), got {ds.shape}")
            audio = np.asarray(ds[()], dtype=np.float32)
    except AudioInputError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise AudioInputError(f"cannot read {path} as HDF5 time data: {exc}") from None
    if not (fs > 0 and fs == round(fs)):
        raise AudioInputError(f"{path}: sample_freq must be a positive whole number of Hz, got {fs}")
    return np.ascontiguousarray(audio), int(fs)


def _read_soundfile(sf, path: str, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, int]:
    try:
        audio, fs = sf.read(path, dtype="float32", always_2d=True, start=start, stop=stop)
    except (RuntimeError, sf.LibsndfileError, TypeError, ValueError) as exc:
        raise AudioInputError(f"cannot read {path} as audio: {str(exc).strip() or type(exc).__name__}") from None
    except OSError as exc:
        raise AudioInputError(f"cannot open {path}: {exc.strerror or exc}") from None
    return audio, int(fs)


def read_recording(path: str | os.PathLike, profile: Profile, *, start: int = 0,
                   stop: int | None = None) -> tuple[np.ndarray, int]:
    """Read a recording for ``profile``: (frames, mics) float32 at the profile's sample rate.

    ``start``/``stop`` and errors as :func:`read_raw`.
    """
    audio, mic_map = read_raw(path, profile, start=start, stop=stop)
    return select_channels(audio, mic_map), profile.sample_rate
