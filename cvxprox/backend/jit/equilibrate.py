"""Ruiz equilibration passes, compiled.

Each pass divides every column j of the KKT matrix [[P, A'], [A, 0]] by
sqrt(max(||A_:,j||_inf, ||P_:,j||_inf)) and every row i of A by sqrt(||A_i,:||_inf),
where a row norm is first replaced by the largest row norm of its cone block (the
scaling must be constant on a non-separable cone). An empty row or column is left
alone; other norms are clipped to [1e-4, 1e4], so that a pass moves a scale by at most a
factor 100 and a row or column of norm 1e-8 (a variable or constraint scaled by 1e-8)
reaches norm 1 over a few passes instead of keeping a unit 1e8 times too large.

A column whose entries outside bound rows (rows with a single nonzero that are their
own cone block; their own row scaling normalizes them whatever the column's) are all
below 0.1 times its bound entries is scaled by those other entries alone: otherwise
the bound row x_j >= 0 would keep the norm of a column whose other entries are all
1e-8 at 1, and the variable unequilibrated.

``tests/test_jit_equilibrate.py`` holds the plain NumPy reference of these passes (dense,
vectorized) that the kernel is checked against.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MIN_SCALE, MAX_SCALE = 1e-4, 1e4
# A column whose entries outside bound rows are below this fraction of its bound entries
# is scaled by those entries alone.
BOUND_RATIO = 0.1


@njit(cache=True)
def _inverse_sqrt(norm: float) -> float:
    if norm == 0.0:
        return 1.0
    return 1.0 / np.sqrt(min(max(norm, MIN_SCALE), MAX_SCALE))


@njit(cache=True)
def ruiz_passes(
    A: tuple,
    P: tuple,
    block_sizes: np.ndarray,
    iters: int,
    D: np.ndarray,
    E: np.ndarray,
    singleton: np.ndarray,
) -> None:
    """Run ``iters`` passes, scaling A = (indptr, indices, data) and P in place.

    ``A`` is m x n and ``P`` n x n in CSC form (``P``'s indptr empty when there is no
    P); ``block_sizes`` partitions the m rows into cone blocks. The accumulated
    scalings multiply ``D`` (n,) and ``E`` (m,) in place, so that the scaled matrices
    are diag(E) A diag(D) and diag(D) P diag(D). ``singleton`` (m,) marks the rows with
    one nonzero that are cone blocks of their own.
    """
    Ap, Ai, Ax = A
    Pp, Pi, Px = P
    n = D.shape[0]
    m = E.shape[0]
    has_p = Pp.shape[0] == n + 1
    col = np.empty(n)
    row = np.empty(m)
    d = np.empty(n)
    e = np.empty(m)
    for _ in range(iters):
        row[:] = 0.0
        for j in range(n):
            norm = 0.0
            bound = 0.0
            for k in range(Ap[j], Ap[j + 1]):
                a = abs(Ax[k])
                if singleton[Ai[k]]:
                    bound = max(bound, a)
                else:
                    norm = max(norm, a)
                row[Ai[k]] = max(row[Ai[k]], a)
            if has_p:
                for k in range(Pp[j], Pp[j + 1]):
                    norm = max(norm, abs(Px[k]))
            col[j] = norm if 0.0 < norm < BOUND_RATIO * bound else max(norm, bound)
        start = 0
        for size in block_sizes:
            block_max = 0.0
            for i in range(start, start + size):
                block_max = max(block_max, row[i])
            scale = _inverse_sqrt(block_max)
            for i in range(start, start + size):
                e[i] = scale
            start += size
        for j in range(n):
            d[j] = _inverse_sqrt(col[j])
        for j in range(n):
            for k in range(Ap[j], Ap[j + 1]):
                Ax[k] *= e[Ai[k]] * d[j]
            if has_p:
                for k in range(Pp[j], Pp[j + 1]):
                    Px[k] *= d[Pi[k]] * d[j]
        for j in range(n):
            D[j] *= d[j]
        for i in range(m):
            E[i] *= e[i]
