"""LOCATA-style scores of estimated sources against the truth, block by block (plain numpy).

Each evaluated block has a set of true sources and a set of estimates, compared through a distance
matrix (degrees between directions, or metres between positions). Within a block, truth and
estimates are paired one to one by the assignment that minimises the sum of the distances capped
at ``cutoff`` (the OSPA assignment). A pair closer than ``gate`` is a detection. Over all blocks:

- MAE: mean distance of the detections;
- accuracy within X: true sources whose paired estimate is within X, over all true sources;
- recall: detections over true sources; precision: detections over estimates;
- OSPA (Schuhmacher, Vo & Vo 2008, order 1): per block the mean of the capped distances of the
  pairs plus ``cutoff`` for each unpaired source or estimate, over the larger of the two counts;
  0 for a block where both are empty. It is averaged over blocks.

(Evers et al., "The LOCATA challenge", 2020, score with the same quantities.)
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np

from doascope import ParameterError

MAX_ASSIGNMENT = 8   # sources or estimates a block may hold: the assignment is exhaustive


def azimuth_distances(true_az, est_az) -> np.ndarray:
    """(truth, estimates) absolute azimuth differences in degrees, wrapped into [0, 180].

    >>> azimuth_distances([10.0, 350.0], [355.0])
    array([[15.],
           [ 5.]])
    """
    t, e = np.atleast_1d(np.asarray(true_az, float)), np.atleast_1d(np.asarray(est_az, float))
    return np.abs((t[:, None] - e[None, :] + 180.0) % 360.0 - 180.0)


def direction_distances(true_az, true_el, est_az, est_el) -> np.ndarray:
    """(truth, estimates) great-circle angles in degrees between directions given in degrees."""
    from doascope.dsp.grids import angular_distance

    t_az, t_el = np.atleast_1d(np.asarray(true_az, float)), np.atleast_1d(np.asarray(true_el, float))
    e_az, e_el = np.atleast_1d(np.asarray(est_az, float)), np.atleast_1d(np.asarray(est_el, float))
    return angular_distance(t_az[:, None], t_el[:, None], e_az[None, :], e_el[None, :])


def position_distances(true_xyz, est_xyz) -> np.ndarray:
    """(truth, estimates) Euclidean distances between (n, 3) and (m, 3) positions."""
    t = np.asarray(true_xyz, float).reshape(-1, 3)
    e = np.asarray(est_xyz, float).reshape(-1, 3)
    return np.linalg.norm(t[:, None, :] - e[None, :, :], axis=-1)


def assign(cost) -> tuple[np.ndarray, np.ndarray]:
    """The one-to-one pairing of rows and columns with the least total cost (min(rows, cols) pairs).

    Exhaustive, which is exact and quick for the few sources of a block (up to MAX_ASSIGNMENT).

    >>> assign(np.array([[1.0, 0.0], [0.0, 5.0]]))
    (array([0, 1]), array([1, 0]))
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ParameterError(f"a cost matrix must be 2-D, got shape {c.shape}")
    n, m = c.shape
    if min(n, m) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if max(n, m) > MAX_ASSIGNMENT:
        raise ParameterError(f"at most {MAX_ASSIGNMENT} sources and estimates a block can be scored, got {n} and {m}")
    if n > m:
        cols, rows = assign(c.T)
        order = np.argsort(rows)
        return rows[order], cols[order]
    rows = np.arange(n)
    best, best_cols = np.inf, None
    for perm in permutations(range(m), n):
        total = c[rows, perm].sum()
        if total < best:
            best, best_cols = total, perm
    return rows, np.array(best_cols, dtype=np.int64)


def ospa(distances, cutoff: float) -> float:
    """OSPA distance of order 1 between a block's truth (rows) and estimates (columns).

    >>> ospa(np.zeros((0, 0)), 30.0)
    0.0
    >>> ospa(np.array([[10.0, 90.0]]), 30.0)      # one paired at 10, one estimate too many
    20.0
    """
    d = np.asarray(distances, float)
    n, m = d.shape
    if n == 0 and m == 0:
        return 0.0
    capped = np.minimum(d, cutoff)
    r, c = assign(capped)
    return float((capped[r, c].sum() + cutoff * abs(n - m)) / max(n, m))


@dataclass(frozen=True)
class Scores:
    """Scores over the evaluated blocks; distances in the unit of the distance matrices."""

    blocks: int
    truths: int                   # true source instances (a source in a block)
    estimates: int                # reported source instances
    detections: int               # pairs within the gate
    mae: float                    # mean distance of the detections (NaN if none)
    accuracy: dict                # threshold -> fraction of truths paired within it
    recall: float
    precision: float
    ospa: float                   # mean over blocks
    gate: float
    cutoff: float

    def as_dict(self) -> dict:
        """Plain values for JSON; a score that is undefined (NaN: nothing to average) becomes None."""
        def v(x):
            return None if isinstance(x, float) and x != x else x

        return {"blocks": self.blocks, "truths": self.truths, "estimates": self.estimates,
                "detections": self.detections, "mae": v(self.mae),
                "accuracy": {str(k): v(a) for k, a in self.accuracy.items()}, "recall": v(self.recall),
                "precision": v(self.precision), "ospa": v(self.ospa), "gate": self.gate, "cutoff": self.cutoff}


def score(blocks, *, thresholds=(5.0, 10.0, 20.0), gate: float = 30.0, cutoff: float | None = None) -> Scores:
    """Score an iterable of per-block (truth, estimates) distance matrices (see module docstring).

    Examples
    --------
    Two blocks: one true source found 4 degrees off, then one found 12 degrees off plus a false
    estimate 100 degrees away.

    >>> s = score([np.array([[4.0]]), np.array([[12.0, 100.0]])], gate=30.0)
    >>> s.mae, s.recall, round(s.precision, 3), s.accuracy[5.0], s.accuracy[20.0], s.ospa
    (8.0, 1.0, 0.667, 0.5, 1.0, 12.5)
    """
    gate = float(gate)
    cutoff = gate if cutoff is None else float(cutoff)
    if gate <= 0 or cutoff <= 0:
        raise ParameterError("gate and cutoff must be positive")
    thresholds = tuple(float(x) for x in thresholds)
    n_blocks = n_truth = n_est = 0
    errors: list[float] = []     # distance of each pair's truth within the gate
    paired: list[float] = []     # distance of every pair (for accuracy within X)
    ospas: list[float] = []
    for d in blocks:
        d = np.asarray(d, float)
        if d.ndim != 2:
            raise ParameterError(f"each block's distances must be a (truth, estimates) matrix, got shape {d.shape}")
        n, m = d.shape
        n_blocks += 1
        n_truth += n
        n_est += m
        ospas.append(ospa(d, cutoff))
        r, c = assign(np.minimum(d, cutoff))
        pair_d = d[r, c]
        paired.extend(pair_d.tolist())
        errors.extend(pair_d[pair_d <= gate].tolist())
    paired_arr = np.asarray(paired)
    acc = {x: (float(np.count_nonzero(paired_arr <= x)) / n_truth if n_truth else float("nan")) for x in thresholds}
    det = len(errors)
    return Scores(blocks=n_blocks, truths=n_truth, estimates=n_est, detections=det,
                  mae=float(np.mean(errors)) if errors else float("nan"), accuracy=acc,
                  recall=det / n_truth if n_truth else float("nan"),
                  precision=det / n_est if n_est else float("nan"),
                  ospa=float(np.mean(ospas)) if ospas else float("nan"), gate=gate, cutoff=cutoff)
