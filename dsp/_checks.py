"""Input validation shared by the public numeric functions (one plain sentence per failure)."""

from __future__ import annotations

import numpy as np

from doascope import ParameterError


def as_positions(positions) -> np.ndarray:
    """Microphone positions as a (mics, 3) float64 array, or a ParameterError."""
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] < 2:
        raise ParameterError(
            f"microphone positions must be an array of shape (mics, 3) with at least 2 mics, got {pos.shape}"
        )
    if not np.all(np.isfinite(pos)):
        raise ParameterError("microphone positions contain NaN or infinite values")
    return pos


def as_stft(X, *, mics: int | None = None) -> np.ndarray:
    """An STFT block as C-contiguous (mics, freqs, frames) complex64."""
    X = np.asarray(X)
    if X.ndim != 3:
        raise ParameterError(f"an STFT block must have shape (mics, freqs, frames), got shape {X.shape}")
    if not np.iscomplexobj(X):
        raise ParameterError("an STFT block must be complex (use doascope.dsp.stft to make one)")
    if mics is not None and X.shape[0] != mics:
        raise ParameterError(f"the STFT block has {X.shape[0]} microphones but the estimator was built for {mics}")
    if X.shape[2] < 1:
        raise ParameterError("the STFT block has no frames")
    return np.ascontiguousarray(X, dtype=np.complex64)


def positive(name: str, value, *, integer: bool = False):
    if integer:
        if int(value) != value or value < 1:
            raise ParameterError(f"{name} must be a positive integer, got {value!r}")
        return int(value)
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} must be a positive number, got {value!r}")
    return value


def band_bins(band, fs: float, nfft: int) -> np.ndarray:
    """Indices of the rFFT bins whose centre frequency lies in band = (fmin, fmax) Hz, DC and Nyquist excluded."""
    try:
        fmin, fmax = (float(b) for b in band)
    except (TypeError, ValueError):
        raise ParameterError(f"band must be a pair (fmin, fmax) in Hz, got {band!r}") from None
    if not (0 <= fmin < fmax):
        raise ParameterError(f"band must satisfy 0 <= fmin < fmax, got ({fmin:g}, {fmax:g}) Hz")
    if fmin >= fs / 2:
        raise ParameterError(f"band starts at {fmin:g} Hz, above the Nyquist frequency {fs / 2:g} Hz")
    freqs = np.arange(nfft // 2 + 1) * fs / nfft
    k = np.nonzero((freqs >= fmin) & (freqs <= min(fmax, fs / 2)))[0]
    k = k[(k > 0) & (k < nfft // 2)]
    if k.size == 0:
        raise ParameterError(f"band ({fmin:g}, {fmax:g}) Hz holds no FFT bin at fs={fs:g} Hz, nfft={nfft}")
    return k.astype(np.int64)


def as_bins(bins, n_freqs: int) -> np.ndarray:
    """Frequency-bin indices as a non-empty (B,) int64 array within [0, n_freqs)."""
    b = np.ascontiguousarray(bins, dtype=np.int64)
    if b.ndim != 1 or b.size == 0 or b.min() < 0 or b.max() >= n_freqs:
        raise ParameterError(f"frequency bins must be a non-empty list of indices in [0, {n_freqs})")
    return b
