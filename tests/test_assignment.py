"""doascope.dsp.assignment: the tracker's assignment solver against scipy's (the reference)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_lsa

from doascope.dsp.assignment import linear_sum_assignment


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (5, 1), (2, 2), (3, 5), (5, 3), (4, 4), (8, 8), (6, 9), (12, 7)])
def test_same_pairs_as_scipy_on_random_costs(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(50):
        cost = rng.uniform(0, 180, shape)  # no ties: one optimal pairing
        rows, cols = linear_sum_assignment(cost)
        want_rows, want_cols = scipy_lsa(cost)
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_array_equal(cols, want_cols)


@pytest.mark.parametrize("shape", [(3, 3), (4, 6), (6, 4)])
def test_least_total_on_tied_and_gated_costs(shape):
    # the tracker's matrices: whole degrees (ties) and a huge cost for pairs outside the gate
    rng = np.random.default_rng(7)
    for _ in range(100):
        cost = rng.integers(0, 6, shape).astype(float)
        cost[rng.random(shape) < 0.3] = 1e9
        rows, cols = linear_sum_assignment(cost)
        want_rows, want_cols = scipy_lsa(cost)
        assert len(set(cols.tolist())) == len(cols) == min(shape)
        np.testing.assert_array_equal(rows, np.sort(rows))
        assert cost[rows, cols].sum() == cost[want_rows, want_cols].sum()


def test_least_total_by_brute_force():
    cost = np.random.default_rng(3).standard_normal((4, 5))
    best = min(sum(cost[i, j] for i, j in enumerate(p)) for p in itertools.permutations(range(5), 4))
    rows, cols = linear_sum_assignment(cost)
    assert cost[rows, cols].sum() == pytest.approx(best)


def test_lists_empty_matrices_and_bad_input():
    rows, cols = linear_sum_assignment([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 0, 2]
    for empty in (np.zeros((0, 3)), np.zeros((2, 0))):
        rows, cols = linear_sum_assignment(empty)
        assert rows.size == cols.size == 0
    with pytest.raises(ValueError, match="2-D"):
        linear_sum_assignment([1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        linear_sum_assignment([[np.inf, 1.0], [1.0, np.nan]])
