"""Near-field SRP-PHAT over a room and its global searches (position mode's spatial spectrum).

Near-field SRP-PHAT. Pairwise GCC-PHAT (:class:`~doascope.dsp.gcc.GccPhat`) is computed once per
block; the steered response at a point p is the mean over pairs of r_ij(tau_ij(p)) with the exact
spherical-wave TDOA

    tau_ij(p) = (|p - m_i| - |p - m_j|) / c,

(the delay of mic i behind mic j, GccPhat's convention), read from the correlation by linear
interpolation between lags, as :func:`~doascope.dsp.srp.srp_from_correlations` does for fixed
grids. Here the TDOAs are computed inside the kernel for every point: a 5 cm grid of a 6 x 5 x 3 m
room has 720 000 points, whose lag tables would take 40-80 MB, and the global searches draw new
points every block.

Global search. SRP-PHAT over space is a needle in a haystack: with a 3.5 kHz band its peak is a few
centimetres wide, so a grid coarser than that misses it, and local ascent stalls on the many side
maxima. Both searches here therefore score a *cell* (a cube of half-diagonal h around a point) by
an upper bound on the response anywhere inside it: for each pair, the maximum of its correlation
over the TDOAs the cell spans (tau_ij(p) +/- |u_i - u_j| h / c, with u the unit vectors from the
mics, to first order), found in O(1) from a range-maximum table built once per block. At h = 0 the
bound is the response itself. Cells whose bound is high are split, in the spirit of Cobos et al.'s
volume-integrated SRP (2011) and of branch and bound:

``grid``            the reference: the exact response on a regular grid (5 cm by default).
``coarse-to-fine``  octree beam search: bound every cell of a coarse grid, keep the best ``beam``
                    cells, split each into 8, repeat until the cells are ``tolerance`` small.
``src``             stochastic region contraction (Do, Silverman & Yu 2007): random points in a
                    box, keep the best, shrink the box to them, draw again; each point is scored
                    by the bound over a cell of the current sampling spacing.

Several sources: find the strongest, zero every pair's correlation around that position's TDOAs,
search again.

Conventions: room frame, metres; positions (N, 3) float64; speed of sound 343 m/s unless set.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numba import njit

from doascope import SPEED_OF_SOUND, ParameterError
from doascope.config import DEFAULT_BAND
from doascope.dsp._checks import as_positions, positive
from doascope.dsp.gcc import GccPhat


# --------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------


@njit("void(float32[:,::1], float32[:,:,::1])", cache=True, nogil=True)
def _range_max_table(r, tbl):
    # Sparse table: tbl[k, p, l] = max(r[p, l : l + 2**k]) (clipped at the end of the lags).
    K, P, L = tbl.shape
    for p in range(P):
        for lag in range(L):
            tbl[0, p, lag] = r[p, lag]
    for k in range(1, K):
        s = 1 << (k - 1)
        for p in range(P):
            for lag in range(L):
                a = tbl[k - 1, p, lag]
                if lag + s < L:
                    b = tbl[k - 1, p, lag + s]
                    if b > a:
                        a = b
                tbl[k, p, lag] = a


@njit("void(float32[:,::1], float32[:,:,::1], float64[:,::1], float64, float64[:,::1], int64[:,::1], "
      "float64, float64, float32[::1])", cache=True, nogil=True)
def _srp_points(r, tbl, points, h, mics, pairs, scale, half, out):
    # r (P, L) correlations; tbl their range-maximum table; points (N, 3); h cell half-diagonal (m),
    # 0 for the exact response; mics (M, 3); scale = lags per metre of path difference; half = the
    # index of lag 0. out (N,): mean over pairs of the response (h = 0) or of its bound over the cell.
    N = points.shape[0]
    M = mics.shape[0]
    P = pairs.shape[0]
    L = r.shape[1]
    K = tbl.shape[0]
    d = np.empty(M)
    u = np.empty((M, 3))
    inv = 1.0 / P
    for g in range(N):
        for m in range(M):
            dx = points[g, 0] - mics[m, 0]
            dy = points[g, 1] - mics[m, 1]
            dz = points[g, 2] - mics[m, 2]
            dist = np.sqrt(dx * dx + dy * dy + dz * dz)
            d[m] = dist
            if h > 0.0:
                w = 1.0 / max(dist, 1e-9)
                u[m, 0] = dx * w
                u[m, 1] = dy * w
                u[m, 2] = dz * w
        acc = 0.0
        for q in range(P):
            i = pairs[q, 0]
            j = pairs[q, 1]
            x = (d[i] - d[j]) * scale + half
            if h <= 0.0:
                x = min(max(x, 0.0), L - 1.001)
                k = int(x)
                a = x - k
                acc += (1.0 - a) * r[q, k] + a * r[q, k + 1]
            else:
                gx = u[i, 0] - u[j, 0]
                gy = u[i, 1] - u[j, 1]
                gz = u[i, 2] - u[j, 2]
                w = np.sqrt(gx * gx + gy * gy + gz * gz) * h * scale + 1.0
                lo = max(int(np.floor(x - w)), 0)
                hi = min(int(np.ceil(x + w)), L - 1)
                if hi < lo:
                    lo = hi
                n = hi - lo + 1
                k = 0
                while (2 << k) <= n and k < K - 1:
                    k += 1
                v = tbl[k, q, lo]
                v2 = tbl[k, q, max(hi - (1 << k) + 1, lo)]
                acc += v if v > v2 else v2
        out[g] = acc * inv


# --------------------------------------------------------------------------------------------------
# Near-field SRP-PHAT over space
# --------------------------------------------------------------------------------------------------


def as_room(room) -> np.ndarray:
    """A search volume [[xmin, xmax], [ymin, ymax], [zmin, zmax]] as (3, 2) float64, or a ParameterError."""
    b = np.asarray(room, dtype=np.float64)
    if b.shape != (3, 2) or not np.all(np.isfinite(b)) or not np.all(b[:, 0] < b[:, 1]):
        raise ParameterError("the room must be [[xmin, xmax], [ymin, ymax], [zmin, zmax]] in metres with min < max")
    return b


def regular_grid(room, spacing: float) -> np.ndarray:
    """Cell centres of a regular grid of ``spacing`` metres filling ``room``: (points, 3) float64."""
    b = as_room(room)
    spacing = positive("spacing", spacing)
    axes = []
    for lo, hi in b:
        n = max(1, int(np.ceil((hi - lo) / spacing - 1e-9)))
        axes.append(lo + (np.arange(n) + 0.5) * (hi - lo) / n)
    g = np.meshgrid(*axes, indexing="ij")
    return np.ascontiguousarray(np.stack([a.ravel() for a in g], axis=1))


@dataclass
class SearchStats:
    """What one search cost: points scored (bounds and exact responses alike)."""

    evaluations: int = 0


class SpatialSrp:
    """Near-field SRP-PHAT of one set of distributed microphones over a room.

    Parameters
    ----------
    positions : (mics, 3) microphone positions in the room frame, metres
    room : (3, 2) search volume [[xmin, xmax], [ymin, ymax], [zmin, zmax]], metres
    fs, nfft, band : as for the DOA estimators
    upsample : lags per sample of the correlations; 4 gives a lag step of 5.4 mm of path
        difference at 16 kHz, well below the accuracy a room allows

    ``correlations(X)`` gives r (pairs, lags) of an STFT block; ``prepare(r)`` builds its
    range-maximum table; ``response(points)`` / ``bound(points, h)`` score points; the searches
    (``grid_search``, ``coarse_to_fine``, ``src``) return (point (3,), response, SearchStats).
    """

    def __init__(self, positions, *, room, fs: float, nfft: int, band=DEFAULT_BAND,
                 c: float = SPEED_OF_SOUND, upsample: int = 4):
        self.positions = np.array(as_positions(positions), dtype=np.float64, order="C")  # writeable for numba
        self.room = as_room(room)
        self.c = positive("c", c)
        self.gcc = GccPhat(self.positions, fs=fs, nfft=nfft, band=band, c=self.c, upsample=upsample)
        self.pairs = self.gcc.pairs
        self.scale = 1.0 / (self.c * self.gcc.step)     # lags per metre of path difference
        L = self.gcc.lags.size
        self._levels = int(np.floor(np.log2(L))) + 1
        self._r: np.ndarray | None = None
        self._tbl: np.ndarray | None = None
        self._grids: dict[float, np.ndarray] = {}
        # Half-width of the zone masked around a found source's TDOAs: the main lobe of a PHAT
        # correlation band-limited to fmax is about 1/fmax wide.
        self.mask_halfwidth = 1.0 / float(self.gcc.freqs[-1])

    @property
    def n_pairs(self) -> int:
        return self.pairs.shape[0]

    def correlations(self, X, weights=None) -> np.ndarray:
        """GCC-PHAT correlations (pairs, lags) float32 of a (mics, freqs, frames) block."""
        return self.gcc.correlate(X, weights)

    def prepare(self, r) -> None:
        """Use correlations r (pairs, lags) for the following scores and searches."""
        r = np.ascontiguousarray(r, dtype=np.float32)
        if r.shape != (self.n_pairs, self.gcc.lags.size):
            raise ParameterError(f"correlations must have shape {(self.n_pairs, self.gcc.lags.size)}, got {r.shape}")
        if self._tbl is None:
            self._tbl = np.empty((self._levels, *r.shape), np.float32)
        _range_max_table(r, self._tbl)
        self._r = r

    def tdoas(self, points) -> np.ndarray:
        """Spherical-wave TDOA tau_ij(p) = (|p - m_i| - |p - m_j|) / c, (pairs, points) float64 s."""
        p = np.atleast_2d(np.asarray(points, dtype=np.float64))
        d = np.linalg.norm(p[:, None, :] - self.positions[None, :, :], axis=2)   # (N, M)
        return (d[:, self.pairs[:, 0]] - d[:, self.pairs[:, 1]]).T / self.c

    def echo_distance(self, q, p) -> float:
        """How well a source at ``p`` explains a peak at ``q``: the RMS difference (seconds) between
        q's pair TDOAs and those of p itself or of its first-order image in one of the six surfaces of
        the room box (a wall reflection), whichever is closest."""
        p = np.asarray(p, dtype=np.float64)
        images = [p]
        for ax in range(3):
            for wall in self.room[ax]:
                image = p.copy()
                image[ax] = 2.0 * wall - p[ax]
                images.append(image)
        d = self.tdoas(images) - self.tdoas(q)            # (pairs, images)
        return float(np.sqrt(np.mean(d * d, axis=0)).min())

    def bound(self, points, h: float, stats: SearchStats | None = None) -> np.ndarray:
        """Upper bound (to first order) of the response over cubes of half-diagonal h (m) centred on
        points (N, 3); h = 0 gives the response itself. (N,) float32."""
        if self._r is None:
            raise ParameterError("call prepare() with a block's correlations before scoring points")
        pts = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.empty(pts.shape[0], np.float32)
        _srp_points(self._r, self._tbl, pts, float(h), self.positions, self.pairs, self.scale,
                    float(self.gcc.half), out)
        if stats is not None:
            stats.evaluations += pts.shape[0]
        return out

    def response(self, points, stats: SearchStats | None = None) -> np.ndarray:
        """Steered response power at points (N, 3): mean over pairs of r_ij(tau_ij(p)); (N,) float32."""
        return self.bound(points, 0.0, stats)

    def mask(self, point) -> None:
        """Zero every pair's correlation around the TDOAs of ``point`` (a found source)."""
        r = self._r.copy()
        x = self.tdoas(point)[:, 0] / self.gcc.step + self.gcc.half
        w = self.mask_halfwidth / self.gcc.step
        lo = np.clip(np.floor(x - w).astype(int), 0, r.shape[1])
        hi = np.clip(np.ceil(x + w).astype(int) + 1, 0, r.shape[1])
        for q in range(self.n_pairs):   # a loop over pairs, not points
            r[q, lo[q]:hi[q]] = 0.0
        self.prepare(r)

    # -- searches ----------------------------------------------------------------------------------

    def _grid(self, spacing: float) -> np.ndarray:
        key = round(float(spacing), 6)
        if key not in self._grids:
            self._grids[key] = regular_grid(self.room, spacing)
        return self._grids[key]

    def grid_search(self, *, spacing: float = 0.05):
        """Exact response on every point of a regular grid: the exhaustive reference."""
        stats = SearchStats()
        pts = self._grid(spacing)
        s = self.response(pts, stats)
        g = int(np.argmax(s))
        return pts[g].copy(), float(s[g]), stats

    def coarse_to_fine(self, *, spacing: float = 0.3, beam: int = 16, tolerance: float = 0.02):
        """Octree beam search on cell bounds, from ``spacing`` cells down to ``tolerance`` (m)."""
        stats = SearchStats()
        pts = self._grid(spacing)
        size = (self.room[:, 1] - self.room[:, 0]) / np.maximum(1, np.ceil((self.room[:, 1] - self.room[:, 0])
                                                                            / spacing - 1e-9))
        children = np.array(list(itertools.product((-0.25, 0.25), repeat=3)))   # (8, 3) of a cell's size
        while True:
            s = self.bound(pts, 0.5 * float(np.linalg.norm(size)), stats)
            keep = np.argsort(s)[::-1][:beam]
            if size.max() <= tolerance:
                break
            pts = (pts[keep][:, None, :] + children[None, :, :] * size).reshape(-1, 3)
            size = size / 2
        # The last cells are small: score their centres exactly.
        cand = pts[keep]
        s = self.response(cand, stats)
        g = int(np.argmax(s))
        return cand[g].copy(), float(s[g]), stats

    def src(self, *, initial: int = 2000, draws: int = 400, keep: int = 40, tolerance: float = 0.02,
            max_iter: int = 30, rng: np.random.Generator | None = None):
        """Stochastic region contraction: ``initial`` random points in the room, then ``draws`` per
        round in the bounding box of the ``keep`` best so far, until the box is ``tolerance`` small."""
        stats = SearchStats()
        rng = np.random.default_rng(0) if rng is None else rng
        lo, hi = self.room[:, 0].copy(), self.room[:, 1].copy()
        n = initial
        best_p = np.empty((0, 3))
        for _ in range(max_iter):
            new = lo + rng.random((n, 3)) * (hi - lo)
            pts = np.concatenate([best_p, new])
            # Score every point as a cell of the current sampling spacing (the kept ones again:
            # bounds of different cell sizes are not comparable).
            spacing = float(np.prod(hi - lo) / n) ** (1 / 3)
            s = self.bound(pts, 0.5 * np.sqrt(3.0) * spacing, stats)
            order = np.argsort(s)[::-1][:keep]
            best_p = pts[order]
            if spacing <= tolerance:
                break
            lo, hi = best_p.min(axis=0), best_p.max(axis=0)
            pad = 0.5 * spacing  # keep a margin of half the spacing so the box does not collapse
            lo, hi = np.maximum(lo - pad, self.room[:, 0]), np.minimum(hi + pad, self.room[:, 1])
            n = draws
        s = self.response(best_p, stats)
        g = int(np.argmax(s))
        return best_p[g].copy(), float(s[g]), stats

    def search(self, method: str, **options):
        if method == "grid":
            return self.grid_search(**options)
        if method == "coarse-to-fine":
            return self.coarse_to_fine(**options)
        if method == "src":
            return self.src(**options)
        raise ParameterError(f"unknown search {method!r}; choose one of: grid, coarse-to-fine, src")

    def locate(self, r, n_sources: int = 1, *, method: str = "coarse-to-fine", min_relative: float = 0.0,
               **options) -> list[tuple[np.ndarray, float]]:
        """Up to ``n_sources`` (position (3,), response) from correlations r, strongest first: search,
        mask the found source's TDOAs, search again."""
        self.prepare(r)
        found: list[tuple[np.ndarray, float]] = []
        for k in range(int(n_sources)):
            p, v, _ = self.search(method, **options)
            if found and v < min_relative * found[0][1]:
                break
            found.append((p, v))
            if k + 1 < n_sources:
                self.mask(p)
        return found

    def response_map(self, *, spacing: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-down map of the current block: for each (x, y) cell, the largest cell bound over
        heights. Returns (map (nx, ny) float32, x centres, y centres)."""
        pts = self._grid(spacing)
        b = self.bound(pts, 0.5 * np.sqrt(3.0) * spacing)
        xs, ys, zs = (np.unique(pts[:, k]) for k in range(3))
        return b.reshape(xs.size, ys.size, zs.size).max(axis=2), xs, ys
