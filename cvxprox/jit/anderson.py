"""Type-II Anderson acceleration step, compiled.

With residuals g_k = T(w_k) - w_k and the last M differences
S = [w_{i+1} - w_i], Y = [g_{i+1} - g_i] (rows of (M, dim) arrays), the accelerated point is

    gamma   = argmin ||g_k - Y' gamma||_2        (regularized normal equations)
    w_{k+1} = T(w_k) - (S + Y)' gamma.

The Gram matrix Y Y' is updated one row at a time (O(dim M) per step). The small system
is solved after scaling Y's rows to unit norm, with a tiny ridge: recent differences
are orders of magnitude smaller than old ones, and a ridge relative to the whole Gram
matrix would erase exactly the directions that matter near convergence.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Indices into the integer state vector.
COUNT, HEAD, HAS_PREV, EXTRAPOLATED = 0, 1, 2, 3
REGULARIZATION = 1e-10


@njit(cache=True)
def anderson_reset(istate: np.ndarray) -> None:
    """Forget the stored differences."""
    istate[COUNT] = 0
    istate[HEAD] = 0
    istate[HAS_PREV] = 0
    istate[EXTRAPOLATED] = 0


@njit(cache=True)
def anderson_step(memory: tuple, w: np.ndarray, f: np.ndarray, out: np.ndarray) -> bool:
    """out = the accelerated successor of w given f = T(w); True when extrapolated.

    ``memory = (S, Y, gram, w_prev, g_prev, istate)`` with S, Y of shape (M, dim),
    gram (M, M), w_prev and g_prev (dim,) and istate the int64 vector indexed by
    COUNT, HEAD, HAS_PREV, EXTRAPOLATED. ``out`` may be the same array as ``w``. When
    the small system is singular or gives non-finite weights, out = f (not extrapolated).
    """
    S, Y, gram, w_prev, g_prev, istate = memory
    size, dim = S.shape
    if istate[HAS_PREV]:
        j = istate[HEAD]
        for i in range(dim):
            g = f[i] - w[i]
            S[j, i] = w[i] - w_prev[i]
            Y[j, i] = g - g_prev[i]
        count = min(istate[COUNT] + 1, size)
        istate[COUNT] = count
        for k in range(count):
            acc = 0.0
            for i in range(dim):
                acc += Y[k, i] * Y[j, i]
            gram[j, k] = acc
            gram[k, j] = acc
        istate[HEAD] = (j + 1) % size
    for i in range(dim):
        w_prev[i] = w[i]
        g_prev[i] = f[i] - w[i]
    istate[HAS_PREV] = 1
    istate[EXTRAPOLATED] = 0
    count = istate[COUNT]
    if count == 0:
        out[:] = f
        return False
    scale = np.empty(count)
    for k in range(count):
        if not gram[k, k] > 0.0:
            out[:] = f
            return False
        scale[k] = np.sqrt(gram[k, k])
    normalized = np.empty((count, count))
    rhs = np.empty(count)
    for k in range(count):
        for l in range(count):
            normalized[k, l] = gram[k, l] / (scale[k] * scale[l])
        normalized[k, k] += REGULARIZATION
        acc = 0.0
        for i in range(dim):
            acc += Y[k, i] * g_prev[i]
        rhs[k] = acc / scale[k]
    try:
        gamma = np.linalg.solve(normalized, rhs)
    except Exception:  # noqa: BLE001 - singular system: take the plain step
        out[:] = f
        return False
    for k in range(count):
        gamma[k] /= scale[k]
        if not np.isfinite(gamma[k]):
            out[:] = f
            return False
    out[:] = f
    for k in range(count):
        gk = gamma[k]
        for i in range(dim):
            out[i] -= gk * (S[k, i] + Y[k, i])
    istate[EXTRAPOLATED] = 1
    return True
