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

# Position of the integer state vector in the memory tuple, and indices into it.
ISTATE = 5
COUNT, HEAD, HAS_PREV, EXTRAPOLATED = 0, 1, 2, 3
REGULARIZATION = 1e-10
# Indices into the float and integer state vectors of a safeguarded loop
# (``anderson_advance``, ``anderson_safeguard``): the residual of the last accepted
# point; an acceleration step owed by the next call, the count of rejected steps.
G_ACCEPTED = 0
PENDING, REJECTED = 0, 1


@njit(cache=True, error_model="numpy")
def anderson_reset(istate: np.ndarray) -> None:
    """Forget the stored differences."""
    istate[COUNT] = 0
    istate[HEAD] = 0
    istate[HAS_PREV] = 0
    istate[EXTRAPOLATED] = 0


@njit(cache=True, error_model="numpy")
def _cholesky_solve(G: np.ndarray, rhs: np.ndarray, count: int) -> bool:
    """Solve G[:count, :count] u = rhs[:count] in place (G overwritten by its Cholesky
    factor, rhs by u); False when G is not numerically positive definite."""
    for j in range(count):
        d = G[j, j]
        for k in range(j):
            d -= G[j, k] * G[j, k]
        if not d > 0.0:
            return False
        d = np.sqrt(d)
        G[j, j] = d
        for i in range(j + 1, count):
            acc = G[i, j]
            for k in range(j):
                acc -= G[i, k] * G[j, k]
            G[i, j] = acc / d
    for i in range(count):
        acc = rhs[i]
        for k in range(i):
            acc -= G[i, k] * rhs[k]
        rhs[i] = acc / G[i, i]
    for i in range(count - 1, -1, -1):
        acc = rhs[i]
        for k in range(i + 1, count):
            acc -= G[k, i] * rhs[k]
        rhs[i] = acc / G[i, i]
    return True


@njit(cache=True, error_model="numpy")
def anderson_step(memory: tuple, w: np.ndarray, f: np.ndarray, out: np.ndarray) -> bool:
    """out = the accelerated successor of w given f = T(w); True when extrapolated.

    ``memory = (S, Y, gram, w_prev, g_prev, istate, work)`` with S, Y of shape (M, dim),
    gram (M, M), w_prev and g_prev (dim,), istate the int64 vector indexed by COUNT, HEAD,
    HAS_PREV, EXTRAPOLATED and work (M + 2, M) scratch. ``out`` may be the same array as
    ``w``. When the small system is not numerically positive definite or gives
    non-finite weights, out = f (not extrapolated).
    """
    S, Y, gram, w_prev, g_prev, istate, work = memory
    size, dim = S.shape
    if istate[HAS_PREV]:
        j = istate[HEAD]
        for i in range(dim):
            S[j, i] = w[i] - w_prev[i]
            Y[j, i] = (f[i] - w[i]) - g_prev[i]
        count = min(istate[COUNT] + 1, size)
        istate[COUNT] = count
        for k in range(count):
            gram[j, k] = gram[k, j] = np.dot(Y[k], Y[j])
        istate[HEAD] = (j + 1) % size
    for i in range(dim):
        w_prev[i] = w[i]
        g_prev[i] = f[i] - w[i]
    istate[HAS_PREV] = 1
    istate[EXTRAPOLATED] = 0
    count = istate[COUNT]
    for i in range(dim):  # out = f (a loop: a slice assignment compiles a shape check)
        out[i] = f[i]
    if count == 0:
        return False
    normalized, scale, gamma = work[:size], work[size], work[size + 1]
    for k in range(count):
        if not gram[k, k] > 0.0:
            return False
        scale[k] = np.sqrt(gram[k, k])
    for k in range(count):
        for l in range(count):
            normalized[k, l] = gram[k, l] / (scale[k] * scale[l])
        normalized[k, k] += REGULARIZATION
        gamma[k] = np.dot(Y[k], g_prev) / scale[k]
    if not _cholesky_solve(normalized, gamma, count):
        return False
    for k in range(count):
        gk = gamma[k] / scale[k]
        if not np.isfinite(gk):
            for i in range(dim):
                out[i] = f[i]
            return False
        for i in range(dim):
            out[i] -= gk * (S[k, i] + Y[k, i])
    istate[EXTRAPOLATED] = 1
    return True


@njit(cache=True, error_model="numpy")
def anderson_advance(memory: tuple, w: np.ndarray, f: np.ndarray, it: int, interval: int) -> None:
    """w for iteration it + 1, in place: the extrapolation of (w, f = T(w)) every
    ``interval`` iterations (0: never), else f (``SafeguardedLoop._advance``, compiled)."""
    if interval > 0 and it % interval == 0:
        anderson_step(memory, w, f, w)
    else:
        memory[ISTATE][EXTRAPOLATED] = 0
        # A loop: a slice assignment would compile NumPy's shape check and its message.
        for i in range(w.shape[0]):
            w[i] = f[i]


@njit(cache=True, error_model="numpy")
def anderson_safeguard(
    memory: tuple,
    w: np.ndarray,
    f: np.ndarray,
    f_plain: np.ndarray,
    g_norm: float,
    safeguard: float,
    fstate: np.ndarray,
    istate: np.ndarray,
) -> bool:
    """Whether the iteration's f = T(w), ||f - w|| = ``g_norm``, is accepted
    (``SafeguardedLoop._safeguard``, compiled): an extrapolated w whose residual exceeds
    ``safeguard`` times the last accepted one is rejected (w back to the last accepted
    image ``f_plain``, the memory reset, ``istate[REJECTED]`` counted); an accepted f
    becomes ``f_plain`` and its residual ``fstate[G_ACCEPTED]``."""
    aa_state = memory[ISTATE]
    if aa_state[EXTRAPOLATED] and g_norm > safeguard * fstate[G_ACCEPTED]:
        for i in range(w.shape[0]):
            w[i] = f_plain[i]
        anderson_reset(aa_state)
        istate[REJECTED] += 1
        return False
    fstate[G_ACCEPTED] = g_norm
    for i in range(f.shape[0]):
        f_plain[i] = f[i]
    return True
