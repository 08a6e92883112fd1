"""Synthetic test signals: far-field plane waves with exact fractional delays.

Convention (dsp/gcc.py): a plane wave arriving from unit direction u reaches microphone m at
time -u.m/c relative to the array origin, so X_m(f) = S(f) exp(+j 2 pi f u.m / c). The delays are
applied as phase shifts of one broadband spectrum, so they are exact for any fraction of a sample;
the signal is periodic in its length, which every STFT frame inside it cannot tell from an
endless stream.
"""

from __future__ import annotations

import numpy as np
import soundfile as sf

from doascope.hardware_profiles import load_profile

C = 343.0


def unit_vector(azimuth: float, elevation: float = 0.0) -> np.ndarray:
    """(3,) unit vector toward (azimuth, elevation) in degrees (x forward, y left, z up)."""
    az, el = np.radians(azimuth), np.radians(elevation)
    return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


def _n_samples(fs: float, seconds: float) -> int:
    n = int(round(seconds * fs))
    return n + (n % 2)  # even length: the Nyquist bin is zeroed below, so no half-delayed real bin


def _delayed(spectrum: np.ndarray, positions, fs: float, n: int, u: np.ndarray, c: float) -> np.ndarray:
    pos = np.asarray(positions, dtype=np.float64)
    f = np.fft.rfftfreq(n, 1.0 / fs)
    advance = pos @ u / c                                           # (mics,) seconds
    X = spectrum[None, :] * np.exp(2j * np.pi * f[None, :] * advance[:, None])
    return np.fft.irfft(X, n=n, axis=1).T                           # (samples, mics)


def _source_spectrum(rng: np.random.Generator, n: int) -> np.ndarray:
    S = np.fft.rfft(rng.standard_normal(n))
    S[0] = 0.0   # no DC
    S[-1] = 0.0  # no Nyquist: a real bin cannot carry a fractional delay
    return S


def _add_noise(x: np.ndarray, rng: np.random.Generator, snr_db: float | None) -> np.ndarray:
    if snr_db is None:
        return x
    p = np.mean(x**2)
    return x + rng.standard_normal(x.shape) * np.sqrt(p / 10 ** (snr_db / 10))


def plane_wave(positions, fs, azimuth, elevation=0.0, *, seconds=1.0, seed=0, c=C, snr_db=None) -> np.ndarray:
    """One broadband (white) plane wave at the microphones, (samples, mics) float32, RMS ~0.1.

    snr_db adds independent white noise on every microphone at that signal-to-noise ratio.
    """
    return mixture(positions, fs, [azimuth], [elevation], seconds=seconds, seed=seed, c=c, snr_db=snr_db)


def mixture(positions, fs, azimuths, elevations=None, *, seconds=1.0, seed=0, c=C, snr_db=None,
            gains=None) -> np.ndarray:
    """Several plane waves with independent white signals, (samples, mics) float32.

    Each source has RMS ~0.1 times its gain (default 1); snr_db is relative to the sum.
    """
    rng = np.random.default_rng(seed)
    n = _n_samples(fs, seconds)
    azimuths = np.atleast_1d(np.asarray(azimuths, dtype=np.float64))
    elevations = np.zeros_like(azimuths) if elevations is None else np.broadcast_to(
        np.asarray(elevations, dtype=np.float64), azimuths.shape)
    gains = np.ones_like(azimuths) if gains is None else np.asarray(gains, dtype=np.float64)
    out = np.zeros((n, np.asarray(positions).shape[0]))
    for az, el, g in zip(azimuths, elevations, gains):
        x = _delayed(_source_spectrum(rng, n), positions, fs, n, unit_vector(az, el), c)
        out += g * 0.1 * x / np.sqrt(np.mean(x**2))
    return _add_noise(out, rng, snr_db).astype(np.float32)


def azimuth_error(a, b) -> float:
    """Absolute difference of two azimuths in degrees, wrapped to [0, 180]."""
    return float(abs((float(a) - float(b) + 180.0) % 360.0 - 180.0))


def angle_between(az1, el1, az2, el2) -> float:
    """Great-circle angle in degrees between two directions."""
    d = float(unit_vector(az1, el1) @ unit_vector(az2, el2))
    return float(np.degrees(np.arccos(np.clip(d, -1.0, 1.0))))

def plane_wave_file(path, profile_id: str, *, azimuth: float, seconds: float = 3.0):
    prof = load_profile(profile_id)
    x = plane_wave(prof.positions, prof.sample_rate, azimuth, seconds=seconds)
    dev = np.zeros((x.shape[0], prof.channels), np.float32)
    dev[:, list(prof.mic_channels)] = 0.3 * x / np.abs(x).max()
    sf.write(path, dev, prof.sample_rate)
    return path


def free_port() -> int:
    """A port for what a test must tell its port by number (a broker restarted in place, a listener
    that comes later): see doascope.app.batch.ray.named_port. Servers of our own are started on port 0
    instead (see :func:`serving_ports`)."""
    from doascope.app.batch.ray import named_port

    return named_port()


def serving_ports(stderr: str) -> tuple[int | None, int | None]:
    """The WebSocket and TCP ports of ``doascope serve`` started with ``--port 0 --tcp-port 0``, from its
    "serving ... on ws://HOST:P ..., tcp://HOST:Q" line (None for one it does not serve)."""
    import re

    line = next((ln for ln in stderr.splitlines() if "serving" in ln), "")
    ws, tcp = re.search(r"ws://[^\s]*:(\d+)", line), re.search(r"tcp://[^\s]*:(\d+)", line)
    return (int(ws.group(1)) if ws else None), (int(tcp.group(1)) if tcp else None)
