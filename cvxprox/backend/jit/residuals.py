"""The termination test of an AssembledProgram, compiled.

For  minimize 1/2 x'Px + c'x  s.t.  z = Ax - b in K  with dual y, one pass over the
nonzeros of A (CSC) gives A x, A'y and |A|'|y| together, one over P gives P x
and |P||x|, and the worst entries of the primal and dual tests of
``cvxprox.solvers.common.termination`` follow without temporaries. ``KKTChecker.kkt_error``
computes the same with NumPy/SciPy products and ``termination.worst_entry`` (the
reference the tests compare this kernel with). ``worst_ratio`` is ``worst_entry`` alone,
for the checks on a Program's terms (``StructuredChecker``).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _worst(r: float, tol: float, best: tuple) -> tuple:
    """(|r|, tol) if its ratio |r| / tol beats ``best``'s (0 / 0 = 0, r / 0 = inf)."""
    ratio = r / tol if tol > 0 else (np.inf if r > 0 else 0.0)
    if ratio > best[2]:
        return r, tol, ratio
    return best


@njit(cache=True)
def kkt_worst(
    A: tuple,
    P: tuple,
    vectors: tuple,
    units: tuple,
    eps_abs: float,
    eps_rel: float,
) -> tuple:
    """Return ((|r_i|, tol_i), (|d_j|, tol_j), x'Px, c'x, b'y) of the worst entries.

    r = A x - b - z (m,), tol_i = eps_abs u_i + eps_rel max(|(A x)_i + f_i|, |z_i|,
    |b_i + f_i|); d = P x + c + A'y (n,), tol_j = eps_abs v_j + eps_rel max(|c_j|,
    (|A|'|y|)_j, (|P||x|)_j). ``vectors`` = (c, b, x, z, y), ``units`` = (u, v, f), f the
    rows' offsets (``KKTUnits.row_offset``; empty: none). ``A = (indptr,
    indices, data)`` is m x n in CSC form, ``P`` likewise n x n (indptr empty when there
    is no P).
    """
    c, b, x, z, y = vectors
    row_unit, col_unit, row_offset = units
    Ap, Ai, Ax_ = A
    Pp, Pi, Px_ = P
    n = c.shape[0]
    m = b.shape[0]
    r = np.zeros(m)
    dual = (0.0, 1.0, 0.0)
    xpx = 0.0
    cx = 0.0
    has_p = Pp.shape[0] == n + 1
    for j in range(n):
        xj = x[j]
        aty = 0.0
        aaty = 0.0
        for k in range(Ap[j], Ap[j + 1]):
            i = Ai[k]
            r[i] += Ax_[k] * xj
            aty += Ax_[k] * y[i]
            aaty += abs(Ax_[k] * y[i])
        px = 0.0
        apx = 0.0
        if has_p:
            for k in range(Pp[j], Pp[j + 1]):
                px += Px_[k] * x[Pi[k]]
                apx += abs(Px_[k] * x[Pi[k]])
        magnitude = max(abs(c[j]), aaty, apx)
        dual = _worst(abs(px + aty + c[j]), eps_abs * col_unit[j] + eps_rel * magnitude, dual)
        xpx += xj * px
        cx += c[j] * xj
    primal = (0.0, 1.0, 0.0)
    by = 0.0
    offset = row_offset.shape[0] == m
    for i in range(m):
        f = row_offset[i] if offset else 0.0
        magnitude = max(abs(r[i] + f), abs(z[i]), abs(b[i] + f))
        residual = abs(r[i] - b[i] - z[i])
        primal = _worst(residual, eps_abs * row_unit[i] + eps_rel * magnitude, primal)
        by += b[i] * y[i]
    return (primal[0], primal[1]), (dual[0], dual[1]), xpx, cx, by


@njit(cache=True, inline="always")
def _maximum(a: float, b: float) -> float:
    """np.maximum of two floats: NaN when either is NaN."""
    if a != a:
        return a
    if b != b:
        return b
    return a if a >= b else b


@njit(cache=True)
def worst_ratio(
    residual: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    unit: np.ndarray,
    eps_abs: float,
    eps_rel: float,
) -> tuple[float, float]:
    """``termination.worst_entry(residual, [first, second], unit, eps_abs, eps_rel)``
    in one pass, without temporaries: (|r_i|, tol_i) of the entry with the largest
    |r_i| / tol_i, tol_i = eps_abs unit_i + eps_rel max(|first_i|, |second_i|) (``second``
    empty: ``first`` alone; ``unit`` of length 1: one unit for all); a tolerance that is
    not positive gives the ratio inf where r_i > 0, else 0; the entry is the first NaN
    ratio, else the first largest one (as NumPy's argmax). An empty residual gives
    (0, 1)."""
    k = residual.shape[0]
    if k == 0:
        return 0.0, 1.0
    two = second.shape[0] > 0
    one_unit = unit.shape[0] == 1
    best_r, best_tol, best_ratio = 0.0, 1.0, -1.0
    for i in range(k):
        r = abs(residual[i])
        scale = abs(first[i])
        if two:
            scale = _maximum(scale, abs(second[i]))
        tol = eps_abs * (unit[0] if one_unit else unit[i]) + eps_rel * scale
        if tol > 0:
            ratio = r / tol
        else:
            ratio = np.inf if r > 0 else 0.0
        if ratio != ratio:
            return r, tol
        if ratio > best_ratio:
            best_r, best_tol, best_ratio = r, tol, ratio
    return best_r, best_tol
