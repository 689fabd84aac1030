"""The vectors of the termination test of a ProxProgram, compiled.

For  minimize 1/2 x'Px + c'x  s.t.  z = Ax - b in K  with dual y, one pass over the
nonzeros of A (CSC) gives A x, |A||x|, A'y and |A|'|y| together, one over P gives P x
and |P||x|; ``KKTChecker.evaluate`` hands them to ``cvxprox.algorithms.termination``.
``KKTChecker.kkt_error`` computes the same vectors with NumPy/SciPy products (the
reference the tests compare this kernel with).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def kkt_vectors(
    A: tuple, P: tuple, c: np.ndarray, b: np.ndarray, x: np.ndarray, z: np.ndarray, y: np.ndarray
) -> tuple:
    """Return (r, |A||x|, d, |A|'|y|, |P||x|, x'Px, c'x, b'y).

    r = A x - b - z (m,), d = P x + c + A'y (n,). ``A = (indptr, indices, data)`` is
    m x n in CSC form, ``P`` likewise n x n (indptr empty when there is no P; |P||x| is
    then zero). Shapes: c, x (n,); b, z, y (m,).
    """
    Ap, Ai, Ax_ = A
    Pp, Pi, Px_ = P
    n = c.shape[0]
    m = b.shape[0]
    r = np.zeros(m)
    abs_ax = np.zeros(m)
    d = np.empty(n)
    abs_aty = np.empty(n)
    abs_px = np.zeros(n)
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
            abs_ax[i] += abs(Ax_[k] * xj)
            aty += Ax_[k] * y[i]
            aaty += abs(Ax_[k] * y[i])
        px = 0.0
        if has_p:
            apx = 0.0
            for k in range(Pp[j], Pp[j + 1]):
                px += Px_[k] * x[Pi[k]]
                apx += abs(Px_[k] * x[Pi[k]])
            abs_px[j] = apx
        d[j] = px + aty + c[j]
        abs_aty[j] = aaty
        xpx += xj * px
        cx += c[j] * xj
    by = 0.0
    for i in range(m):
        r[i] -= b[i] + z[i]
        by += b[i] * y[i]
    return r, abs_ax, d, abs_aty, abs_px, xpx, cx, by
