"""Scoring estimated directions against the truth (benchmarks and tests)."""

from __future__ import annotations

import numpy as np

from doascope.dsp.assignment import linear_sum_assignment
from doascope.dsp.grids import angular_distance


def matched_errors(est_az, est_el, true_az, true_el) -> np.ndarray:
    """Angular error (degrees) of each true source after one-to-one optimal matching with the
    estimates; inf for true sources left without an estimate."""
    est_az, est_el = np.atleast_1d(est_az).astype(float), np.atleast_1d(est_el).astype(float)
    true_az, true_el = np.atleast_1d(true_az).astype(float), np.atleast_1d(true_el).astype(float)
    out = np.full(true_az.shape, np.inf)
    if est_az.size == 0 or true_az.size == 0:
        return out
    cost = angular_distance(true_az[:, None], true_el[:, None], est_az[None, :], est_el[None, :])
    rows, cols = linear_sum_assignment(cost)
    out[rows] = cost[rows, cols]
    return out


def azimuth_errors(est_az, true_az) -> np.ndarray:
    """Like matched_errors, on azimuth only (elevation ignored), degrees in [0, 180]."""
    est_az, true_az = np.atleast_1d(est_az).astype(float), np.atleast_1d(true_az).astype(float)
    out = np.full(true_az.shape, np.inf)
    if est_az.size == 0 or true_az.size == 0:
        return out
    d = np.abs((true_az[:, None] - est_az[None, :] + 180.0) % 360.0 - 180.0)
    rows, cols = linear_sum_assignment(d)
    out[rows] = d[rows, cols]
    return out
