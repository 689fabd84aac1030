"""The ADMM iteration of ``cvxprox.solvers.admm.kkt``, compiled.

One call runs iterations ``it + 1 .. it_end`` of the (Anderson-accelerated) fixed-point
iteration w <- T(w) on the state w = (x, v), v = z + y / rho:

    z       = Pi_K(v),  y/rho = v - z
    [x~; nu] = K^{-1} [sigma x - c; b + z - y/rho]                       (LDL' solve)
    f       = T(w) = (alpha x~ + (1 - alpha) x,  z + alpha nu / rho + (1 - alpha) y/rho)

then w <- AA(w, f) after every ``interval``-th iteration and w <- f after the others (as
SCS's ``acceleration_interval``: the memory holds differences of points ``interval``
iterations apart): one projection per iteration. An extrapolated point
whose fixed-point residual ||f - w|| exceeds ``safeguard`` times that of the last accepted point is
rejected: w falls back to the last plain image and the memory is reset.

The call returns after computing f and z_next = Pi_K(f_v) of iteration ``it_end``
(before the acceleration step, which the next call performs first), so that the caller
can test convergence on (f, z_next); it reports whether that last iteration was accepted.
"""

from __future__ import annotations

import math

from numba import njit

from cvxprox.backend.jit.anderson import PENDING, anderson_advance, anderson_safeguard
from cvxprox.backend.jit.cones import project_cones
from cvxprox.backend.jit.ldl import ldl_solve


@njit(cache=True, error_model="numpy")
def admm_iterations(
    it: int,
    it_end: int,
    data: tuple,
    state: tuple,
    factor: tuple,
    cone: tuple,
    memory: tuple,
    controls: tuple,
) -> tuple:
    """Run iterations it + 1 .. it_end (``it < it_end``); returns (last iteration, accepted).

    ``data = (c, b, inv_rho)`` (scaled, lengths n, m, m); ``state = (w, z, f, f_plain,
    z_next, y_over_rho, rhs, sol, fstate, istate)`` with w, f, f_plain, rhs, sol of
    length n + m, z, z_next, y_over_rho of length m, ``fstate[G_ACCEPTED]`` the residual
    of the last accepted point, ``istate[PENDING]`` set while an acceleration step is
    owed, ``istate[REJECTED]`` counting rejections; ``factor`` as in ``ldl_solve``;
    ``cone`` the ``ConeLayout`` arrays; ``memory`` as in ``anderson_step``;
    ``controls = (alpha, sigma, safeguard, interval)``, ``interval = 0`` for no
    acceleration.
    """
    c, b, inv_rho = data
    w, z, f, f_plain, z_next, yr, rhs, sol, fstate, istate = state
    zero, nonneg, soc, psd, exp, pow3d = cone
    alpha, sigma, safeguard, interval = controls
    n = c.shape[0]
    m = b.shape[0]
    advance = istate[PENDING] == 1
    istate[PENDING] = 0
    while it < it_end:
        # Copies are loops here: a slice assignment would compile NumPy's shape check and
        # its error message, which costs more compile time than the rest of the kernel.
        if advance:  # w <- AA(w, f) every interval-th iteration, else w <- f
            anderson_advance(memory, w, f, it, interval)
        it += 1
        project_cones(w[n:], z, zero, nonneg, soc, psd, exp, pow3d)
        for i in range(m):
            yr[i] = w[n + i] - z[i]
        for i in range(n):
            rhs[i] = sigma * w[i] - c[i]
        for i in range(m):
            rhs[n + i] = b[i] + z[i] - yr[i]
        ldl_solve(factor, rhs, sol)
        g_norm = 0.0
        for i in range(n):
            f[i] = alpha * sol[i] + (1.0 - alpha) * w[i]
            g_norm += (f[i] - w[i]) ** 2
        for i in range(m):
            f[n + i] = z[i] + alpha * sol[n + i] * inv_rho[i] + (1.0 - alpha) * yr[i]
            g_norm += (f[n + i] - w[n + i]) ** 2
        g_norm = math.sqrt(g_norm)
        if not anderson_safeguard(memory, w, f, f_plain, g_norm, safeguard, fstate, istate):
            advance = False
            if it == it_end:
                return it, False
            continue
        if it == it_end:
            project_cones(f[n:], z_next, zero, nonneg, soc, psd, exp, pow3d)
            istate[PENDING] = 1
            return it, True
        advance = True
    return it, False
