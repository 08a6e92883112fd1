"""Direct-path dominance test on time-frequency bins.

In a reverberant room most time-frequency bins mix the direct sound with reflections arriving
from everywhere; only some (onsets, strong harmonics) are dominated by the direct path of one
source. Where one plane wave dominates, the local spatial covariance is close to rank one and
every mic pair is coherent. The test smooths the covariance over a small neighbourhood
(3 frames x 3 bins), measures the mean magnitude-squared coherence (MSC) of its pairs, and uses
MSC**power as the bin's weight in the PHAT average (cheaper than the eigenvalue-ratio test of
Nadiri & Rafaely 2014, and as good in our simulations).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from doascope import ParameterError
from doascope.dsp._checks import as_bins, as_stft


@njit("void(complex64[:,:,::1], int64[::1], int64, int64, float64, float32[:,::1])", cache=True, nogil=True)
def _dpd_weights(X, bins, half_t, half_f, power, out):
    M = X.shape[0]
    T = X.shape[2]
    B = bins.shape[0]
    R = np.empty((M, M), np.complex128)
    for b in range(B):
        b0 = max(0, b - half_f)
        b1 = min(B, b + half_f + 1)
        for t in range(T):
            t0 = max(0, t - half_t)
            t1 = min(T, t + half_t + 1)
            R[:, :] = 0.0
            for bb in range(b0, b1):
                k = bins[bb]
                for tt in range(t0, t1):
                    for i in range(M):
                        xi = X[i, k, tt]
                        for j in range(i, M):
                            R[i, j] += xi * np.conj(X[j, k, tt])
            msc = 0.0
            for i in range(M):
                for j in range(i + 1, M):
                    den = R[i, i].real * R[j, j].real
                    if den > 0:
                        msc += (R[i, j].real ** 2 + R[i, j].imag ** 2) / den
            msc /= M * (M - 1) / 2
            out[b, t] = msc ** power


def dpd_weights(X, bins, *, power: float = 2.0, frames: int = 3, freqs: int = 3) -> np.ndarray:
    """Direct-path-dominance weight of each band bin and frame, (B, frames) float32 in [0, 1].

    Parameters
    ----------
    X : (mics, freqs, frames) complex64 STFT block
    bins : (B,) band bin indices
    power : exponent on the mean MSC; 0 gives uniform weights
    frames, freqs : odd sizes of the smoothing neighbourhood
    """
    X = as_stft(X)
    bins = as_bins(bins, X.shape[1])
    if frames < 1 or freqs < 1 or frames % 2 == 0 or freqs % 2 == 0:
        raise ParameterError("the smoothing neighbourhood must have odd, positive sizes")
    if power < 0:
        raise ParameterError(f"power must be non-negative, got {power}")
    out = np.empty((bins.size, X.shape[2]), np.float32)
    _dpd_weights(X, bins, frames // 2, freqs // 2, float(power), out)
    return out
