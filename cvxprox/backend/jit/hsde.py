"""The iteration of ADMM on the homogeneous self-dual embedding
(``cvxprox.solvers.admm.hsde``), compiled.

One call runs iterations ``it + 1 .. it_end`` of the Douglas-Rachford iteration on the
state v = (v_x, v_y, v_tau) (n + m + 1,), with R = diag(r) over the first n + m entries
(r_x on x, r_y on y), g = M^{-1} (c, b_s) and g'Rg given:

    v       <- sqrt(n + m + 1) v / ||v||              (not before the first iteration)
    p       = M^{-1} (r_x v_x, -r_y v_y)                             (LDL' solve)
    tau~    = the larger root of (r_tau + g'Rg) t^2 + (v'Rg - 2 p'Rg - r_tau v_tau) t
              + p'Rp - p'Rv = 0                        (1 at the first iteration)
    u~      = (p - tau~ g, tau~)
    u_y     = (2 u~_y - v_y) + Pi_K(-(2 u~_y - v_y)),  u_x = 2 u~_x - v_x,
    u_tau   = max(2 tau~ - v_tau, 0)                   (1 at the first iteration)
    s       = r_y Pi_K(-(2 u~_y - v_y))
    f       = v + alpha (u - u~)

and w <- AA(w, f) after every ``interval``-th iteration, w <- f after the others, with
the safeguard of ``cvxprox.backend.jit.admm`` (a rejected extrapolation returns w to the
last accepted image and resets the memory). ``_EmbeddingLoop`` is the reference: the
same operations in the same order, on a backend's arrays.

The call returns after the image f of iteration ``it_end``, with u = (u_x, u_y, u_tau)
and s of that iteration kept for the caller's checks; it reports whether that iteration
was accepted.
"""

from __future__ import annotations

import math

from numba import njit

from cvxprox.backend.jit.anderson import PENDING, anderson_advance, anderson_safeguard
from cvxprox.backend.jit.cones import project_cones
from cvxprox.backend.jit.ldl import ldl_solve

# u_tau's place in the state's float vector, after the safeguard's
# (``cvxprox.backend.jit.anderson.G_ACCEPTED``).
U_TAU = 1


@njit(cache=True, error_model="numpy")
def root_plus(a: float, b: float, c: float) -> float:
    """The larger root of a t^2 + b t + c (a > 0), without cancellation; -b / 2a when
    there is no real root."""
    rad = b * b - 4.0 * a * c
    if rad < 0.0:
        return -b / (2.0 * a)
    sq = math.sqrt(rad)
    if b <= 0.0:
        return (-b + sq) / (2.0 * a)
    q = -0.5 * (b + sq)
    return c / q if q != 0.0 else 0.0


@njit(cache=True, error_model="numpy")
def embedding_iterations(
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

    ``data = (r, g, scalars)``: r, g (n + m,), ``scalars = [r_x, r_tau, g'Rg]``;
    ``state = (w, f, f_plain, rhs, p, ut, wy, proj, u, s, fstate, istate)`` with w, f,
    f_plain (n + m + 1,), rhs, p, ut, u (n + m,) (u = (u_x, u_y)), wy, proj, s (m,),
    ``fstate = [||f - w|| of the last accepted point, u_tau]``, ``istate`` the
    safeguard's (``cvxprox.backend.jit.anderson.anderson_safeguard``); ``factor`` as
    in ``ldl_solve``; ``cone`` the ``ConeLayout`` arrays; ``memory`` as in
    ``anderson_step``; ``controls = (alpha, safeguard, interval)``, ``interval = 0`` for
    no acceleration.
    """
    r, g, scalars = data
    w, f, f_plain, rhs, p, ut, wy, proj, u, s, fstate, istate = state
    zero, nonneg, soc, psd, exp, pow3d = cone
    alpha, safeguard, interval = controls
    r_x, r_tau, gRg = scalars[0], scalars[1], scalars[2]
    nm = r.shape[0]
    m = s.shape[0]
    n = nm - m
    advance = istate[PENDING] == 1
    istate[PENDING] = 0
    while it < it_end:
        if advance:
            anderson_advance(memory, w, f, it, interval)
        first = it == 0
        it += 1
        if not first:
            norm = 0.0
            for i in range(nm + 1):
                norm += w[i] * w[i]
            norm = math.sqrt(norm)
            if norm > 0.0:
                scale = math.sqrt(nm + 1.0) / norm
                for i in range(nm + 1):
                    w[i] = w[i] * scale
        for i in range(n):
            rhs[i] = r_x * w[i]
        for i in range(n, nm):
            rhs[i] = -r[i] * w[i]
        ldl_solve(factor, rhs, p)
        v_tau = w[nm]
        if first:
            tau_t = 1.0
        else:
            vRg = 0.0
            pRg = 0.0
            pRp = 0.0
            vRp = 0.0
            for i in range(nm):
                rg = r[i] * g[i]
                rp = r[i] * p[i]
                vRg += w[i] * rg
                pRg += p[i] * rg
                pRp += p[i] * rp
                vRp += w[i] * rp
            tau_t = root_plus(r_tau + gRg, vRg - 2.0 * pRg - v_tau * r_tau, pRp - vRp)
        for i in range(nm):
            ut[i] = p[i] - tau_t * g[i]
        for i in range(m):
            wy[i] = -(2.0 * ut[n + i] - w[n + i])
        project_cones(wy, proj, zero, nonneg, soc, psd, exp, pow3d)
        u_tau = 1.0 if first else max(2.0 * tau_t - v_tau, 0.0)
        g_norm = 0.0
        for i in range(n):
            u[i] = 2.0 * ut[i] - w[i]
            f[i] = w[i] + alpha * (u[i] - ut[i])
            g_norm += (f[i] - w[i]) ** 2
        for i in range(m):
            u[n + i] = -wy[i] + proj[i]
            f[n + i] = w[n + i] + alpha * (u[n + i] - ut[n + i])
            g_norm += (f[n + i] - w[n + i]) ** 2
            s[i] = r[n + i] * proj[i]
        f[nm] = v_tau + alpha * (u_tau - tau_t)
        g_norm = math.sqrt(g_norm + (f[nm] - v_tau) ** 2)
        fstate[U_TAU] = u_tau
        if not anderson_safeguard(memory, w, f, f_plain, g_norm, safeguard, fstate, istate):
            advance = False
            if it == it_end:
                return it, False
            continue
        if it == it_end:
            istate[PENDING] = 1
            return it, True
        advance = True
    return it, False
