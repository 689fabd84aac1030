"""PDHG's step on a Program whose only term is CVXPY's isotropic 2-D total variation,
w ||.||_{2,1} over the pairs (K x)_{2g}, (K x)_{2g+1} of ``cp.tv``'s operator (the layout
of ``cvxprox.backend.jit.dual_tv``, b = 0), with the variable bounds l <= x <= u as G
(``NumPyBackend.tv_pdhg_iteration`` in float64, for ``cvxprox.solvers.pdhg``'s
``_StructuredProblem``; its array step is the reference): in one pass over the image,

    x+  = clip(x - tau (c + K'y), l, u),
    w   = y + s (2 K x+ - K x),          s = sigma times the block's row weight,
    y+  = w_g min(1, w_g / ||w_g||) per pair (the prox of the conjugate, the projection
          onto the disc of radius w_g),   z = (w - y+) / s,
    K'y+,

x+ in one pass, then column by column the pairs of column j and K'y+ on column j once
the pairs of columns j - 1 and j are written. The arithmetic is the array step's,
operation for operation, except the pair norms (``GroupL2``'s are NumPy's), so the two
agree to rounding.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# GroupL2.prox_conj divides by max(||v||, w, _TINY).
_TINY = float(np.finfo(np.float64).tiny)


@njit(cache=True)
def tv_pdhg_iteration(  # noqa: PLR0913, PLR0912, PLR0915
    rows: int,
    cols: int,
    weight: np.ndarray,
    x: np.ndarray,
    kty: np.ndarray,
    y: np.ndarray,
    kx: np.ndarray,
    c: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    tau: float,
    s: float,
    combine: bool,
    a_step: float,
    a_point: float,
    has_average: bool,
    ax: np.ndarray,
    ay: np.ndarray,
    akx: np.ndarray,
    akty: np.ndarray,
    a_average: float,
    a_new: float,
) -> tuple:
    """The step T of (x, y, K x, K'y) (module docstring) on an image ``rows x cols`` (x
    (n,) F-order, y, kx (m,) = (2 (rows-1)(cols-1),) in the term's order; ``weight`` (1,)
    or (m / 2,)), and with ``combine`` in the
    same pass the two combinations PDHG's KM iteration with a running average makes of
    it: the next point a_step T + a_point (x, y, K x, K'y) and, with ``has_average``, the
    next average a_average (ax, ay, akx, akty) + a_new T, each product as
    ``Backend.combine`` forms it (so bit for bit the separate combinations). Returns
    (x+, y+, K x+, K'y+, z, the next point's four fields, the next average's four
    fields); the fields not formed are empty arrays."""
    n = rows * cols
    m = y.shape[0]
    x_new = np.empty(n)
    y_new = np.empty(m)
    kx_new = np.empty(m)
    kty_new = np.empty(n)
    z = np.empty(m)
    nc = n if combine else 0
    mc = m if combine else 0
    na = n if combine and has_average else 0
    ma = m if combine and has_average else 0
    zx, zy, zkx, zkty = np.empty(nc), np.empty(mc), np.empty(mc), np.empty(nc)
    vx, vy, vkx, vkty = np.empty(na), np.empty(ma), np.empty(ma), np.empty(na)
    averaged = combine and has_average
    one_weight = weight.shape[0] == 1
    for p in range(n):
        v = x[p] - tau * (c[p] + kty[p])
        xn = min(max(v, lower[p]), upper[p])
        x_new[p] = xn
        if combine:
            zx[p] = a_step * xn + a_point * x[p]
        if averaged:
            vx[p] = a_average * ax[p] + a_new * xn
    for j in range(cols):
        if j < cols - 1:
            for i in range(rows - 1):
                p = i + rows * j
                g = i + (rows - 1) * j
                a0 = x_new[p + rows] - x_new[p]
                a1 = x_new[p + 1] - x_new[p]
                kx_new[2 * g] = a0
                kx_new[2 * g + 1] = a1
                w0 = y[2 * g] + s * (2.0 * a0 - kx[2 * g])
                w1 = y[2 * g + 1] + s * (2.0 * a1 - kx[2 * g + 1])
                w_g = weight[0] if one_weight else weight[g]
                scale = w_g / max(max(math.sqrt(w0 * w0 + w1 * w1), w_g), _TINY)
                y0 = w0 * scale
                y1 = w1 * scale
                y_new[2 * g] = y0
                y_new[2 * g + 1] = y1
                z[2 * g] = (w0 - y0) / s
                z[2 * g + 1] = (w1 - y1) / s
                if combine:
                    zy[2 * g] = a_step * y0 + a_point * y[2 * g]
                    zy[2 * g + 1] = a_step * y1 + a_point * y[2 * g + 1]
                    zkx[2 * g] = a_step * a0 + a_point * kx[2 * g]
                    zkx[2 * g + 1] = a_step * a1 + a_point * kx[2 * g + 1]
                if averaged:
                    vy[2 * g] = a_average * ay[2 * g] + a_new * y0
                    vy[2 * g + 1] = a_average * ay[2 * g + 1] + a_new * y1
                    vkx[2 * g] = a_average * akx[2 * g] + a_new * a0
                    vkx[2 * g + 1] = a_average * akx[2 * g + 1] + a_new * a1
        for i in range(rows):
            g = i + (rows - 1) * j
            t = 0.0
            if j > 0 and i < rows - 1:
                t += y_new[2 * (g - (rows - 1))]
            if i > 0 and j < cols - 1:
                t += y_new[2 * (g - 1) + 1]
            if i < rows - 1 and j < cols - 1:
                t -= y_new[2 * g]
                t -= y_new[2 * g + 1]
            p = i + rows * j
            kty_new[p] = t
            if combine:
                zkty[p] = a_step * t + a_point * kty[p]
            if averaged:
                vkty[p] = a_average * akty[p] + a_new * t
    return x_new, y_new, kx_new, kty_new, z, zx, zy, zkx, zkty, vx, vy, vkx, vkty
