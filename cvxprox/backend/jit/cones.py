"""Projection onto a product of CVXPY's cones, compiled: one call for the whole vector.

``project_cones`` computes ``Pi_K(v) = argmin_{p in K} ||p - v||_2`` for a product ``K`` of
zero, nonnegative, second-order, PSD (svec), exponential and 3-D power cones, described by a
:class:`ConeLayout` (flat arrays, one group of blocks per kind). Every block kernel is a
scalar-loop port of its NumPy reference in ``cvxprox.functions.cones``, with the same case analysis,
safeguards, constants and pre-scaling, so the two agree to rounding; see there for the
mathematics. The exponential- and power-cone root finders run per triple instead of vectorized
over all unresolved triples.

A kind that the cone does not have is None in the layout, and Numba compiles
``project_cones`` once per combination of present kinds without the absent kinds' code: an LP
compiles neither the PSD, nor the exponential, nor the power-cone projection.

Apart from ``np.linalg.eigh`` for PSD blocks (which allocates its outputs), nothing is allocated
per call: the PSD matrix is unpacked into the PSD group's ``work`` and the exponential cones'
warm starts live in the exponential group's ``warm``. The kernels use NumPy's floating-point
error model (division by zero gives inf or NaN instead of raising), which the reference's
safeguards rely on.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numba import njit

from cvxprox.functions.cones import (
    Cone,
    ExpCone,
    NonnegCone,
    PowCone3D,
    ProductCone,
    PSDCone,
    SecondOrderCone,
    ZeroCone,
)

__all__ = [
    "ZERO",
    "NONNEG",
    "SOC",
    "PSD",
    "EXP",
    "POW3D",
    "KINDS",
    "ConeLayout",
    "cone_layout",
    "project_cones",
    "project",
]

ZERO, NONNEG, SOC, PSD, EXP, POW3D = KINDS = range(6)  # block kinds

# Copies of the constants of cvxprox.functions.cones (see there; a test checks that they agree).
# Numba freezes globals into the on-disk cache and only notices edits to this file, so they
# are spelled out here rather than imported.
_TOL = 1e-13
_MAX_ITER = 100
_BISECT_AFTER = 60
_EXP_RHO_UP = 800.0
_EXP_RHO_AT_HI = -800.0
_EXP_RHO_DOWN = -1600.0
_EXP_RHO_MIN = -1e100
_EXP_EDGE = 1e-14
_POW_U_MAX = 745.0
_POW_TRUST = 16.0  # largest fallback move in u of the power-cone iteration
_SQRT2 = math.sqrt(2.0)
_INV_SQRT2 = 1.0 / _SQRT2
_LOG2 = math.log(2.0)


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------


@dataclass
class ConeLayout:
    """Flat description of a product cone for the compiled kernels, one group per kind.

    A block is the whole zero cone, the whole nonnegative orthant, one second-order cone, one
    PSD matrix (svec, length ``n(n+1)/2``) or one exponential or power-cone triple; block ``b``
    of a group is ``v[starts[b] : starts[b] + length]``. The groups (int64 ``starts``, float64
    otherwise, ``(blocks,)`` unless said):

    * ``zero``, ``nonneg``: ``(starts, lengths)``, possibly empty;
    * ``soc``: ``(starts, lengths)``;
    * ``psd``: ``(starts, orders, work)``, ``orders`` the int64 ``n`` of each matrix and
      ``work`` (``(max n^2,)``) scratch for one unpacked matrix;
    * ``exp``: ``(starts, warm)``, ``warm`` the root ``rho`` of the triple's last projection
      that needed one (NaN while unknown), the next one's starting guess, updated in place by
      ``project_cones``;
    * ``pow3d``: ``(starts, alphas)``, the exponent of each triple.

    A kind without blocks is None (except zero and nonneg), so that the compiled projection of
    a cone without, say, exponential triples never contains, nor compiles, their code.
    """

    dim: int
    zero: tuple[np.ndarray, np.ndarray]
    nonneg: tuple[np.ndarray, np.ndarray]
    soc: tuple[np.ndarray, np.ndarray] | None
    psd: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    exp: tuple[np.ndarray, np.ndarray] | None
    pow3d: tuple[np.ndarray, np.ndarray] | None

    @property
    def arrays(self) -> tuple:
        """``(zero, nonneg, soc, psd, exp, pow3d)``: the layout arguments of
        ``project_cones``, in order."""
        return self.zero, self.nonneg, self.soc, self.psd, self.exp, self.pow3d


def _blocks(cone: Cone) -> Iterator[tuple[int, int, float]]:
    """``(kind, length, param)`` of every block of ``cone``, in vector order; ``param`` is the
    order of a PSD matrix, the exponent of a power-cone triple, 0 otherwise."""
    match cone:
        case ProductCone():
            for member in cone.cones:
                yield from _blocks(member)
        case ZeroCone():
            yield ZERO, cone.dim, 0.0
        case NonnegCone():
            yield NONNEG, cone.dim, 0.0
        case SecondOrderCone():
            for m in cone.sizes:
                yield SOC, int(m), 0.0
        case PSDCone():
            for n in cone.sizes:
                yield PSD, int(n * (n + 1) // 2), float(n)
        case ExpCone():
            for _ in range(cone.count):
                yield EXP, 3, 0.0
        case PowCone3D():
            for alpha in cone.alphas:
                yield POW3D, 3, float(alpha)
        case _:
            raise TypeError(f"no compiled projection for {type(cone).__name__}")


def cone_layout(cone: Cone) -> ConeLayout:
    """The :class:`ConeLayout` of a ``ProductCone`` (or of a single member cone).

    The warm starts of the exponential triples begin unknown (NaN), independent of the
    reference cone's own.
    """
    starts: dict[int, list[int]] = {kind: [] for kind in KINDS}
    lengths: dict[int, list[int]] = {kind: [] for kind in KINDS}
    params: dict[int, list[float]] = {kind: [] for kind in KINDS}
    dim = 0
    for kind, length, param in _blocks(cone):
        starts[kind].append(dim)
        lengths[kind].append(length)
        params[kind].append(param)
        dim += length

    def ints(values: list) -> np.ndarray:
        return np.array(values, dtype=np.int64)

    orders = ints(params[PSD])
    return ConeLayout(
        dim=dim,
        zero=(ints(starts[ZERO]), ints(lengths[ZERO])),
        nonneg=(ints(starts[NONNEG]), ints(lengths[NONNEG])),
        soc=(ints(starts[SOC]), ints(lengths[SOC])) if starts[SOC] else None,
        psd=(ints(starts[PSD]), orders, np.empty(int(np.max(orders**2)))) if starts[PSD] else None,
        exp=(ints(starts[EXP]), np.full(len(starts[EXP]), np.nan)) if starts[EXP] else None,
        pow3d=(ints(starts[POW3D]), np.array(params[POW3D])) if starts[POW3D] else None,
    )


# --------------------------------------------------------------------------------------------
# Second-order and PSD cones
# --------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def max_abs(v: np.ndarray, start: int, stop: int) -> float:
    """``max |v[start:stop]|``: 0 for an empty range, NaN if an entry is NaN (as ``np.max``)."""
    big = 0.0
    for i in range(start, stop):
        a = abs(v[i])
        if a > big or math.isnan(a):
            big = a
    return big


@njit(cache=True, error_model="numpy")
def max_abs3(x: float, y: float, z: float) -> float:
    """``max(|x|, |y|, |z|)``, NaN if one of them is NaN (as ``np.max``)."""
    if math.isnan(x) or math.isnan(y) or math.isnan(z):
        return math.nan
    return max(abs(x), abs(y), abs(z))


@njit(cache=True, error_model="numpy")
def stable_norm(v: np.ndarray, start: int, stop: int) -> float:
    """``||v[start:stop]||_2``, recomputed on ``v / max|v|`` when the sum of squares would
    overflow (norm >= 1e150) or underflow (norm < 1e-150)."""
    total = 0.0
    for i in range(start, stop):
        total += v[i] * v[i]
    nrm = math.sqrt(total)
    if nrm < 1e150 and not nrm < 1e-150:
        return nrm
    big = max_abs(v, start, stop)
    if big == 0.0:
        return 0.0
    total = 0.0
    for i in range(start, stop):
        w = v[i] / big
        total += w * w
    return big * math.sqrt(total)


@njit(cache=True, error_model="numpy")
def project_soc(v: np.ndarray, out: np.ndarray, start: int, m: int) -> None:
    """``out[start:start+m] = Pi(t, x)`` onto ``{||x||_2 <= t}`` for ``(t, x) = v[start:start+m]``.

    With ``s = ||x||``: ``(t, x)`` if ``s <= t``, ``0`` if ``s <= -t``, else
    ``(t + s)/2 * (1, x/s)``. A block of size 1 is ``t >= 0``.
    """
    t = v[start]
    s = stable_norm(v, start + 1, start + m)
    if s <= t:
        for i in range(start, start + m):
            out[i] = v[i]
    elif s <= -t:
        for i in range(start, start + m):
            out[i] = 0.0
    else:
        coef_x = 0.5 * (t / (s if s > 0.0 else 1.0) + 1.0)  # s > |t| unless NaN
        out[start] = 0.5 * t + 0.5 * s
        for i in range(start + 1, start + m):
            out[i] = v[i] * coef_x


@njit(cache=True, error_model="numpy")
def unpack_svec(v: np.ndarray, start: int, n: int, scale: float, mat: np.ndarray) -> None:
    """``mat = smat(v[start:start+n(n+1)/2]) / scale``, both triangles filled.

    svec is the lower triangle of a symmetric ``n x n`` matrix in column-major order with the
    off-diagonal entries multiplied by sqrt(2).
    """
    k = start
    for j in range(n):
        mat[j, j] = v[k] / scale
        k += 1
        for i in range(j + 1, n):
            entry = v[k] / scale * _INV_SQRT2
            mat[i, j] = entry
            mat[j, i] = entry
            k += 1


@njit(cache=True, error_model="numpy")
def pack_positive_part(
    lam: np.ndarray, vecs: np.ndarray, scale: float, out: np.ndarray, start: int
) -> None:
    """``out[start:start+n(n+1)/2] = scale * svec(Q diag(max(lam, 0)) Q^T)``, ``Q = vecs``.

    ``lam`` (``(n,)``) must be in ascending order, as ``eigh`` returns it.
    """
    n = lam.shape[0]
    first = 0  # first positive eigenvalue
    while first < n and not lam[first] > 0.0:
        first += 1
    k = start
    for j in range(n):
        for i in range(j, n):
            acc = 0.0
            for q in range(first, n):
                acc += vecs[i, q] * lam[q] * vecs[j, q]
            out[k] = (acc if i == j else acc * _SQRT2) * scale
            k += 1


@njit(cache=True, error_model="numpy")
def project_psd(v: np.ndarray, out: np.ndarray, start: int, n: int, work: np.ndarray) -> None:
    """``out[start:start+n(n+1)/2] = svec(Pi_PSD(smat(v[start:start+n(n+1)/2])))``.

    ``Pi_PSD(A) = Q diag(max(lambda, 0)) Q^T`` from ``A = Q diag(lambda) Q^T``, computed on
    ``A / max|svec(A)|`` (then scaled back); ``work`` holds at least ``n^2`` entries. A block
    with an inf or NaN entry gives NaN, as in the reference (``eigh`` would raise).
    """
    stop = start + n * (n + 1) // 2
    scale = max_abs(v, start, stop)
    if not math.isfinite(scale):
        out[start:stop] = math.nan
        return
    if scale == 0.0:
        scale = 1.0
    mat = work[: n * n].reshape((n, n))
    unpack_svec(v, start, n, scale, mat)
    lam, vecs = np.linalg.eigh(mat)
    pack_positive_part(lam, vecs, scale, out, start)


# --------------------------------------------------------------------------------------------
# Exponential cone
# --------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def exp_residual(rho: float, x: float, y: float, z: float) -> tuple[float, float]:
    """``(G(rho), G'(rho))`` of the exponential-cone projection of ``(x, y, z)``.

    ``G(rho) = log(S e^rho + q z_-) - log(M e^-rho + q z_+)`` with ``S = (rho - 1) x + y``,
    ``M = x - rho y``, ``q = rho^2 - rho + 1``, evaluated with ``e^{±rho}`` factored out;
    ``-inf`` (``+inf``) where the first (second) argument rounds to a nonpositive value. See
    ``cvxprox.functions.cones._exp_residual``.
    """
    e_a = math.exp(-max(rho, 0.0))
    e_b = math.exp(min(rho, 0.0))
    s_num = (rho - 1.0) * x + y
    m_num = x - rho * y
    q = rho * rho - rho + 1.0
    dq = 2.0 * rho - 1.0
    z_neg = max(-z, 0.0)
    z_pos = max(z, 0.0)
    t1 = s_num * e_b + q * z_neg * e_a
    t2 = m_num * e_a + q * z_pos * e_b
    t1s = t1 if t1 > 0.0 else 1.0
    t2s = t2 if t2 > 0.0 else 1.0
    if not t1 > 0.0:
        g = -math.inf
    elif not t2 > 0.0:
        g = math.inf
    else:
        g = rho + math.log(t1s) - math.log(t2s)
    dg = ((x + s_num) * e_b + dq * z_neg * e_a) / t1s - (dq * z_pos * e_b - (y + m_num) * e_a) / t2s
    return g, dg


@njit(cache=True, error_model="numpy")
def exp_root(x: float, y: float, z: float, start: float) -> float:
    """The root ``rho`` of ``exp_residual`` for a general-case point of max-abs 1.

    Safeguarded Newton on the bracket ``{S > 0, M > 0}`` (``rho > 1 - y/x`` if ``x > 0``,
    ``rho < x/y`` if ``y > 0``) clipped to ``[_EXP_RHO_DOWN, _EXP_RHO_UP]``: a Newton step when
    it stays inside, else a Newton step in ``log(distance to the bracket end)``, else bisection
    (only bisection after ``_BISECT_AFTER`` iterations). ``start`` is used as the first guess
    when it lies strictly inside the bracket (NaN: unknown). See
    ``cvxprox.functions.cones._exp_solve``.
    """
    end_lo = 1.0 - y / x if x > 0.0 else -math.inf
    end_hi = x / y if y > 0.0 else math.inf
    hi = min(max(end_hi, _EXP_RHO_MIN), _EXP_RHO_UP)
    lo = min(max(end_lo, hi if hi < _EXP_RHO_AT_HI else _EXP_RHO_DOWN), _EXP_RHO_UP)
    if hi - lo <= 2.0:
        rho = 0.5 * (lo + hi)
    elif abs(lo) < abs(hi):
        rho = lo + 1.0  # one unit inside the end of smaller magnitude
    else:
        rho = hi - 1.0
    if lo < start < hi:
        rho = start
    for it in range(_MAX_ITER):
        g, dg = exp_residual(rho, x, y, z)
        if g < 0.0:
            lo = rho
        elif g > 0.0:
            hi = rho
        scale = max(abs(rho), 1.0)
        step = g / dg
        newton = rho - step
        good = dg > 0.0 and math.isfinite(step)
        # A short step is convergence unless G is steep near a logarithmic singularity at an end.
        room = 0.5 * min(rho - end_lo, end_hi - rho)
        if g == 0.0:
            return rho
        if good and abs(step) <= min(_TOL * scale, room):
            return min(max(newton, lo), hi)
        if it >= _BISECT_AFTER:
            rho = 0.5 * (lo + hi)
        elif good and lo < newton < hi:
            rho = newton
        else:
            dist = rho - lo if g > 0.0 else hi - rho
            shrink = max(dist * math.exp(-abs(step) / dist), 0.5 * _TOL * scale)
            log_step = lo + shrink if g > 0.0 else hi - shrink
            rho = log_step if good and lo < log_step < hi else 0.5 * (lo + hi)
        if hi - lo <= _TOL * scale:
            return rho
    return rho


@njit(cache=True, error_model="numpy")
def project_exp_unit(
    x: float, y: float, z: float, warm: float
) -> tuple[float, float, float, float]:
    """``(Pi_exp(x, y, z), rho)`` for a triple of max-abs 1; ``rho`` is ``warm`` unless a root
    was computed.

    ``K = cl{y > 0, y e^(x/y) <= z}``, ``K° = {x > 0, x e^(y/x - 1) <= -z} ∪ {x = 0, y, z <=
    0}``. Points within ``_EXP_EDGE`` (horizontally) of ``K`` are snapped onto it, those within
    ``_EXP_EDGE`` of ``K°`` project to 0; ``x, y <= 0`` gives ``(x, 0, max(z, 0))``; otherwise
    the projection of ``(x, y, z)`` onto the ray ``(rho, 1, e^rho)`` at the root ``rho`` of
    ``exp_root``.
    """
    log_z = math.log(abs(z)) if z != 0.0 else 0.0
    if x > 0.0 and z < 0.0 and y <= x * (1.0 + log_z - math.log(x)) + _EXP_EDGE:
        return 0.0, 0.0, 0.0, warm
    if x == 0.0 and y <= 0.0 and z <= 0.0:
        return 0.0, 0.0, 0.0, warm
    if y > 0.0 and z > 0.0:
        x_bd = y * (log_z - math.log(y))
        if x <= x_bd + _EXP_EDGE:
            return min(x, x_bd), y, z, warm
    if x <= 0.0 and y <= 0.0:
        if y == 0.0 and z >= 0.0:
            return x, y, z, warm
        return x, 0.0, max(z, 0.0), warm
    rho = exp_root(x, y, z, warm)
    cap = max(rho, 0.0)
    ry = math.exp(-cap)
    rx = rho * ry
    rz = math.exp(rho - cap)
    coef = max(x * rx + y * ry + z * rz, 0.0) / (rx * rx + ry * ry + rz * rz)
    return coef * rx, coef * ry, coef * rz, rho


@njit(cache=True, error_model="numpy")
def project_exp(x: float, y: float, z: float, warm: float) -> tuple[float, float, float, float]:
    """``(Pi_exp(x, y, z), rho)``: ``project_exp_unit`` on the triple divided by its max-abs
    (the projection is positively homogeneous), scaled back."""
    scale = max_abs3(x, y, z)
    if scale == 0.0:
        return 0.0, 0.0, 0.0, warm
    px, py, pz, rho = project_exp_unit(x / scale, y / scale, z / scale, warm)
    return px * scale, py * scale, pz * scale, rho


# --------------------------------------------------------------------------------------------
# Power cone
# --------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def logistic(u: float) -> tuple[float, float, float]:
    """``(e^-|u|, sigma(u), sigma(-u))`` with ``sigma(u) = 1 / (1 + e^-u)``, no overflow."""
    e = math.exp(-abs(u))
    if u >= 0.0:
        return e, 1.0 / (1.0 + e), e / (1.0 + e)
    return e, e / (1.0 + e), 1.0 / (1.0 + e)


@njit(cache=True, error_model="numpy")
def pow_coordinate(c: float, a: float, r: float, d: float) -> float:
    """``(c + sqrt(c^2 + 4 a r d)) / 2``, the positive root of ``x^2 - c x - a r d = 0``,
    without cancellation (``2 a r d / (sqrt(c^2 + 4 a r d) - c)`` when ``c < 0``)."""
    sq = math.hypot(c, 2.0 * math.sqrt(a * r) * math.sqrt(d))
    if c > 0.0:
        return 0.5 * (c + sq)
    if c < 0.0:
        return 2.0 * a * r * d / (sq - c)
    return 0.5 * sq


@njit(cache=True, error_model="numpy")
def pow_branch(
    c: float,
    a: float,
    log_a: float,
    r: float,
    d: float,
    sqrt_rd: float,
    log_rd: float,
    dmr: float,
) -> tuple[float, float]:
    """``(log x, (dx/dr) / x * r d / |z|)`` for ``x = pow_coordinate(c, a, r, d)``.

    ``sqrt_rd = sqrt(r) sqrt(d)``, ``log_rd = log(r d)``, ``dmr = (d - r) / |z|``. See
    ``cvxprox.functions.cones._pow_branch``.
    """
    sq = math.hypot(c, 2.0 * math.sqrt(a) * sqrt_rd)  # sqrt(c^2 + 4 a r d)
    if c > 0.0:
        arg = 0.5 * (c + sq)
        log_x = math.log(arg)
    elif c < 0.0:
        arg = sq - c
        log_x = _LOG2 + log_a + log_rd - math.log(arg)
    else:
        arg = 1.0
        log_x = 0.5 * (log_a + log_rd)
    safe_sq = sq if sq > 0.0 else 1.0
    # For c > 0: r d / (sq x) <= 1 / (2a) since sq >= 2 sqrt(a r d) and x >= sq / 2.
    ratio = (r / safe_sq) * (d / arg)
    if not ratio < 0.5 / a:
        ratio = 0.5 / a
    if c > 0.0:
        slope = a * ratio
    elif c < 0.0:
        slope = 0.5 - 0.5 * c / safe_sq
    else:
        slope = 0.5
    return log_x, dmr * slope


@njit(cache=True, error_model="numpy")
def pow_residual(
    u: float,
    x0: float,
    y0: float,
    zz: float,
    a: float,
    log_zz: float,
    log_a: float,
    log_b: float,
) -> tuple[float, float, float, float]:
    """``(g, dg/du, r, d)`` of the power-cone projection in the logistic variable ``u``.

    ``r = |z| sigma(u)``, ``d = |z| sigma(-u)``, ``g(u) = a log x(r) + (1-a) log y(r) - log r``
    (positive left of the root, negative right of it); ``log_zz, log_a, log_b`` are
    ``log |z|, log a, log(1 - a)``. See ``cvxprox.functions.cones._pow_eval``.
    """
    e, sig_p, sig_m = logistic(u)
    soft = math.log1p(e)
    r = zz * sig_p
    d = zz * sig_m
    log_r = log_zz + min(u, 0.0) - soft
    log_rd = 2.0 * (log_zz - soft) - abs(u)
    sqrt_rd = math.sqrt(r) * math.sqrt(d)
    dmr = sig_m - sig_p
    b = 1.0 - a
    log_x, dx = pow_branch(x0, a, log_a, r, d, sqrt_rd, log_rd, dmr)
    log_y, dy = pow_branch(y0, b, log_b, r, d, sqrt_rd, log_rd, dmr)
    return a * log_x + b * log_y - log_r, a * dx + b * dy - sig_m, r, d


@njit(cache=True, error_model="numpy")
def pow_root(x0: float, y0: float, zz: float, a: float) -> float:
    """The root ``u`` of ``pow_residual`` (general case, max-abs 1, ``zz = |z| > 0``).

    Safeguarded Newton in ``u`` on ``[-_POW_U_MAX, _POW_U_MAX]`` (in ``r`` first when
    ``x0, y0 < 0``, where ``g`` is flat in ``u`` as ``r -> 0``; the other variable is the
    fallback), then a damped move of at most ``_POW_TRUST`` towards the bracket end (the end
    itself when Newton points past the initial bracket), only bisection after
    ``_BISECT_AFTER`` iterations. See ``cvxprox.functions.cones._pow_solve``.
    """
    big = _POW_U_MAX
    log_zz = math.log(zz)
    log_a = math.log(a)
    log_b = math.log1p(-a)
    lin = x0 < 0.0 and y0 < 0.0
    u = 0.0
    lo = -big
    hi = big
    for it in range(_MAX_ITER):
        g, dg, r, d = pow_residual(u, x0, y0, zz, a, log_zz, log_a, log_b)
        if g > 0.0:
            lo = u
        elif g < 0.0:
            hi = u
        step = g / dg
        newton_u = u - step
        scale = max(abs(u), 1.0)
        if g == 0.0:
            return u
        if math.isfinite(step) and abs(step) <= _TOL * scale:
            return min(max(newton_u, lo), hi)
        if (u == -big and g > 0.0) or (u == big and g < 0.0):
            return u  # the root is (numerically) at the end of the bracket
        toward = lo if g < 0.0 else hi
        move = 0.5 * (toward - u)
        if it < _BISECT_AFTER:
            dr = -step * r * d / zz
            newton_r = math.log(r + dr) - math.log(d - dr)
            first, second = (newton_r, newton_u) if lin else (newton_u, newton_r)
            beyond = (g < 0.0 and lo == -big and not newton_u > -big) or (
                g > 0.0 and hi == big and not newton_u < big
            )
            if lo < first < hi:
                u = first
            elif lo < second < hi:
                u = second
            elif beyond:
                u = toward
            else:
                u += min(max(move, -_POW_TRUST), _POW_TRUST)
        else:
            u += move
        if hi - lo <= _TOL * scale:
            return u
    return u


@njit(cache=True, error_model="numpy")
def project_pow3d_unit(x: float, y: float, z: float, alpha: float) -> tuple[float, float, float]:
    """``Pi(x, y, z)`` onto ``K_a = {x^a y^(1-a) >= |z|, x, y >= 0}`` for a triple of max-abs 1.

    ``(x, y, z)`` if in ``K_a``; 0 if in ``K° = -K_a*``, ``K_a* = {(u/a)^a (v/(1-a))^(1-a) >=
    |w|, u, v >= 0}``; ``(max(x, 0), max(y, 0), 0)`` if ``z = 0``; else ``(x(r), y(r), sign(z)
    r)`` with ``x(r) = pow_coordinate(x, a, r, |z| - r)``, ``y(r)`` likewise with ``1 - a`` and
    ``r = |z| sigma(u)`` at the root ``u`` of ``pow_root``.
    """
    b = 1.0 - alpha
    az = abs(z)
    if x >= 0.0 and y >= 0.0:
        if az == 0.0 or (
            x > 0.0 and y > 0.0 and alpha * math.log(x) + b * math.log(y) >= math.log(az)
        ):
            return x, y, z
    if x <= 0.0 and y <= 0.0:
        if az == 0.0 or (
            x < 0.0
            and y < 0.0
            and alpha * math.log(-x / alpha) + b * math.log(-y / b) >= math.log(az)
        ):
            return 0.0, 0.0, 0.0
    if az == 0.0:
        return max(x, 0.0), max(y, 0.0), 0.0
    _, sig_p, sig_m = logistic(pow_root(x, y, az, alpha))
    r = az * sig_p
    d = az * sig_m
    return pow_coordinate(x, alpha, r, d), pow_coordinate(y, b, r, d), r if z > 0.0 else -r


@njit(cache=True, error_model="numpy")
def project_pow3d(x: float, y: float, z: float, alpha: float) -> tuple[float, float, float]:
    """``Pi_{K_alpha}(x, y, z)``: ``project_pow3d_unit`` on the triple divided by its max-abs,
    scaled back."""
    scale = max_abs3(x, y, z)
    if scale == 0.0:
        return 0.0, 0.0, 0.0
    px, py, pz = project_pow3d_unit(x / scale, y / scale, z / scale, alpha)
    return px * scale, py * scale, pz * scale


# --------------------------------------------------------------------------------------------
# The product
# --------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def project_cones(
    v: np.ndarray,
    out: np.ndarray,
    zero: tuple,
    nonneg: tuple,
    soc: tuple | None,
    psd: tuple | None,
    exp: tuple | None,
    pow3d: tuple | None,
) -> None:
    """``out = Pi_K(v)`` for the product cone ``K`` of a :class:`ConeLayout` (its arrays).

    ``v`` and ``out`` are float64 vectors of length ``dim``; ``out`` may be ``v`` itself (every
    block is read completely before it is written) but not a shifted view of it. Updates the
    exponential triples' warm starts in place. The code of a kind whose group is None is
    removed before compilation (Numba prunes ``is not None`` branches on None arguments).
    """
    starts, lengths = zero
    for b in range(starts.shape[0]):
        for i in range(starts[b], starts[b] + lengths[b]):
            out[i] = 0.0
    starts, lengths = nonneg
    for b in range(starts.shape[0]):
        for i in range(starts[b], starts[b] + lengths[b]):
            out[i] = 0.0 if v[i] < 0.0 else v[i]
    if soc is not None:
        soc_starts, soc_lengths = soc
        for b in range(soc_starts.shape[0]):
            project_soc(v, out, soc_starts[b], soc_lengths[b])
    if psd is not None:
        psd_starts, orders, work = psd
        for b in range(psd_starts.shape[0]):
            project_psd(v, out, psd_starts[b], orders[b], work)
    if exp is not None:
        exp_starts, warm = exp
        for b in range(exp_starts.shape[0]):
            s = exp_starts[b]
            out[s], out[s + 1], out[s + 2], warm[b] = project_exp(v[s], v[s + 1], v[s + 2], warm[b])
    if pow3d is not None:
        pow_starts, alphas = pow3d
        for b in range(pow_starts.shape[0]):
            s = pow_starts[b]
            out[s], out[s + 1], out[s + 2] = project_pow3d(v[s], v[s + 1], v[s + 2], alphas[b])


def project(layout: ConeLayout, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``Pi_K(v)`` for the cone of ``layout``, written into ``out`` (a new array if None).

    ``v`` is converted to float64 and must have shape ``(dim,)``; ``out`` must be a float64
    array of that shape and may be ``v``. Returns ``out``.
    """
    v = np.ascontiguousarray(v, dtype=np.float64)
    if v.shape != (layout.dim,):
        raise ValueError(f"expected a 1-D array of length {layout.dim}, got shape {v.shape}")
    if out is None:
        out = np.empty_like(v)
    elif out.shape != v.shape or out.dtype != np.float64:
        raise ValueError(f"out must be a float64 array of shape {v.shape}")
    project_cones(v, out, *layout.arrays)
    return out
