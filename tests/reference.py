"""Slow, plain-numpy re-implementations of the DSP kernels, written for obviousness, not speed.

Everything is float64 / complex128 and loops where the maths has a sum, so that a test can compare
a Numba kernel with the formula in its docstring.
"""

from __future__ import annotations

import numpy as np


# --- STFT ---------------------------------------------------------------------------------------

def window(name: str, nfft: int) -> np.ndarray:
    if name == "hann":  # periodic Hann, written out
        n = np.arange(nfft)
        return 0.5 - 0.5 * np.cos(2 * np.pi * n / nfft)
    from scipy.signal import get_window

    return get_window(name, nfft, fftbins=True)


def stft(audio, nfft: int, hop: int, win: str = "hann") -> np.ndarray:
    """(channels, nfft//2+1, frames): frame t is rfft(w * x[t*hop : t*hop+nfft]), no padding."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    w = window(win, nfft)
    T = 0 if x.shape[0] < nfft else 1 + (x.shape[0] - nfft) // hop
    out = np.zeros((x.shape[1], nfft // 2 + 1, T), np.complex128)
    for ch in range(x.shape[1]):
        for t in range(T):
            out[ch, :, t] = np.fft.rfft(w * x[t * hop: t * hop + nfft, ch])
    return out


# --- GCC-PHAT / SRP-PHAT ----------------------------------------------------------------------

def pairs(n_mics: int) -> np.ndarray:
    return np.array([(i, j) for i in range(n_mics) for j in range(i + 1, n_mics)], dtype=np.int64)


def phat_cross_spectra(X, bins, pair_list, weights=None) -> np.ndarray:
    """C[p, b] = sum_t w[b,t] X_i X_j^* / |X_i X_j^*|  /  sum_t w[b,t] (weights 1 when None)."""
    X = np.asarray(X, dtype=np.complex128)
    T = X.shape[2]
    out = np.zeros((len(pair_list), len(bins)), np.complex128)
    for p, (i, j) in enumerate(pair_list):
        for b, k in enumerate(bins):
            acc, wsum = 0.0, 0.0
            for t in range(T):
                w = 1.0 if weights is None else float(weights[b, t])
                v = X[i, k, t] * np.conj(X[j, k, t])
                if v != 0:  # a silent bin adds nothing but still counts as a frame
                    acc += w * v / abs(v)
                wsum += w
            out[p, b] = acc / wsum if wsum > 0 else 0.0
    return out


def gcc(C, freqs, lags) -> np.ndarray:
    """r[p, l] = (1/B) sum_k Re(C[p, k] exp(+j 2 pi f_k tau_l)), a direct sum at each lag."""
    C = np.asarray(C, dtype=np.complex128)
    r = np.zeros((C.shape[0], len(lags)))
    for p in range(C.shape[0]):
        for li, tau in enumerate(lags):
            r[p, li] = np.mean((C[p] * np.exp(2j * np.pi * np.asarray(freqs) * tau)).real)
    return r


def tdoa(positions, u, i, j, c=343.0) -> float:
    """tau_ij(u) = u.(m_j - m_i)/c: the delay of mic i behind mic j for a wave from u."""
    pos = np.asarray(positions, dtype=np.float64)
    return float(np.dot(u, pos[j] - pos[i]) / c)


def srp_phat(X, positions, freqs, bins, vectors, c=343.0) -> np.ndarray:
    """Exact SRP-PHAT at each direction: mean over pairs of r_ij(tau_ij(u)), no lag grid at all."""
    return srp_phat_from_cross(phat_cross_spectra(X, bins, pairs(len(positions))), positions, freqs, vectors, c)


def srp_phat_from_cross(C, positions, freqs, vectors, c=343.0) -> np.ndarray:
    """Exact SRP from PHAT cross-spectra C (pairs, bins) at the given bin frequencies."""
    pos = np.asarray(positions, dtype=np.float64)
    freqs = np.asarray(freqs, dtype=np.float64)
    out = np.zeros(len(vectors))
    for p, (i, j) in enumerate(pairs(len(pos))):
        tau = np.asarray(vectors) @ (pos[j] - pos[i]) / c                       # (G,)
        out += np.mean((C[p][None, :] * np.exp(2j * np.pi * freqs[None, :] * tau[:, None])).real, axis=1)
    return out / len(pairs(len(pos)))


# --- covariance and MUSIC ---------------------------------------------------------------------

def covariances(X, bins) -> np.ndarray:
    """R_k = (1/T) sum_t x_k(t) x_k(t)^H for each band bin."""
    X = np.asarray(X, dtype=np.complex128)
    M, _, T = X.shape
    out = np.zeros((len(bins), M, M), np.complex128)
    for b, k in enumerate(bins):
        for t in range(T):
            x = X[:, k, t]
            out[b] += np.outer(x, np.conj(x))
        out[b] /= T
    return out


def steering(positions, vectors, freqs, c=343.0) -> np.ndarray:
    """a_k(u)_m = exp(+j 2 pi f_k u.m / c), laid out (freqs, mics, points) like dsp.music.steering."""
    pos = np.asarray(positions, dtype=np.float64)
    out = np.zeros((len(freqs), len(pos), len(vectors)), np.complex128)
    for b, f in enumerate(freqs):
        for g, u in enumerate(vectors):
            out[b, :, g] = np.exp(2j * np.pi * f * (pos @ u) / c)
    return out


def music(R, A, n_sources: int, normalise: bool = False) -> np.ndarray:
    """Mean over bins of 1/||E_n^H a||^2 (each bin scaled to max 1 first for NormMUSIC)."""
    R = np.asarray(R, dtype=np.complex128)
    A = np.asarray(A, dtype=np.complex128)     # (bins, mics, points)
    B, M, G = A.shape
    out = np.zeros(G)
    for b in range(B):
        _, V = np.linalg.eigh(R[b])            # ascending eigenvalues
        En = V[:, : M - n_sources]             # noise subspace
        P = np.array([1.0 / np.linalg.norm(En.conj().T @ A[b, :, g]) ** 2 for g in range(G)])
        out += P / P.max() if normalise else P
    return out / B


# --- activity -----------------------------------------------------------------------------------

def energy_coherence(X, bins) -> tuple[float, float]:
    """(mean |X|^2 per mic, bin and frame; sum|sum_t Xi Xj^*|^2 / sum(P_i P_j) over bins and pairs)."""
    X = np.asarray(X, dtype=np.complex128)
    M, _, T = X.shape
    energy = 0.0
    num = den = 0.0
    for k in bins:
        P = [np.sum(np.abs(X[m, k]) ** 2) for m in range(M)]
        energy += sum(P)
        for i in range(M):
            for j in range(i + 1, M):
                num += abs(np.sum(X[i, k] * np.conj(X[j, k]))) ** 2
                den += P[i] * P[j]
    return energy / (M * len(bins) * T), (num / den if den > 0 else 0.0)


def dpd_weights(X, bins, power=2.0, frames=3, freqs=3) -> np.ndarray:
    """Mean pairwise MSC of the covariance summed over a (freqs x frames) neighbourhood of band
    bins (clipped at the block's edges), to the power ``power``; shape (B, T)."""
    X = np.asarray(X, dtype=np.complex128)
    M, _, T = X.shape
    B = len(bins)
    out = np.zeros((B, T))
    for b in range(B):
        for t in range(T):
            R = np.zeros((M, M), np.complex128)
            for bb in range(max(0, b - freqs // 2), min(B, b + freqs // 2 + 1)):
                for tt in range(max(0, t - frames // 2), min(T, t + frames // 2 + 1)):
                    x = X[:, bins[bb], tt]
                    R += np.outer(x, np.conj(x))
            msc = [abs(R[i, j]) ** 2 / (R[i, i].real * R[j, j].real) if R[i, i].real * R[j, j].real > 0 else 0.0
                   for i in range(M) for j in range(i + 1, M)]
            out[b, t] = np.mean(msc) ** power
    return out


# --- peak picking -------------------------------------------------------------------------------

def angle(u, v) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v), -1.0, 1.0))))


def local_maxima_circle(s, closed: bool) -> list[int]:
    """Indices strictly above the left neighbour and at least the right one (ends: open arcs have none beyond)."""
    G = len(s)
    out = []
    for g in range(G):
        if closed:
            left, right = s[(g - 1) % G], s[(g + 1) % G]
        else:
            left = s[g - 1] if g > 0 else -np.inf
            right = s[g + 1] if g < G - 1 else -np.inf
        if s[g] > left and s[g] >= right:
            out.append(g)
    return out


def local_maxima_sphere(s, vectors, radius_deg: float) -> list[int]:
    """Points strictly above every other point within radius_deg (brute force over all pairs)."""
    v = np.asarray(vectors, dtype=np.float64)
    angles = np.degrees(np.arccos(np.clip(v @ v.T, -1.0, 1.0)))   # (G, G)
    out = []
    for g in range(len(s)):
        near = (angles[g] <= radius_deg)
        near[g] = False
        if np.all(s[g] > np.asarray(s)[near]):
            out.append(g)
    return out


def pick(s, vectors, candidates, n_peaks: int, min_separation: float, min_relative: float = 0.0) -> list[int]:
    """Greedy: strongest candidates first, skipping any within min_separation of one kept."""
    kept: list[int] = []
    for g in sorted(candidates, key=lambda g: -s[g]):
        if len(kept) == n_peaks:
            break
        if kept and s[g] < min_relative * s[kept[0]]:
            break
        if all(angle(vectors[g], vectors[k]) > min_separation for k in kept):
            kept.append(g)
    return kept


def parabolic_offset(a: float, b: float, c: float) -> float:
    """Vertex of the parabola through (-1, a), (0, b), (1, c), in grid steps."""
    # Fit y = p x^2 + q x + b: p = (a + c)/2 - b, q = (c - a)/2; vertex at -q / (2p).
    p = (a + c) / 2 - b
    q = (c - a) / 2
    return -q / (2 * p) if p < 0 else 0.0
