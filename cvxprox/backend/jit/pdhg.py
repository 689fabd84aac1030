"""PDHG's step on a linear or diagonal-quadratic cone program with zero and nonnegative
cones, in two compiled passes (``cvxprox.solvers.pdhg._ConeProblem.step`` on NumPy in
float64; its array-namespace step is the reference).

With z = (x, y) and the stored products K'y, K x:

    x+ = proj_[l, u]((x - tau (c + K'y)) / (1 + tau p)),
    v  = y + sigma (2 A x+ - K x - b),      y+ = v on zero-cone rows, min(v, 0) on
                                             nonnegative rows (the polar projection),

with the product A x+ between the two passes (SciPy). The arithmetic is the reference's,
operation for operation, so the two agree bit for bit; the passes save the five
temporaries and the member-by-member cone dispatch of the NumPy expression.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def primal_step(
    x: np.ndarray,
    kty: np.ndarray,
    c: np.ndarray,
    tau: float,
    p: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
) -> np.ndarray:
    """x+ (n,); ``p`` the diagonal of P, ``lower`` and ``upper`` the bounds, each an
    empty array when absent."""
    out = np.empty_like(x)
    diagonal = p.shape[0] > 0
    bounded = lower.shape[0] > 0
    for j in range(x.shape[0]):
        v = x[j] - tau * (c[j] + kty[j])
        if diagonal:
            v = v / (1.0 + tau * p[j])
        if bounded:
            v = min(max(v, lower[j]), upper[j])
        out[j] = v
    return out


@njit(cache=True)
def dual_step(
    y: np.ndarray, ax: np.ndarray, kx: np.ndarray, b: np.ndarray, sigma: float, free: np.ndarray
) -> np.ndarray:
    """y+ (m,); ``free`` (m,) bool: the zero-cone rows, whose polar is all of R."""
    out = np.empty_like(y)
    for i in range(y.shape[0]):
        v = y[i] + sigma * (2.0 * ax[i] - kx[i] - b[i])
        out[i] = v if free[i] else min(v, 0.0)
    return out
