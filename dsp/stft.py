"""Short-time Fourier transform of multichannel audio.

Audio is (frames, channels) float32 as soundfile and sounddevice deliver it; the STFT is
(mics, freqs, frames) complex64, frame t covering samples [t*hop, t*hop + nfft).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from doascope import ParameterError
from doascope.dsp._checks import positive
from doascope.dsp.fft import rfft


# Periodic (DFT-even) windows, as for spectral analysis; the same values as scipy.signal.get_window
# with fftbins=True, without importing scipy.signal (which alone costs most of a second of start-up).
_WINDOWS = {
    "hann": (0.5, 0.5, 0.0),
    "hamming": (0.54, 0.46, 0.0),
    "blackman": (0.42, 0.5, 0.08),
    "boxcar": (1.0, 0.0, 0.0),
}


@lru_cache(maxsize=16)
def _window(name: str, nfft: int) -> np.ndarray:
    try:
        a0, a1, a2 = _WINDOWS[name]
    except KeyError:
        raise ParameterError(f"unknown window {name!r}; choose one of: {', '.join(_WINDOWS)}") from None
    phase = 2.0 * np.pi * np.arange(nfft) / nfft
    w = (a0 - a1 * np.cos(phase) + a2 * np.cos(2 * phase)).astype(np.float32)
    w.setflags(write=False)
    return w


def n_frames(n_samples: int, nfft: int, hop: int) -> int:
    """How many whole frames fit in n_samples."""
    return 0 if n_samples < nfft else 1 + (n_samples - nfft) // hop


def stft(audio, *, nfft: int = 512, hop: int | None = None, window: str = "hann") -> np.ndarray:
    """STFT of multichannel audio, frames without padding.

    Parameters
    ----------
    audio : (samples, channels) or (samples,) float array
    nfft : frame length and FFT size in samples
    hop : frame advance in samples (default nfft // 2)
    window : "hann" (default), "hamming", "blackman" or "boxcar" (periodic)

    Returns
    -------
    (channels, nfft // 2 + 1, frames) complex64, unscaled (sum of windowed samples times e^-jwn).

    Examples
    --------
    >>> X = stft(np.zeros((16000, 4), np.float32), nfft=512, hop=256)
    >>> X.shape
    (4, 257, 61)
    """
    nfft = positive("nfft", nfft, integer=True)
    hop = nfft // 2 if hop is None else positive("hop", hop, integer=True)
    if hop > nfft:
        raise ParameterError(f"hop ({hop}) must not exceed nfft ({nfft})")
    x = np.asarray(audio)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ParameterError(f"audio must have shape (samples, channels), got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ParameterError(f"audio must be floating point, got {x.dtype}")
    x = np.ascontiguousarray(x.T, dtype=np.float32)  # (channels, samples): frames become strided views
    T = n_frames(x.shape[1], nfft, hop)
    if T == 0:
        return np.zeros((x.shape[0], nfft // 2 + 1, 0), np.complex64)
    frames = np.lib.stride_tricks.sliding_window_view(x, nfft, axis=1)[:, ::hop][:, :T]  # (ch, T, nfft)
    # scipy's pocketfft, not numpy's FFT: several times faster on float32 frames (doascope.dsp.fft)
    spec = rfft(frames * _window(window, nfft), axis=2)  # (ch, T, F)
    return np.ascontiguousarray(spec.transpose(0, 2, 1), dtype=np.complex64)


def frequencies(fs: float, nfft: int) -> np.ndarray:
    """Centre frequency in Hz of each rFFT bin."""
    return np.arange(nfft // 2 + 1) * (float(fs) / nfft)


def stft_blocks(audio: np.ndarray, *, nfft: int, hop: int, frames_per_block: int, window: str = "hann",
                chunk_blocks: int = 256):
    """Yield (first sample, (channels, freqs, frames_per_block) complex64 block) for every whole,
    non-overlapping block of STFT frames of ``audio`` (samples, channels).

    The STFT is taken chunk by chunk, so memory stays bounded on long recordings.
    """
    total = n_frames(audio.shape[0], nfft, hop) // frames_per_block
    advance = frames_per_block * hop
    for c0 in range(0, total, chunk_blocks):
        nb = min(chunk_blocks, total - c0)
        s0 = c0 * advance
        s1 = s0 + (nb * frames_per_block - 1) * hop + nfft
        X = stft(audio[s0:s1], nfft=nfft, hop=hop, window=window)
        for b in range(nb):
            f0 = b * frames_per_block
            yield s0 + f0 * hop, np.ascontiguousarray(X[:, :, f0:f0 + frames_per_block])
