"""Peak picking on direction grids: K strongest local maxima at least ``min_separation`` apart."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from doascope import ParameterError
from doascope.dsp.grids import Grid


@dataclass(frozen=True)
class Peak:
    azimuth: float     # degrees [0, 360)
    elevation: float   # degrees
    power: float       # spectrum value at the peak, at most 1 (1: a perfectly coherent plane wave)
    index: int         # grid index of the peak

    def as_dict(self) -> dict:
        # Wrap after rounding: 359.996 must not go out as 360.0, outside [0, 360).
        return {"azimuth": round(self.azimuth, 2) % 360.0, "elevation": round(self.elevation, 2),
                "power": round(self.power, 4)}


@njit("boolean[::1](float32[::1], boolean)", cache=True, nogil=True)
def _circle_maxima(s, closed):
    G = s.shape[0]
    out = np.zeros(G, np.bool_)
    for g in range(G):
        if closed:
            left = s[(g - 1) % G]
            right = s[(g + 1) % G]
        else:
            left = s[g - 1] if g > 0 else -np.inf
            right = s[g + 1] if g < G - 1 else -np.inf
        # >= on one side so a flat-topped peak yields one maximum, not none.
        out[g] = s[g] > left and s[g] >= right
    return out


@njit("boolean[::1](float32[::1], int64[:,::1])", cache=True, nogil=True)
def _graph_maxima(s, neighbours):
    G = s.shape[0]
    out = np.zeros(G, np.bool_)
    for g in range(G):
        ok = True
        for n in range(neighbours.shape[1]):
            j = neighbours[g, n]
            if j < 0:
                break
            if s[j] > s[g] or (s[j] == s[g] and j < g):
                ok = False
                break
        out[g] = ok
    return out


def find_peaks(spectrum, grid: Grid, n_peaks: int, *, min_separation: float = 20.0,
               min_relative: float = 0.0) -> list[Peak]:
    """The ``n_peaks`` strongest local maxima of a spatial spectrum, strongest first.

    Parameters
    ----------
    spectrum : (points,) spectrum over ``grid``
    grid : the grid the spectrum was computed on
    n_peaks : how many peaks at most
    min_separation : degrees; a weaker maximum closer than this to a stronger kept one is dropped
    min_relative : drop peaks whose power is below this fraction of the strongest peak's

    On circle grids the azimuth is refined between grid points by parabolic interpolation.
    """
    s = np.ascontiguousarray(spectrum, dtype=np.float32)
    if s.shape != (len(grid),):
        raise ParameterError(f"spectrum has shape {s.shape} but the grid has {len(grid)} points")
    if int(n_peaks) < 1:
        raise ParameterError(f"n_peaks must be at least 1, got {n_peaks}")
    if not np.all(np.isfinite(s)):
        return []
    if grid.kind == "circle":
        cand = np.nonzero(_circle_maxima(s, grid.closed))[0]
    else:
        cand = np.nonzero(_graph_maxima(s, grid.neighbours))[0]
    cand = cand[np.argsort(-s[cand], kind="stable")]
    cos_sep = np.cos(np.radians(min_separation))
    kept: list[int] = []
    for g in cand:
        if len(kept) == n_peaks:
            break
        if kept and s[g] < min_relative * s[kept[0]]:
            break
        if all(grid.vectors[g] @ grid.vectors[k] < cos_sep for k in kept):
            kept.append(int(g))
    return [_refine(s, grid, g) for g in kept]


def _refine(s: np.ndarray, grid: Grid, g: int) -> Peak:
    az, el, power = float(grid.azimuth[g]), float(grid.elevation[g]), float(s[g])
    if grid.kind == "circle":
        G = len(grid)
        if grid.closed or 0 < g < G - 1:
            a, b, c = float(s[(g - 1) % G]), float(s[g]), float(s[(g + 1) % G])
            den = a - 2 * b + c
            if den < 0:
                delta = 0.5 * (a - c) / den
                az = (az + delta * grid.resolution) % 360.0
                # The parabola's top can overshoot the samples; spectra are at most 1 (a perfectly
                # coherent plane wave), and so is a reported power.
                power = min(b - 0.25 * (a - c) * delta, 1.0)
    return Peak(az, el, power, g)
