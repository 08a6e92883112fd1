"""Optimal one-to-one assignment (the linear sum assignment problem) for the tracker's small matrices.

The same contract as ``scipy.optimize.linear_sum_assignment`` for a finite cost matrix: row indices in
increasing order and the column each is given, min(rows, columns) pairs of least total cost. It is
here because importing ``scipy.optimize`` for that one function cost ``doascope run`` 0.2-0.4 s of
start-up (the package loads its linear-programming and minimisation modules with it); the tracker's
matrices are a few tracks by a few peaks, which this solves in 2-3 us a call (scipy's: 0.6 us).

The algorithm is the Hungarian method in its shortest-augmenting-path form (Kuhn 1955, Munkres 1957;
O(n^2 m) with the row and column potentials of Jonker & Volgenant 1987): rows are added one at a time,
each by a Dijkstra-like search over the reduced costs for the cheapest augmenting path. Tested against
scipy's solver on random and tied matrices of every shape the tracker and the metrics use.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit("int64[::1](float64[:,::1])", cache=True, nogil=True)
def _rows_to_columns(cost):
    # cost has n <= m: the column given to each row. 1-based potentials u (rows) and v (columns);
    # owner[j] is the row that holds column j (0: none), column 0 a virtual start.
    n, m = cost.shape
    inf = np.inf
    for i in range(n):
        for j in range(m):
            if not np.isfinite(cost[i, j]):
                raise ValueError("the cost matrix must hold finite numbers")
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    owner = np.zeros(m + 1, np.int64)
    way = np.zeros(m + 1, np.int64)
    minv = np.empty(m + 1)
    used = np.empty(m + 1, np.bool_)
    for i in range(1, n + 1):
        owner[0] = i
        j0 = 0
        minv[:] = inf
        used[:] = False
        while True:
            used[j0] = True
            i0 = owner[j0]
            delta = inf
            j1 = 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while True:  # the augmenting path, back to the virtual column
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
            if j0 == 0:
                break
    col = np.full(n, -1, np.int64)
    for j in range(1, m + 1):
        if owner[j] != 0:
            col[owner[j] - 1] = j - 1
    return col


def linear_sum_assignment(cost) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the least-cost one-to-one pairing of a finite 2-D cost matrix, rows
    increasing: ``scipy.optimize.linear_sum_assignment`` without importing scipy.optimize.

    >>> linear_sum_assignment([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    (array([0, 1, 2]), array([1, 0, 2]))
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"the cost matrix must be 2-D, got shape {c.shape}")
    n, m = c.shape
    if n == 0 or m == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if n <= m:
        return np.arange(n), _rows_to_columns(np.ascontiguousarray(c))
    row = _rows_to_columns(np.ascontiguousarray(c.T))  # the row given to each column
    order = np.argsort(row, kind="stable")
    return row[order], order.astype(np.int64)
