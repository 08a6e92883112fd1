"""Broadband MUSIC and NormMUSIC.

For each band bin k the spatial covariance R_k = mean_t x x^H (mics x mics) is decomposed; with
the K largest eigenvectors E_s as signal subspace, the narrowband pseudo-spectrum at direction u is

    P_k(u) = 1 / || E_n^H a_k(u) ||^2 = 1 / (M - || E_s^H a_k(u) ||^2),

a_k(u)_m = exp(+j 2 pi f_k u.m / c) (unit-modulus, so ||a||^2 = M). MUSIC averages P_k over bins;
NormMUSIC (Salvati et al. 2014) first divides each P_k by its maximum, so that a few bins with
huge, often spurious peaks cannot dominate the broadband spectrum.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from doascope import SPEED_OF_SOUND, ParameterError
from doascope.dsp._checks import as_bins, as_positions, as_stft, positive


def steering(positions, vectors, freqs, *, c: float = SPEED_OF_SOUND) -> np.ndarray:
    """Far-field steering vectors, shape (freqs, mics, points) complex64 (mics before points, so
    that a signal subspace E_s^H (K, mics) multiplies a whole bin's grid in one matrix product)."""
    pos = as_positions(positions)
    advances = pos @ np.asarray(vectors, dtype=np.float64).T / positive("c", c)  # (M, G) seconds
    f = np.asarray(freqs, dtype=np.float64)
    return np.exp(2j * np.pi * f[:, None, None] * advances[None]).astype(np.complex64)


@njit("void(complex64[:,:,::1], int64[::1], complex64[:,:,::1])", cache=True, nogil=True)
def _covariances(X, bins, out):
    # X (M, F, T) -> out (B, M, M) = mean_t x x^H at each band bin.
    M = X.shape[0]
    T = X.shape[2]
    inv = np.float32(1.0 / T)
    for b in range(bins.shape[0]):
        k = bins[b]
        for i in range(M):
            for j in range(i, M):
                acc = np.complex64(0.0)
                for t in range(T):
                    acc += X[i, k, t] * np.conj(X[j, k, t])
                out[b, i, j] = acc * inv
                out[b, j, i] = np.conj(acc * inv)


def covariances(X, bins) -> np.ndarray:
    """Spatial covariance per band bin, (B, mics, mics) complex64, from a (mics, freqs, frames) block."""
    X = as_stft(X)
    bins = as_bins(bins, X.shape[1])
    out = np.empty((bins.size, X.shape[0], X.shape[0]), np.complex64)
    _covariances(X, bins, out)
    return out


@njit("void(complex64[:,:,::1], int64, boolean, float32[::1])", cache=True, nogil=True)
def _music_reduce(proj, M, normalise, out):
    # proj (B, K, G) = E_s^H a per bin; out (G,) = mean over bins of 1 / (M - ||proj||^2).
    B = proj.shape[0]
    K = proj.shape[1]
    G = proj.shape[2]
    Pk = np.empty(G, np.float32)
    floor = np.float32(1e-6 * M)
    out[:] = 0.0
    for b in range(B):
        pmax = np.float32(0.0)
        for g in range(G):
            q = np.float32(0.0)
            for s in range(K):
                v = proj[b, s, g]
                q += v.real * v.real + v.imag * v.imag
            p = np.float32(1.0) / max(np.float32(M) - q, floor)
            Pk[g] = p
            pmax = max(pmax, p)
        scale = np.float32(1.0) / pmax if normalise else np.float32(1.0)
        for g in range(G):
            out[g] += Pk[g] * scale
    out /= B


def music_spectrum(R, A, n_sources: int, *, normalise: bool = False) -> np.ndarray:
    """Broadband (Norm)MUSIC pseudo-spectrum.

    Parameters
    ----------
    R : (B, mics, mics) complex64 covariances at the band bins
    A : (B, mics, points) complex64 steering vectors at the same bins (see :func:`steering`)
    n_sources : size K of the signal subspace, 1 <= K < mics
    normalise : NormMUSIC (each bin's pseudo-spectrum scaled to max 1) instead of MUSIC

    Returns
    -------
    (points,) float32 pseudo-spectrum.
    """
    R = np.asarray(R)
    A = np.asarray(A)
    if R.ndim != 3 or R.shape[1] != R.shape[2] or A.ndim != 3 or A.shape[0] != R.shape[0] or A.shape[1] != R.shape[1]:
        raise ParameterError(f"covariances {R.shape} and steering vectors {A.shape} do not match")
    M = R.shape[1]
    K = int(n_sources)
    if not 1 <= K < M:
        raise ParameterError(f"MUSIC needs 1 <= sources < mics ({M}), got {n_sources}")
    # Batched Hermitian eigendecomposition in LAPACK (eigenvalues ascending): the signal subspace
    # is the last K columns. ||E_n^H a||^2 = M - ||E_s^H a||^2 needs only those K, and one batched
    # complex matrix product evaluates them for every bin and grid point.
    _, V = np.linalg.eigh(R)
    EsH = np.ascontiguousarray(V[:, :, M - K:].conj().transpose(0, 2, 1), dtype=np.complex64)
    proj = np.matmul(EsH, A)  # (B, K, G)
    out = np.empty(A.shape[2], np.float32)
    _music_reduce(np.ascontiguousarray(proj, dtype=np.complex64), M, bool(normalise), out)
    return out
