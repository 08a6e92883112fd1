"""Each frame's SRP maximum on a large grid (a sphere on 16 mics), coarse-to-fine: the same point and
value as a full scan, with far fewer lookups. Imported when a localizer on a grid of at least
``doascope.dsp.srp.COARSE_FINE_MIN_POINTS`` points is built, so that the common small grids never
load these kernels (start-up)."""

from __future__ import annotations

import numpy as np
from numba import njit

from doascope import ParameterError

# -- Coarse-to-fine maxima ----------------------------------------------------------------------------
#
# A frame's maximum on a large grid (a sphere on 16 mics: 5157 points x 120 pairs) found the way
# ODAS's SSL does it (introlab/odas, src/module/mod_ssl.c with src/system/xcorr2xcorr.c and
# src/init/space.c: a coarse sphere is scanned on cross-correlations max-filtered over each coarse
# point's span of lags, then only the fine points linked to the best coarse points are scanned),
# made exact: every fine point belongs to one coarse cell, and a cell's bound is, pair by pair, the
# maximum of the correlation over every lag its fine points interpolate between. Linear
# interpolation never exceeds the larger of its two lags, so the bound is >= the SRP of every point
# in the cell. Cells are refined in decreasing bound order until the next bound is below the best
# value found: the result is the full scan's maximum, at the cost of the coarse bounds plus the few
# cells whose bound reaches the peak.

# A bound below the best value by less than this still gets its cell refined: float32 rounding of
# the interpolation and of the sum over pairs (each term within an ulp of its exact value, values
# |r| <= 1 per pair, a few hundred pairs, whether a row holds one pair or a baseline's sum of several)
# stays far below it, so no cell holding the maximum is skipped.
BOUND_TOLERANCE = 1e-4
# Fine points per coarse cell, on average.
COARSE_CELL_POINTS = 10


@njit("void(float32[::1], float32[::1], int64)", cache=True, nogil=True)
def _max_shift(a, b, span):
    # b[k] = max(a[k], a[k + span]) where k + span is on the grid, a[k] above (a branch-free loop).
    L = a.shape[0]
    n = L - span
    lo = a[:n]
    hi = a[span:]
    out = b[:n]
    for k in range(n):
        x = lo[k]
        y = hi[k]
        out[k] = x if x >= y else y
    for k in range(n, L):
        b[k] = a[k]


@njit("void(float32[:,::1], int32[::1], float32[:,::1], float32[::1], float32[::1])", cache=True, nogil=True)
def _running_max(r, width, out, a, b):
    # out[p, k] >= max(r[p, k .. k + width[p]]) (equal away from the top end): maxima over 2, 4, 8...
    # lags by doubling, then the window as two overlapping spans.
    P, L = r.shape
    for p in range(P):
        n = width[p] + 1            # lags in the window
        src = r[p]
        span = 1
        flip = False
        while 2 * span <= n:        # max over [k, k + 2 span) (clipped at the top), into a and b in turn
            dst = b if flip else a
            _max_shift(src, dst, span)
            src = dst
            flip = not flip
            span *= 2
        _max_shift(src, out[p], n - span)   # [k, k + span) and [k + n - span, k + n)


@njit("void(float32[:,:,::1], int32[:,::1], float32[:,::1], float32, int32[:,::1], int32[::1], int64[::1],"
      " int64[::1], float32, int64[::1], float32[::1])", cache=True, nogil=True)
def _coarse_fine_maxima(r, lag_t, frac_t, inv, lo, width, cell_start, cell_points, tol, points, values):
    # r (S, P, L); lag_t, frac_t (G, P): the fine lag table, point-major; inv the lookup's scale; lo (P, C): each cell's
    # lowest lag per pair; width (P,): the widest cell span per pair; cell_points[cell_start[c]:
    # cell_start[c + 1]] the fine points of cell c (ascending). Out: each row's maximum and its point.
    S, P, L = r.shape
    C = lo.shape[1]
    M = np.empty((P, L), np.float32)
    ga = np.empty(L, np.float32)
    gb = np.empty(L, np.float32)
    bound = np.empty(C, np.float32)
    for s in range(S):
        rs = r[s]
        _running_max(rs, width, M, ga, gb)
        bound[:] = 0.0
        for p in range(P):
            Mp = M[p]
            lp = lo[p]
            for c in range(C):
                bound[c] += Mp[lp[c]]
        bound *= inv
        best = np.float32(-np.inf)
        bi = -1
        # The cell of the highest bound first; then, highest bound first, only the cells whose bound
        # reaches the best value found so far (usually a few dozen of hundreds).
        top = np.argmax(bound)
        cells = np.empty(1, np.int64)
        cells[0] = top
        for stage in range(2):
            for c in cells:
                if bound[c] + tol < best:
                    break
                for q in range(cell_start[c], cell_start[c + 1]):
                    pt = cell_points[q]
                    kp = lag_t[pt]
                    ap = frac_t[pt]
                    v = np.float32(0.0)
                    for p in range(P):   # the full scan's order of operations: the same float32 value
                        k = kp[p]
                        a = ap[p]
                        v += (np.float32(1.0) - a) * rs[p, k] + a * rs[p, k + 1]
                    v *= inv
                    if v > best or (v == best and pt < bi):
                        best = v
                        bi = pt
            if stage == 0:
                rest = np.nonzero(bound + tol >= best)[0]
                rest = rest[rest != top]
                cells = rest[np.argsort(-bound[rest])]
        points[s] = bi
        values[s] = best


def coarse_cells(vectors: np.ndarray, points_per_cell: int = COARSE_CELL_POINTS) -> np.ndarray:
    """(points,) int64 coarse cell of each grid direction (unit vectors (points, 3)): the nearest of
    about points / points_per_cell quasi-uniform (Fibonacci) centres; cells that no point falls in
    are dropped and the rest numbered from 0."""
    v = np.asarray(vectors, np.float64)
    n = max(1, int(round(len(v) / points_per_cell)))
    # centres on the whole sphere: a hemisphere grid fills about half of them
    n = n * 2 if v[:, 2].min() > -0.5 else n
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5 ** 0.5) * i
    rho = np.sqrt(1.0 - z * z)
    centres = np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)
    nearest = np.argmax(v @ centres.T, axis=1)
    _, cells = np.unique(nearest, return_inverse=True)
    return cells.astype(np.int64)


class CoarseFineScan:
    """Each row's SRP maximum on a large grid, coarse-to-fine (see the notes above): the same point
    and value as ``argmax(lookup.rows(r))``, with far fewer lookups.

    Built once per (array, grid) from a :class:`~doascope.dsp.srp.SrpLookup` and the grid's unit vectors.
    """

    def __init__(self, lookup, vectors, points_per_cell: int = COARSE_CELL_POINTS):
        cells = coarse_cells(vectors, points_per_cell)
        if cells.size != lookup.n_points:
            raise ParameterError(f"{cells.size} directions for a lag table of {lookup.n_points} points")
        C = int(cells.max()) + 1
        order = np.argsort(cells, kind="stable")
        self.cell_points = np.ascontiguousarray(order, dtype=np.int64)
        self.cell_start = np.searchsorted(cells[order], np.arange(C + 1)).astype(np.int64)
        self.lag_t = np.ascontiguousarray(lookup.lag.T)
        self.frac_t = np.ascontiguousarray(lookup.frac.T)
        lo = np.full((lookup.n_rows, C), np.iinfo(np.int32).max, np.int64)
        hi = np.full((lookup.n_rows, C), -1, np.int64)
        for p in range(lookup.n_rows):
            np.minimum.at(lo[p], cells, lookup.lag[p])
            np.maximum.at(hi[p], cells, lookup.lag[p] + 1)   # interpolation reads lags k and k + 1
        self.lo = np.ascontiguousarray(lo, dtype=np.int32)
        self.width = np.ascontiguousarray((hi - lo).max(axis=1), dtype=np.int32)
        self.n_cells = C
        self.scale = lookup.scale

    def maxima(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(S,) int64 points and (S,) float32 values: each row's maximum of the SRP of correlations r
        (S, pairs, lags) float32 (made on the lookup's lag grid)."""
        S = r.shape[0]
        points = np.empty(S, np.int64)
        values = np.empty(S, np.float32)
        _coarse_fine_maxima(r, self.lag_t, self.frac_t, self.scale, self.lo, self.width, self.cell_start,
                            self.cell_points, np.float32(BOUND_TOLERANCE), points, values)
        return points, values
