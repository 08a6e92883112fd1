"""SRP-PHAT the fast way (as ODAS does): pairwise GCC-PHAT once per block, then every grid point
sums its pairs' correlations at precomputed TDOAs, with linear interpolation between lags.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from doascope import ParameterError


@njit("void(float32[:,::1], float32[:,::1], float32[::1])", cache=True, nogil=True)
def _srp_lookup(r, idx, out):
    # r (P, L) correlations; idx (P, G) fractional lag indices; out (G,) mean over pairs.
    P = r.shape[0]
    G = idx.shape[1]
    inv = np.float32(1.0 / P)
    for g in range(G):
        out[g] = 0.0
    for p in range(P):
        for g in range(G):
            x = idx[p, g]
            k = int(x)
            a = x - k
            out[g] += (1.0 - a) * r[p, k] + a * r[p, k + 1]
    for g in range(G):
        out[g] *= inv


def srp_from_correlations(r, lag_index) -> np.ndarray:
    """Steered response power at each grid point from pair correlations.

    Parameters
    ----------
    r : (pairs, lags) float32 GCC-PHAT correlations
    lag_index : (pairs, points) float32 fractional lag index of each point's TDOA per pair

    Returns
    -------
    (points,) float32: mean over pairs of r_ij(tau_ij(point)); 1 for a perfectly coherent wave.
    """
    r = np.ascontiguousarray(r, dtype=np.float32)
    idx = np.ascontiguousarray(lag_index, dtype=np.float32)
    if r.ndim != 2 or idx.ndim != 2 or idx.shape[0] != r.shape[0]:
        raise ParameterError(f"correlations {r.shape} and lag indices {idx.shape} must share the pair axis")
    if idx.size and (idx.min() < 0 or idx.max() > r.shape[1] - 1 - 1e-6):
        raise ParameterError("lag indices fall outside the correlation's lag grid")
    out = np.empty(idx.shape[1], np.float32)
    _srp_lookup(r, idx, out)
    return out
