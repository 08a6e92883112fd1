"""Positions from the bearings of several compact arrays in a room (position mode's
``triangulation`` search).

Triangulation. With several compact arrays in the room (profile ``groups``), each array's own
far-field SRP-PHAT gives bearings; :func:`triangulate` intersects the bearing lines by least
squares, choosing among the arrays' mirror ambiguities and rejecting outlying bearings by consensus.

Conventions: room frame, metres; positions (N, 3) float64; speed of sound 343 m/s unless set.
"""

from __future__ import annotations

import itertools

import numpy as np

from doascope import SPEED_OF_SOUND, ParameterError
from doascope.dsp._checks import as_positions, positive
from doascope.dsp.spatial_srp import as_room


# --------------------------------------------------------------------------------------------------
# Triangulation from several compact arrays
# --------------------------------------------------------------------------------------------------


# A small planar array measures azimuth well but elevation poorly (the TDOAs change with cos(el),
# flat near the horizon, and reverberation biases it): its bearing constrains a position mostly to
# the vertical half-plane of its azimuth, and its elevation counts this much.
PLANAR_ELEVATION_WEIGHT = 0.05


def _constraints(directions, planar) -> np.ndarray:
    # (G, 3, 3) quadratic forms Q_g: |x - a_g|_Q^2 is the squared distance to the line (3-D arrays)
    # or to the vertical plane through the line plus a weak line term (planar arrays).
    u = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    Q = np.eye(3)[None] - u[:, :, None] * u[:, None, :]
    if planar is not None:
        for g in np.nonzero(np.asarray(planar, bool))[0]:
            n = np.array([-u[g, 1], u[g, 0], 0.0])
            n /= max(np.linalg.norm(n), 1e-12)
            Q[g] = np.outer(n, n) + PLANAR_ELEVATION_WEIGHT * Q[g]
    return Q


def intersect_bearings(origins, directions, planar=None) -> np.ndarray:
    """Least-squares intersection of 3-D bearing lines (origin a_g, direction u_g): the point x minimising
    sum_g |(I - u_g u_g^T)(x - a_g)|^2 (for ``planar`` lines, the distance to the vertical plane of the
    azimuth plus a weak line term). (3,) float64."""
    a = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    Q = _constraints(directions, planar)
    return np.linalg.lstsq(Q.sum(axis=0), np.einsum("gij,gj->i", Q, a), rcond=None)[0]


def line_distances(point, origins, directions, planar=None) -> np.ndarray:
    """Distance (m) from ``point`` to each bearing half-line (horizontal distance to the azimuth's
    half-plane for ``planar`` lines); a point behind an origin counts its distance to the origin. (G,)."""
    a = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    u = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    v = np.asarray(point, dtype=np.float64) - a
    if planar is not None:
        flat = np.asarray(planar, bool)
        u = np.where(flat[:, None], u * [1.0, 1.0, 0.0], u)
        u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
        v = np.where(flat[:, None], v * [1.0, 1.0, 0.0], v)
    t = np.maximum((v * u).sum(axis=1), 0.0)
    return np.linalg.norm(v - t[:, None] * u, axis=1)


def triangulate(origins, directions, groups=None, *, planar=None, room=None, tolerance: float = 0.4,
                n_sources: int = 1) -> list[tuple[np.ndarray, list[int]]]:
    """Positions from bearing half-lines of several arrays, with outlier rejection.

    Parameters
    ----------
    origins : (lines, 3) array centres, m
    directions : (lines, 3) bearings (any length), room frame
    groups : (lines,) which array each line comes from (default: each its own). An array may give
        several candidates (several peaks, or the mirror images a planar array cannot tell apart);
        a position uses at most one line per array.
    planar : (lines,) bool, lines from planar arrays (azimuth trusted, elevation weakly)
    room : optional (3, 2) volume; positions outside it are not accepted
    tolerance : a line passing within this distance (m) of a position supports it
    n_sources : positions to return at most; each uses up its supporting arrays

    Returns
    -------
    list of (position (3,), indices of the supporting lines), best supported first. Every pair of
    lines from different arrays proposes their intersection; the proposal supported by the most
    arrays (then the smallest residual) wins and is refitted on its supporters.
    """
    a = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    u = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    if a.shape != u.shape:
        raise ParameterError("origins and directions must both be (lines, 3)")
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
    grp = np.arange(len(a)) if groups is None else np.asarray(groups, dtype=np.int64)
    flat = np.zeros(len(a), bool) if planar is None else np.asarray(planar, bool)
    box = None if room is None else as_room(room)
    tolerance = positive("tolerance", tolerance)
    out: list[tuple[np.ndarray, list[int]]] = []
    free = np.ones(len(a), bool)

    def support(x):
        # Per array, its closest free line if within tolerance.
        d = line_distances(x, a, u, flat)
        chosen = []
        for g in np.unique(grp[free]):
            idx = np.nonzero(free & (grp == g))[0]
            k = idx[np.argmin(d[idx])]
            if d[k] <= tolerance:
                chosen.append(int(k))
        return chosen, d

    for _ in range(int(n_sources)):
        best = None
        idx = np.nonzero(free)[0]
        for i, j in itertools.combinations(idx, 2):
            if grp[i] == grp[j] or abs(float(u[i] @ u[j])) > 0.999:   # same array, or parallel
                continue
            x = intersect_bearings(a[[i, j]], u[[i, j]], flat[[i, j]])
            if box is not None and np.any((x < box[:, 0] - tolerance) | (x > box[:, 1] + tolerance)):
                continue
            chosen, d = support(x)
            if len(chosen) < 2:
                continue
            x = intersect_bearings(a[chosen], u[chosen], flat[chosen])
            chosen, d = support(x)
            if len(chosen) < 2:
                continue
            score = (len(chosen), -float(np.sum(d[chosen] ** 2)))
            if best is None or score > best[0]:
                best = (score, x, chosen)
        if best is None:
            break
        _, x, chosen = best
        if box is not None:
            x = np.clip(x, box[:, 0], box[:, 1])
        out.append((x, chosen))
        for k in chosen:   # the used lines, and their mirror images (same azimuth, same array)
            same = (grp == grp[k]) & (np.abs(u[:, :2] - u[k, :2]).max(axis=1) < 1e-9)
            free[same] = False
    return out


class GroupBearings:
    """Far-field SRP-PHAT of each compact array (profile ``groups``), as bearing candidates.

    For planar arrays (which cannot tell a direction from its mirror image about their plane) both
    images are returned, and :func:`triangulate` picks the consistent one.
    """

    def __init__(self, groups, positions, *, fs: float, nfft: int, band, c: float = SPEED_OF_SOUND,
                 resolution: float = 2.0, smoothing: float = 0.0):
        from doascope.dsp.estimators import make_estimator
        from doascope.dsp.grids import array_geometry, sphere_grid

        positions = as_positions(positions)
        self.smoothing = float(smoothing)   # exponential average of each array's cross-spectra
        self._stats: list[np.ndarray | None] = [None] * len(groups)
        self.items = []
        for g in groups:
            idx = np.asarray(g.indices, dtype=np.int64)
            centre = positions[idx].mean(axis=0)
            local = positions[idx] - centre     # room axes: the bearings come out in the room frame
            geometry = array_geometry(local)
            if geometry == "linear":
                raise ParameterError(f"array {g.name!r} is linear: it gives a cone, not a bearing, and "
                                     "cannot be used for triangulation")
            grid = sphere_grid(resolution, hemisphere=geometry == "planar")
            est = make_estimator("srp-phat", local, fs=fs, nfft=nfft, grid=grid, band=band, c=c)
            normal = np.linalg.svd(local - local.mean(axis=0))[2][-1] if geometry == "planar" else None
            self.items.append((idx, centre, est, normal))

    def bearings(self, X, n_peaks: int = 1):
        """Candidate lines of a (mics, freqs, frames) block: (origins (n, 3), directions (n, 3),
        group of each (n,), power of each (n,), planar (n,) bool)."""
        from doascope.dsp.peaks import find_peaks

        origins, dirs, grp, power, flat = [], [], [], [], []
        for g, (idx, centre, est, normal) in enumerate(self.items):
            stats = est.statistics(X[idx])
            if self._stats[g] is not None and self.smoothing > 0:
                stats = self.smoothing * self._stats[g] + (1.0 - self.smoothing) * stats
            self._stats[g] = stats
            s = est.spectrum_from(stats)
            for pk in find_peaks(s, est.grid, n_peaks, min_separation=20.0):
                v = est.grid.vectors[pk.index]
                images = [v] if normal is None else [v, v - 2 * (v @ normal) * normal]
                for w in images:
                    origins.append(centre)
                    dirs.append(w)
                    grp.append(g)
                    power.append(pk.power)
                    flat.append(normal is not None)
        return np.array(origins).reshape(-1, 3), np.array(dirs).reshape(-1, 3), np.array(grp, np.int64), \
            np.array(power), np.array(flat, bool)
