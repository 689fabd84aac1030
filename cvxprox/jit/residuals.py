"""The norms of the optimality conditions of a ProxProgram, compiled.

For  minimize 1/2 x'Px + c'x  s.t.  z = Ax - b in K  with dual y, one pass over the
nonzeros of A (CSC) gives A x and A'y together, one over P gives P x; the function
returns the inf-norms and inner products that ``KKTChecker`` turns into residuals and
tolerances.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def kkt_norms(
    A: tuple, P: tuple, c: np.ndarray, b: np.ndarray, x: np.ndarray, z: np.ndarray, y: np.ndarray
) -> tuple:
    """Return (||Ax - b - z||, ||Ax||, ||z||, ||Px + A'y + c||, ||Px||, ||A'y||, x'Px, c'x, b'y).

    ``A = (indptr, indices, data)`` is m x n in CSC form, ``P`` likewise n x n (indptr
    empty when there is no P); norms are inf-norms. Shapes: c, x (n,); b, z, y (m,).
    """
    Ap, Ai, Ax_ = A
    Pp, Pi, Px_ = P
    n = c.shape[0]
    m = b.shape[0]
    ax = np.zeros(m)
    aty_norm = 0.0
    dual_norm = 0.0
    px_norm = 0.0
    xpx = 0.0
    cx = 0.0
    has_p = Pp.shape[0] == n + 1
    for j in range(n):
        xj = x[j]
        aty = 0.0
        for k in range(Ap[j], Ap[j + 1]):
            ax[Ai[k]] += Ax_[k] * xj
            aty += Ax_[k] * y[Ai[k]]
        px = 0.0
        if has_p:
            for k in range(Pp[j], Pp[j + 1]):
                px += Px_[k] * x[Pi[k]]
        aty_norm = max(aty_norm, abs(aty))
        px_norm = max(px_norm, abs(px))
        dual_norm = max(dual_norm, abs(px + aty + c[j]))
        xpx += xj * px
        cx += c[j] * xj
    primal_norm = 0.0
    ax_norm = 0.0
    z_norm = 0.0
    by = 0.0
    for i in range(m):
        primal_norm = max(primal_norm, abs(ax[i] - b[i] - z[i]))
        ax_norm = max(ax_norm, abs(ax[i]))
        z_norm = max(z_norm, abs(z[i]))
        by += b[i] * y[i]
    return primal_norm, ax_norm, z_norm, dual_norm, px_norm, aty_norm, xpx, cx, by
