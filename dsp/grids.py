"""Search grids of directions: an azimuth circle and a quasi-uniform (Fibonacci) sphere.

Directions follow the array frame of DESIGN.md: azimuth counter-clockwise from +x in [0, 360),
elevation above the x-y plane in [-90, 90], unit vectors (x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from doascope import ParameterError


def unit_vectors(azimuth, elevation=0.0) -> np.ndarray:
    """Unit vectors (..., 3) pointing toward directions given in degrees."""
    az = np.radians(np.asarray(azimuth, dtype=np.float64))
    el = np.radians(np.asarray(elevation, dtype=np.float64))
    az, el = np.broadcast_arrays(az, el)
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def directions(vectors) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth in [0, 360) and elevation in [-90, 90] degrees of vectors (..., 3)."""
    v = np.asarray(vectors, dtype=np.float64)
    az = np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0
    el = np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
    return az, el


def angular_distance(az1, el1, az2, el2) -> np.ndarray:
    """Great-circle angle in degrees between two sets of directions (broadcasting)."""
    dot = np.sum(unit_vectors(az1, el1) * unit_vectors(az2, el2), axis=-1)
    return np.degrees(np.arccos(np.clip(dot, -1.0, 1.0)))


@dataclass(frozen=True, eq=False)
class Grid:
    """A set of candidate directions.

    kind is "circle" (azimuths at one elevation, ordered, evenly spaced and possibly an arc) or
    "sphere" (quasi-uniform points). ``neighbours`` lists, for sphere grids, the indices of each
    point's nearest neighbours (padded with -1) for peak picking.
    """

    kind: str
    azimuth: np.ndarray      # (G,) degrees
    elevation: np.ndarray    # (G,) degrees
    vectors: np.ndarray      # (G, 3) unit vectors
    resolution: float        # nominal spacing, degrees
    closed: bool = True      # circle grids: whether the last point neighbours the first
    neighbours: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.azimuth.shape[0]

    def describe(self) -> str:
        if self.kind == "circle":
            span = "full circle" if self.closed else f"arc {self.azimuth[0]:g}..{self.azimuth[-1]:g} deg"
            return f"circle, {self.resolution:g} deg, {span}, elevation {self.elevation[0]:g} deg"
        return f"sphere, ~{self.resolution:g} deg, {len(self)} points, elevation {self.elevation.min():.0f}..{self.elevation.max():.0f} deg"


def circle_grid(resolution: float = 1.0, *, elevation: float = 0.0, arc: tuple[float, float] | None = None) -> Grid:
    """Azimuths every ``resolution`` degrees at one elevation.

    arc = (start, stop) in degrees restricts the grid to a counter-clockwise arc, e.g. (-90, 90) for
    the front half-plane of a linear array, which cannot tell front from back.
    """
    if not (0 < resolution <= 45):
        raise ParameterError(f"grid resolution must be in (0, 45] degrees, got {resolution!r}")
    if arc is None:
        n = int(round(360.0 / resolution))
        az = np.arange(n) * (360.0 / n)
        closed = True
    else:
        start, stop = float(arc[0]), float(arc[1])
        if not stop > start or stop - start > 360:
            raise ParameterError(f"arc must be (start, stop) degrees with start < stop <= start + 360, got {arc!r}")
        n = int(round((stop - start) / resolution)) + 1
        az = (start + np.arange(n) * resolution) % 360.0
        closed = False
    el = np.full(az.shape, float(elevation))
    return Grid("circle", az, el, unit_vectors(az, el), float(resolution), closed)


def sphere_grid(resolution: float = 2.0, *, hemisphere: bool = False, min_elevation: float | None = None) -> Grid:
    """Quasi-uniform directions on the sphere (Fibonacci lattice), about ``resolution`` degrees apart.

    hemisphere=True keeps elevation >= 0 (planar arrays cannot tell up from down).
    """
    if not (0.25 <= resolution <= 30):
        raise ParameterError(f"sphere grid resolution must be in [0.25, 30] degrees, got {resolution!r}")
    # A Fibonacci lattice of n points has a mean spacing of about sqrt(4 pi / n) radians.
    n = int(np.ceil(4 * np.pi / np.radians(resolution) ** 2))
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1.0 - z * z)
    v = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    lo = 0.0 if hemisphere else -90.0
    if min_elevation is not None:
        lo = max(lo, float(min_elevation))
    az, el = directions(v)
    keep = el >= lo - 1e-9
    az, el, v = az[keep], el[keep], v[keep]
    # Add the exact zenith/horizon ring? Not needed: the lattice already covers them within resolution.
    return Grid("sphere", az, el, v, float(resolution), True, _sphere_neighbours(v, resolution))


def _sphere_neighbours(v: np.ndarray, resolution: float) -> np.ndarray:
    from scipy.spatial import cKDTree

    # Neighbours within ~1.9 spacings: 6-10 points on a Fibonacci lattice, enough for local maxima.
    radius = 2 * np.sin(np.radians(1.9 * resolution) / 2)
    tree = cKDTree(v)
    lists = tree.query_ball_point(v, radius)
    width = max(len(n) for n in lists)
    out = np.full((len(lists), width), -1, dtype=np.int64)
    for g, nb in enumerate(lists):
        nb = [j for j in nb if j != g]
        out[g, : len(nb)] = nb
    return out


def array_geometry(positions) -> str:
    """"linear", "planar" or "3d": the rank of the centred (mics, 3) positions, to 0.1 mm."""
    pos = np.asarray(positions, dtype=np.float64)
    sv = np.linalg.svd(pos - pos.mean(axis=0), compute_uv=False)
    rank = int(np.sum(sv > 1e-4))
    return {1: "linear", 2: "planar"}.get(rank, "3d" if rank == 3 else "linear")


def default_grid(positions, *, kind: str = "auto", resolution: float | None = None) -> Grid:
    """The grid users expect for an array of microphones at positions (mics, 3).

    auto: a 1-degree circle for planar arrays; for linear ones the half circle on one side of
    the array axis (a line of mics cannot tell a direction from its mirror image about the axis),
    the side holding +x where it can; a 2-degree full sphere for 3-D arrays. "sphere" on a planar
    array searches the upper hemisphere only.
    """
    if kind not in ("auto", "circle", "sphere"):
        raise ParameterError(f"grid must be 'auto', 'circle' or 'sphere', got {kind!r}")
    pos = np.asarray(positions, dtype=np.float64)
    geometry = array_geometry(pos)
    if kind == "auto":
        kind = "sphere" if geometry == "3d" else "circle"
    if geometry == "linear" and kind == "sphere":
        raise ParameterError("a linear array resolves only one angle: use the circle grid")
    if kind == "circle":
        res = resolution or 1.0
        arc = None
        if geometry == "linear":
            axis = pos[np.argmax(np.linalg.norm(pos - pos[0], axis=1))] - pos[0]
            alpha = np.degrees(np.arctan2(axis[1], axis[0]))
            # Mirror images about the axis share TDOAs: keep the half-plane (alpha-180, alpha)
            # or (alpha, alpha+180), whichever holds azimuth 0 (+x) in its interior.
            start = alpha - 180.0 if np.sin(np.radians(alpha)) > 1e-9 else alpha
            if abs(np.sin(np.radians(alpha))) <= 1e-9:  # axis along x: keep the +y (left) side
                start = 0.0
            arc = (start, start + 180.0)
        return circle_grid(res, arc=arc)
    return sphere_grid(resolution or 2.0, hemisphere=(geometry != "3d"))
