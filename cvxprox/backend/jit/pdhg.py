"""PDHG's step on a linear or diagonal-quadratic cone program with zero and nonnegative
cones, in two compiled passes (``cvxprox.solvers.pdhg._ConeProblem.step`` on NumPy in
float64; its array-namespace step is the reference).

With z = (x, y) and the stored products K'y, K x:

    x+ = proj_[l, u]((x - tau (c + K'y)) / (1 + tau p)),
    v  = y + sigma (2 A x+ - K x - b),      y+ = v on zero-cone rows, min(v, 0) on
                                             nonnegative rows (the polar projection),

with the product A x+ between the two passes (SciPy). The arithmetic is the reference's,
operation for operation, so the two agree bit for bit; the passes save the five
temporaries and the member-by-member cone dispatch of the NumPy expression. The
``_halpern`` forms also write, in the same pass, the next point of the reflected Halpern
iteration, (a T(z) + b z) + e anchor, for x, y and K x (``NumPyBackend.pdhg_primal_halpern``,
``pdhg_dual_halpern``). ``halpern_iterations`` runs the iterations up to a check of
such an epoch, the check's own step included, in one call, its products with A and A'
in the loop, so that an iteration costs no Python calls (``_ConeProblem.advance``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cvxprox.backend.jit.combine import combine3


@njit(cache=True, inline="always")
def _primal_value(x_j, kty_j, c_j, tau, p, lower, upper, j, diagonal, bounded):  # noqa: ANN001, ANN202, PLR0913
    """x+_j (module docstring)."""
    v = x_j - tau * (c_j + kty_j)
    if diagonal:
        v = v / (1.0 + tau * p[j])
    if bounded:
        v = min(max(v, lower[j]), upper[j])
    return v


@njit(cache=True, inline="always")
def _dual_value(y_i, ax_i, kx_i, b_i, sigma, free_i):  # noqa: ANN001, ANN202
    """y+_i (module docstring)."""
    v = y_i + sigma * (2.0 * ax_i - kx_i - b_i)
    return v if free_i else min(v, 0.0)


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
        out[j] = _primal_value(x[j], kty[j], c[j], tau, p, lower, upper, j, diagonal, bounded)
    return out


@njit(cache=True)
def dual_step(
    y: np.ndarray, ax: np.ndarray, kx: np.ndarray, b: np.ndarray, sigma: float, free: np.ndarray
) -> np.ndarray:
    """y+ (m,); ``free`` (m,) bool: the zero-cone rows, whose polar is all of R."""
    out = np.empty_like(y)
    for i in range(y.shape[0]):
        out[i] = _dual_value(y[i], ax[i], kx[i], b[i], sigma, free[i])
    return out


@njit(cache=True)
def primal_step_halpern(  # noqa: PLR0913
    x: np.ndarray,
    kty: np.ndarray,
    c: np.ndarray,
    tau: float,
    p: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    a: float,
    b: float,
    e: float,
    anchor: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(x+, the next point's x = (a x+ + b x) + e anchor), in one pass (the order of
    ``cvxprox.backend.jit.combine.combine3``)."""
    out = np.empty_like(x)
    after = np.empty_like(x)
    diagonal = p.shape[0] > 0
    bounded = lower.shape[0] > 0
    for j in range(x.shape[0]):
        v = _primal_value(x[j], kty[j], c[j], tau, p, lower, upper, j, diagonal, bounded)
        out[j] = v
        after[j] = (a * v + b * x[j]) + e * anchor[j]
    return out, after


@njit(cache=True)
def dual_step_halpern(  # noqa: PLR0913
    y: np.ndarray,
    ax: np.ndarray,
    kx: np.ndarray,
    bvec: np.ndarray,
    sigma: float,
    free: np.ndarray,
    a: float,
    b: float,
    e: float,
    anchor_y: np.ndarray,
    anchor_kx: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y+, the next point's y = (a y+ + b y) + e anchor_y and its K x = (a A x+ + b K x)
    + e anchor_kx), in one pass."""
    out = np.empty_like(y)
    after = np.empty_like(y)
    after_kx = np.empty_like(y)
    for i in range(y.shape[0]):
        v = _dual_value(y[i], ax[i], kx[i], bvec[i], sigma, free[i])
        out[i] = v
        after[i] = (a * v + b * y[i]) + e * anchor_y[i]
        after_kx[i] = (a * ax[i] + b * kx[i]) + e * anchor_kx[i]
    return out, after, after_kx


@njit(cache=True)
def _csr_product(indptr, indices, data, v, rows):  # noqa: ANN001, ANN202
    """M v (rows,) for M in CSR form, each row summed in stored order from 0 (SciPy's
    ``csr_matvec``). The positions are unsigned so that no index is tested for
    wrapping around (with signed ones the product takes 1.6 times SciPy's time)."""
    out = np.empty(rows)
    for i in range(rows):
        acc = 0.0
        for jj in range(np.uintp(indptr[i]), np.uintp(indptr[i + 1])):
            acc += data[jj] * v[np.uintp(indices[jj])]
        out[i] = acc
    return out


@njit(cache=True)
def halpern_iterations(  # noqa: PLR0913
    count: int,
    k: int,
    steps: tuple,
    data: tuple,
    A: tuple,
    At: tuple,
    point: tuple,
    anchor: tuple,
) -> tuple[tuple, tuple, tuple]:
    """``count`` >= 1 reflected Halpern iterations of an epoch from its k-th point, in one
    call: the next point after them, the last iteration's step T(z) and the point z it
    was taken from, each (x, y, K x, K'y).

    ``steps`` = (gamma, tau, sigma); ``data`` = (c, p, lower, upper, b, free) as for
    ``primal_step`` and ``dual_step``; ``A`` and ``At`` = (indptr, indices, data) of A and
    A' in CSR form; ``point`` and ``anchor`` = (x, y, K x, K'y). Iteration k is
    ``primal_step_halpern``, A x+, ``dual_step_halpern``, A'y+ and ``combine3`` for the
    next point's K'y, with w = (k+1)/(k+2) in the coefficients (w (1 + gamma), -w gamma,
    1 - w): bit for bit ``count`` steps of those kernels with SciPy's products."""
    gamma, tau, sigma = steps
    c, p, lower, upper, b, free = data
    x, y, kx, kty = point
    anchor_x, anchor_y, anchor_kx, anchor_kty = anchor
    n, m = x.shape[0], y.shape[0]
    before = point
    step = point
    for _ in range(count):
        before = (x, y, kx, kty)
        w = (k + 1) / (k + 2)
        a, bw, e = w * (1.0 + gamma), -w * gamma, 1.0 - w
        x_step, x = primal_step_halpern(x, kty, c, tau, p, lower, upper, a, bw, e, anchor_x)
        ax = _csr_product(A[0], A[1], A[2], x_step, m)
        y_step, y, kx = dual_step_halpern(y, ax, kx, b, sigma, free, a, bw, e, anchor_y, anchor_kx)
        aty = _csr_product(At[0], At[1], At[2], y_step, n)
        kty = combine3(a, aty, bw, kty, e, anchor_kty)
        step = (x_step, y_step, ax, aty)
        k += 1
    return (x, y, kx, kty), step, before
