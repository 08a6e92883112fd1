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


@njit("void(complex64[:,:,::1], int64, complex64[:,:,::1])", cache=True, nogil=True)
def _signal_subspaces(R, K, out):
    # For each bin b: the eigenvectors of the Hermitian R[b] (M, M) with the K largest eigenvalues,
    # conjugated, as rows: out[b] (K, M) = E_s^H. Cyclic complex Jacobi (Golub & Van Loan 8.5) in
    # float64 real and imaginary parts: a few sweeps of plane rotations, each zeroing one
    # off-diagonal pair; for the small matrices of an array (4-16 mics) much cheaper than a LAPACK
    # call per bin.
    B = R.shape[0]
    M = R.shape[1]
    Ar = np.empty((M, M))
    Ai = np.empty((M, M))
    Vr = np.empty((M, M))
    Vi = np.empty((M, M))
    taken = np.empty(M, np.bool_)
    for b in range(B):
        total = 0.0
        for i in range(M):
            for j in range(M):
                v = R[b, i, j]
                Ar[i, j] = v.real
                Ai[i, j] = v.imag
                Vr[i, j] = 1.0 if i == j else 0.0
                Vi[i, j] = 0.0
                total += v.real * v.real + v.imag * v.imag
        for sweep in range(50):
            off = 0.0
            for i in range(M):
                for j in range(i + 1, M):
                    off += Ar[i, j] * Ar[i, j] + Ai[i, j] * Ai[i, j]
            if off <= 1e-20 * total or total == 0.0:   # amplitudes to 1e-10: far below float32's
                break
            for p in range(M - 1):
                for q in range(p + 1, M):
                    mag = np.sqrt(Ar[p, q] * Ar[p, q] + Ai[p, q] * Ai[p, q])
                    if mag == 0.0:
                        continue
                    er = Ar[p, q] / mag                # A[p, q] = mag e, e = er + j ei
                    ei = Ai[p, q] / mag
                    theta = (Ar[q, q] - Ar[p, p]) / (2.0 * mag)
                    t = (1.0 if theta >= 0 else -1.0) / (abs(theta) + np.sqrt(theta * theta + 1.0))
                    c = 1.0 / np.sqrt(t * t + 1.0)
                    sn = t * c
                    # A <- A U and V <- V U with U = diag(1, conj(e)) times the real rotation
                    # [[c, s], [-s, c]] in (p, q): U[:, p] = (c at p, -s conj(e) at q),
                    # U[:, q] = (s at p, c conj(e) at q).
                    for k in range(M):
                        xr, xi = Ar[k, p], Ai[k, p]
                        yr, yi = Ar[k, q] * er + Ai[k, q] * ei, Ai[k, q] * er - Ar[k, q] * ei   # conj(e) y
                        Ar[k, p], Ai[k, p] = c * xr - sn * yr, c * xi - sn * yi
                        Ar[k, q], Ai[k, q] = sn * xr + c * yr, sn * xi + c * yi
                        xr, xi = Vr[k, p], Vi[k, p]
                        yr, yi = Vr[k, q] * er + Vi[k, q] * ei, Vi[k, q] * er - Vr[k, q] * ei
                        Vr[k, p], Vi[k, p] = c * xr - sn * yr, c * xi - sn * yi
                        Vr[k, q], Vi[k, q] = sn * xr + c * yr, sn * xi + c * yi
                    # A <- U^H A: rows p, q with conj(U)'s coefficients (e instead of conj(e))
                    for k in range(M):
                        xr, xi = Ar[p, k], Ai[p, k]
                        yr, yi = Ar[q, k] * er - Ai[q, k] * ei, Ai[q, k] * er + Ar[q, k] * ei    # e y
                        Ar[p, k], Ai[p, k] = c * xr - sn * yr, c * xi - sn * yi
                        Ar[q, k], Ai[q, k] = sn * xr + c * yr, sn * xi + c * yi
                    Ar[p, q] = Ai[p, q] = Ar[q, p] = Ai[q, p] = 0.0
        # The K largest eigenvalues' vectors (ties: either; the subspace they span is what counts).
        taken[:] = False
        for s in range(K):
            best = -1
            for i in range(M):
                if not taken[i] and (best < 0 or Ar[i, i] > Ar[best, best]):
                    best = i
            taken[best] = True
            for m in range(M):
                out[b, s, m] = np.complex64(complex(Vr[m, best], -Vi[m, best]))


def signal_subspaces(R, n_sources: int) -> np.ndarray:
    """E_s^H per bin, (B, K, mics) complex64: the conjugated eigenvectors of each Hermitian
    covariance R (B, mics, mics) with the K = ``n_sources`` largest eigenvalues."""
    R = np.ascontiguousarray(R, dtype=np.complex64)
    out = np.empty((R.shape[0], int(n_sources), R.shape[1]), np.complex64)
    _signal_subspaces(R, int(n_sources), out)
    return out


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
    return SteeringPlanes(A).spectrum(R, K, normalise=normalise)


@njit("void(complex64[:,:,::1], float32[:,:,::1], float32[:,:,::1], boolean, float32[::1])", cache=True, nogil=True)
def _music_from_subspaces(EsH, Ar, Ai, normalise, out):
    # EsH (B, K, M) signal subspaces; Ar, Ai (B, M, G) steering vectors' real and imaginary planes;
    # out (G,) = mean over bins of 1 / (M - ||E_s^H a||^2), each bin scaled to max 1 if normalise.
    # Points innermost on split planes: the loops vectorize (an interleaved complex product does not).
    B, K, M = EsH.shape
    G = Ar.shape[2]
    pr = np.empty(G, np.float32)
    pi = np.empty(G, np.float32)
    q = np.empty(G, np.float32)
    floor = np.float32(1e-6 * M)
    out[:] = 0.0
    for b in range(B):
        q[:] = 0.0
        for s in range(K):
            pr[:] = 0.0
            pi[:] = 0.0
            for m in range(M):
                er = EsH[b, s, m].real
                ei = EsH[b, s, m].imag
                ar = Ar[b, m]
                ai = Ai[b, m]
                for g in range(G):
                    pr[g] += er * ar[g] - ei * ai[g]
                    pi[g] += er * ai[g] + ei * ar[g]
            for g in range(G):
                q[g] += pr[g] * pr[g] + pi[g] * pi[g]
        pmax = np.float32(0.0)
        for g in range(G):
            q[g] = np.float32(1.0) / max(np.float32(M) - q[g], floor)
            pmax = max(pmax, q[g])
        scale = np.float32(1.0) / pmax if normalise else np.float32(1.0)
        for g in range(G):
            out[g] += q[g] * scale
    out /= B


class SteeringPlanes:
    """Steering vectors (B, mics, points) complex64 kept as real and imaginary float32 planes, laid
    out once for the fused (Norm)MUSIC kernel; ``spectrum(R, K)`` checks nothing per call."""

    def __init__(self, A):
        A = np.asarray(A)
        self.shape = A.shape
        self.real = np.ascontiguousarray(A.real, dtype=np.float32)
        self.imag = np.ascontiguousarray(A.imag, dtype=np.float32)

    def spectrum(self, R, n_sources: int, *, normalise: bool = False) -> np.ndarray:
        out = np.empty(self.shape[2], np.float32)
        _music_from_subspaces(signal_subspaces(R, n_sources), self.real, self.imag, bool(normalise), out)
        return out

