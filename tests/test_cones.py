"""Tests for cvxprox.functions.cones: Euclidean projections onto CVXPY's cones.

A point p is the projection of v onto a closed convex cone K exactly when p in K, v - p in the
polar cone K° = -K* and <p, v - p> = 0 (Moreau). Every cone is checked for these three properties
on many kinds of points (random, inside K, inside K°, on the boundary, at zero, at huge and tiny
scales), against exactly known decompositions v = p + d, and against CLARABEL solving
min ||p - v||^2 s.t. p in K.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import cvxpy as cp
import numpy as np
import pytest
from cvxpy.utilities.psd_utils import TriangleKind, tri_to_full

from cvxprox.functions.cones import (
    Cone,
    ExpCone,
    NonnegCone,
    PowCone3D,
    ProductCone,
    PSDCone,
    SecondOrderCone,
    ZeroCone,
    cones_from_dims,
    mat_to_svec,
    svec_to_mat,
)
from cvxprox.functions.prox import ProxFunction

TOL = 1e-10  # relative tolerance of the Moreau checks
SOC_SIZES = [1, 2, 3, 5, 3, 10, 1, 5]
PSD_SIZES = [1, 2, 3, 4, 3, 2]


# --------------------------------------------------------------------------------------------
# Membership residuals: upper bounds on the distance of a point to K (or K°), per block
# --------------------------------------------------------------------------------------------


def _soc_blocks(v, sizes):
    return np.split(v, np.cumsum(sizes)[:-1])


def soc_residual(v, sizes):
    return max((max(np.linalg.norm(b[1:]) - b[0], 0.0) for b in _soc_blocks(v, sizes)), default=0)


def psd_residual(v, sizes):
    res, start = 0.0, 0
    for n in sizes:
        k = n * (n + 1) // 2
        mat = tri_to_full(v[start : start + k], n, TriangleKind.LOWER, True)
        res = max(res, max(-np.linalg.eigvalsh(mat).min(), 0.0))
        start += k
    return res


def exp_residual(v):
    """Distance bound of each triple to K_exp = cl{y > 0, y exp(x/y) <= z}."""
    x, y, z = v.reshape(-1, 3).T
    with np.errstate(all="ignore"):
        face = np.sqrt(np.maximum(x, 0) ** 2 + y**2 + np.minimum(z, 0) ** 2)
        vert = np.where(y > 0, np.maximum(y * np.exp(x / y) - z, 0), np.inf)
        horiz = np.where((y > 0) & (z > 0), np.maximum(x - y * np.log(z / y), 0), np.inf)
    return np.minimum(face, np.minimum(vert, horiz))


def exp_polar_residual(d):
    """Distance bound of each triple to the polar cone {a > 0, a exp(b/a - 1) <= -c} ∪ face."""
    a, b, c = d.reshape(-1, 3).T
    with np.errstate(all="ignore"):
        face = np.sqrt(a**2 + np.maximum(b, 0) ** 2 + np.maximum(c, 0) ** 2)
        vert = np.where(a > 0, np.maximum(c + a * np.exp(b / a - 1), 0), np.inf)
        horiz = np.where((a > 0) & (c < 0), np.maximum(b - a * (1 + np.log(-c / a)), 0), np.inf)
    return np.minimum(face, np.minimum(vert, horiz))


def _pow_distance(x, y, z, a, sx, sy):
    """Distance bound of (x, y, z) to {(x/sx)^a (y/sy)^(1-a) >= |z|, x >= 0, y >= 0}.

    The least of three single-coordinate repairs: shrink |z| (after clipping x, y at 0), or grow x,
    or grow y until the point lies in the cone.
    """
    xs, ys, az = np.maximum(x, 0) / sx, np.maximum(y, 0) / sy, abs(z)
    with np.errstate(all="ignore"):
        shrink_z = np.sqrt(
            np.minimum(x, 0) ** 2
            + np.minimum(y, 0) ** 2
            + np.maximum(az - xs**a * ys ** (1 - a), 0) ** 2
        )
        grow_x = np.where(y > 0, sx * np.maximum((az / ys ** (1 - a)) ** (1 / a) - xs, 0), np.inf)
        grow_y = np.where(x > 0, sy * np.maximum((az / xs**a) ** (1 / (1 - a)) - ys, 0), np.inf)
    grow_x = np.where(np.isnan(grow_x), np.inf, grow_x)
    grow_y = np.where(np.isnan(grow_y), np.inf, grow_y)
    return np.minimum(shrink_z, np.minimum(grow_x, grow_y))


def pow_residual(v, alphas):
    """Distance bound of each triple to K = {x^a y^(1-a) >= |z|, x, y >= 0}."""
    x, y, z = v.reshape(-1, 3).T
    return _pow_distance(x, y, z, alphas, 1.0, 1.0)


def pow_polar_residual(d, alphas):
    """Distance bound of each triple to K° = -K* with K* = {(u/a)^a (v/(1-a))^(1-a) >= |w|}."""
    u, v, w = (-d).reshape(-1, 3).T
    return _pow_distance(u, v, w, alphas, alphas, 1.0 - alphas)


# --------------------------------------------------------------------------------------------
# Cone cases: a cone, membership residuals and generators of special points
# --------------------------------------------------------------------------------------------


def _pow_boundary(rng, alphas):
    """Boundary points p of the power cones and outward normals n (p + t n projects to p)."""
    m = alphas.size
    x = 10.0 ** rng.uniform(-4, 0, m)
    y = 10.0 ** rng.uniform(-4, 0, m)
    sign = rng.choice([-1.0, 1.0], m)
    r = x**alphas * y ** (1 - alphas)
    p = np.stack([x, y, sign * r], axis=1)
    normal = np.stack([-alphas * r / x, -(1 - alphas) * r / y, sign], axis=1)
    return p, normal


@dataclass
class Case:
    name: str
    cone: Cone
    res_k: Callable[[np.ndarray], float]  # p -> max distance bound to K
    res_polar: Callable[[np.ndarray], float]  # d -> max distance bound to K°
    inside: Callable[[np.random.Generator], np.ndarray]  # a point of K
    polar: Callable[[np.random.Generator], np.ndarray]  # a point of K°
    decomp: Callable[[np.random.Generator], tuple]  # (p in K, d in K°) with <p, d> = 0


def _soc_case():
    sizes = SOC_SIZES
    cone = SecondOrderCone(sizes)

    def inside(rng):
        parts = []
        for m in sizes:
            x = rng.standard_normal(m - 1)
            parts.append(np.concatenate([[np.linalg.norm(x) + abs(rng.standard_normal())], x]))
        return np.concatenate(parts)

    def decomp(rng):
        ps, ds = [], []
        for m in sizes:
            if m == 1:
                s = abs(rng.standard_normal())
                ps.append([s]), ds.append([0.0])
                continue
            u = rng.standard_normal(m - 1)
            u /= np.linalg.norm(u)
            s, mu = abs(rng.standard_normal(2))
            ps.append(s * np.concatenate([[1.0], u]))
            ds.append(mu * np.concatenate([[-1.0], u]))
        return np.concatenate(ps), np.concatenate(ds)

    return Case(
        "soc",
        cone,
        lambda p: soc_residual(p, sizes),
        lambda d: soc_residual(-d, sizes),
        inside,
        lambda rng: -inside(rng),
        decomp,
    )


def _psd_case():
    sizes = PSD_SIZES
    cone = PSDCone(sizes)

    def sample(rng, signs):
        ps, ds = [], []
        for n in sizes:
            q, _ = np.linalg.qr(rng.standard_normal((n, n)))
            lam = rng.standard_normal(n) * (signs if signs is not None else 1.0)
            ps.append(mat_to_svec((q * np.maximum(lam, 0)) @ q.T))
            ds.append(mat_to_svec((q * np.minimum(lam, 0)) @ q.T))
        return np.concatenate(ps), np.concatenate(ds)

    return Case(
        "psd",
        cone,
        lambda p: psd_residual(p, sizes),
        lambda d: psd_residual(-d, sizes),
        lambda rng: sample(rng, None)[0],
        lambda rng: sample(rng, None)[1],
        lambda rng: sample(rng, None),
    )


def _exp_case():
    count = 40
    cone = ExpCone(count)

    def inside(rng):
        x = rng.standard_normal(count) * 2
        y = 10.0 ** rng.uniform(-1, 1, count)
        z = y * np.exp(x / y) + abs(rng.standard_normal(count))
        tri = np.stack([x, y, z], axis=1)
        tri[:5] = np.stack([-abs(x[:5]), 0 * y[:5], abs(z[:5])], axis=1)  # the face y = 0
        return tri.ravel()

    def polar(rng):
        a = 10.0 ** rng.uniform(-1, 1, count)
        b = rng.standard_normal(count) * 2
        c = -a * np.exp(b / a - 1) - abs(rng.standard_normal(count))
        tri = np.stack([a, b, c], axis=1)
        tri[:5] = np.stack([0 * a[:5], -abs(b[:5]), -abs(c[:5])], axis=1)  # the face a = 0
        return tri.ravel()

    def decomp(rng):
        rho = rng.uniform(-8, 8, count)
        s, mu = 10.0 ** rng.uniform(-2, 1, (2, count))
        p = s[:, None] * np.stack([rho, np.ones(count), np.exp(rho)], axis=1)
        d = mu[:, None] * np.stack([np.ones(count), 1 - rho, -np.exp(-rho)], axis=1)
        return p.ravel(), d.ravel()

    return Case(
        "exp",
        cone,
        lambda p: exp_residual(p).max(),
        lambda d: exp_polar_residual(d).max(),
        inside,
        polar,
        decomp,
    )


def _pow_case():
    alphas = np.random.default_rng(7).uniform(0.05, 0.95, 40)
    cone = PowCone3D(alphas)

    def inside(rng):
        p, _ = _pow_boundary(rng, alphas)
        p[:, 2] *= rng.uniform(0, 1, alphas.size)
        return p.ravel()

    def polar(rng):
        u, v = 10.0 ** rng.uniform(-3, 0, (2, alphas.size))
        cap = (u / alphas) ** alphas * (v / (1 - alphas)) ** (1 - alphas)
        w = cap * rng.uniform(-1, 1, alphas.size)
        return np.stack([-u, -v, w], axis=1).ravel()

    def decomp(rng):
        p, normal = _pow_boundary(rng, alphas)
        return p.ravel(), (normal * 10.0 ** rng.uniform(-2, 1, (alphas.size, 1))).ravel()

    return Case(
        "pow3d",
        cone,
        lambda p: pow_residual(p, alphas).max(),
        lambda d: pow_polar_residual(d, alphas).max(),
        inside,
        polar,
        decomp,
    )


def _nonneg_case():
    cone = NonnegCone(30)

    def decomp(rng):
        v = rng.standard_normal(30)
        return np.maximum(v, 0), np.minimum(v, 0)

    return Case(
        "nonneg",
        cone,
        lambda p: max(-p.min(), 0.0),
        lambda d: max(d.max(), 0.0),
        lambda rng: abs(rng.standard_normal(30)),
        lambda rng: -abs(rng.standard_normal(30)),
        decomp,
    )


def _zero_case():
    cone = ZeroCone(12)
    return Case(
        "zero",
        cone,
        lambda p: np.abs(p).max(),
        lambda d: 0.0,
        lambda rng: np.zeros(12),
        lambda rng: rng.standard_normal(12),
        lambda rng: (np.zeros(12), rng.standard_normal(12)),
    )


CASES = {
    c.name: c
    for c in (_zero_case(), _nonneg_case(), _soc_case(), _psd_case(), _exp_case(), _pow_case())
}


def check_projection(case, v, tol=TOL):
    """The Moreau characterization of p = Pi_K(v), relative to ||v||, plus idempotence."""
    cone = case.cone
    p = cone.project(v)
    assert p.shape == v.shape and p.dtype == v.dtype
    assert np.all(np.isfinite(p))
    d = v - p
    scale = max(np.linalg.norm(v), np.finfo(float).tiny)
    assert case.res_k(p) <= tol * scale
    assert case.res_polar(d) <= tol * scale
    assert abs(p @ d) <= tol * scale**2
    assert np.linalg.norm(cone.project(p) - p) <= tol * scale
    np.testing.assert_allclose(cone.project_polar(v), d, rtol=0, atol=tol * scale)
    np.testing.assert_allclose(cone.project_dual(v), v + cone.project(-v), rtol=0, atol=tol * scale)
    return p


# --------------------------------------------------------------------------------------------
# Moreau properties on many kinds of points
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("scale", [1.0, 1e8, 1e-8])
def test_random_points(name, scale):
    case, rng = CASES[name], np.random.default_rng(0)
    for _ in range(5):
        check_projection(case, scale * rng.standard_normal(case.cone.dim))
        check_projection(case, scale * rng.standard_normal(case.cone.dim) ** 3)


@pytest.mark.parametrize("name", list(CASES))
def test_cone_is_a_prox_function(name):
    """A cone is the ProxFunction of its indicator: prox = Pi_K for every step, prox_conj
    = Pi_{K°} (Moreau: v - s prox_{f/s}(v/s)), value 0 on K and inf off it, and support
    (Pi_{K°}(y), 0) since sigma_K is 0 on K° and inf elsewhere."""
    case, rng = CASES[name], np.random.default_rng(4)
    cone = case.cone
    assert isinstance(cone, ProxFunction) and cone.is_indicator and cone.size == cone.dim
    v = rng.standard_normal(cone.dim)
    p = cone.project(v)
    for t in (1e-3, 1.0, 1e3):
        np.testing.assert_allclose(cone.prox(v, t), p, rtol=0, atol=1e-12)
        np.testing.assert_allclose(cone.prox_conj(v, t), v - t * p / t, atol=1e-12)
    assert cone(p) == 0.0 and cone(case.inside(rng)) == 0.0
    assert cone(v) == np.inf  # a random point lies outside each of these cones
    y, value = cone.support(v)
    np.testing.assert_allclose(y, v - p, atol=1e-12)
    assert value == 0.0
    with pytest.raises(ValueError, match="expected shape"):
        cone.prox(np.zeros(cone.dim + 1), 1.0)


@pytest.mark.parametrize("name", list(CASES))
def test_points_inside_cone_are_fixed(name):
    case, rng = CASES[name], np.random.default_rng(1)
    for scale in (1.0, 1e8, 1e-8):
        v = scale * case.inside(rng)
        p = check_projection(case, v)
        np.testing.assert_allclose(p, v, rtol=0, atol=1e-12 * np.linalg.norm(v))


@pytest.mark.parametrize("name", list(CASES))
def test_points_inside_polar_project_to_zero(name):
    case, rng = CASES[name], np.random.default_rng(2)
    for scale in (1.0, 1e8, 1e-8):
        v = scale * case.polar(rng)
        p = check_projection(case, v)
        assert np.linalg.norm(p) <= 1e-12 * np.linalg.norm(v)


@pytest.mark.parametrize("name", list(CASES))
def test_exact_decompositions(name):
    """v = p + d with p in K, d in K°, <p, d> = 0 projects to exactly p (also on the boundary)."""
    case, rng = CASES[name], np.random.default_rng(3)
    for scale in (1.0, 1e8, 1e-8):
        p, d = case.decomp(rng)
        p, d = scale * p, scale * d
        for v, expected in ((p + d, p), (p, p), (d, 0 * d)):
            got = check_projection(case, v)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-11 * np.linalg.norm(v))


@pytest.mark.parametrize("name", list(CASES))
def test_zero_and_float32(name):
    case, rng = CASES[name], np.random.default_rng(4)
    zero = np.zeros(case.cone.dim)
    assert np.array_equal(case.cone.project(zero), zero)
    v = rng.standard_normal(case.cone.dim)
    p32 = case.cone.project(v.astype(np.float32))
    assert p32.dtype == np.float32
    np.testing.assert_allclose(p32, case.cone.project(v), rtol=0, atol=1e-5 * np.linalg.norm(v))


@pytest.mark.parametrize("name", list(CASES))
def test_scaling_blocks_leave_cone_invariant(name):
    """diag(e) K = K when e is constant on each scaling block."""
    case, rng = CASES[name], np.random.default_rng(5)
    blocks = case.cone.scaling_blocks()
    assert blocks.dtype.kind == "i" and blocks.sum() == case.cone.dim and np.all(blocks >= 1)
    e = np.repeat(10.0 ** rng.uniform(-2, 2, blocks.size), blocks)
    for _ in range(3):
        p = case.inside(rng)
        assert case.res_k(e * p) <= TOL * np.linalg.norm(e * p)
        d = case.polar(rng)
        assert case.res_polar(e * d) <= TOL * np.linalg.norm(e * d)


def test_extreme_magnitudes_never_give_nan():
    vals = [0.0, 5e-324, 1e-300, 1e-150, 1e-8, 0.3, 1.0, 1e8, 1e150, 1e300]
    vals = vals + [-x for x in vals]
    grid = np.array(np.meshgrid(vals, vals, vals)).reshape(3, -1).T
    n = grid.shape[0]
    alphas = np.resize([0.5, 0.01, 0.99, 0.3], n)
    for cone in (ExpCone(n), PowCone3D(alphas), SecondOrderCone([3] * n)):
        p = cone.project(grid.ravel()).reshape(-1, 3)
        assert np.all(np.isfinite(p)), cone.name
        scale = np.maximum(np.abs(grid).max(axis=1), 1e-300)[:, None]
        normal = grid / scale  # the projection is positively homogeneous
        again = cone.project(normal.ravel()).reshape(-1, 3) * scale
        assert np.all(np.abs(again - p) <= 1e-12 * scale), cone.name


# --------------------------------------------------------------------------------------------
# Special regions of the exponential and power cones
# --------------------------------------------------------------------------------------------


def test_exp_special_regions():
    rng = np.random.default_rng(6)
    case = CASES["exp"]
    # x <= 0 and y <= 0: projection is (x, 0, max(z, 0)).
    tri = np.stack(
        [-abs(rng.standard_normal(40)), -abs(rng.standard_normal(40)), rng.standard_normal(40)], 1
    )
    tri[:3, 0] = 0.0
    tri[3:6, 1] = 0.0
    p = check_projection(case, tri.ravel()).reshape(-1, 3)
    expected = np.stack([tri[:, 0], 0 * tri[:, 1], np.maximum(tri[:, 2], 0)], 1)
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-15)
    # Near the face y = 0 from both sides, with x of either sign.
    for y in (1e-14, -1e-14, 1e-6, -1e-6, 5e-324):
        tri = rng.standard_normal((40, 3))
        tri[:, 1] = y
        check_projection(case, tri.ravel())
    # Near the polar face x = 0 and far out along the curved boundary (|rho| large).
    tri = rng.standard_normal((40, 3))
    tri[:, 0] = 1e-13 * rng.standard_normal(40)
    check_projection(case, tri.ravel())
    rho = np.resize([-600.0, -50.0, 30.0, 300.0, 700.0], 40)
    cap = np.maximum(rho, 0)
    boundary = np.stack([rho * np.exp(-cap), np.exp(-cap), np.exp(rho - cap)], 1)
    boundary /= np.linalg.norm(boundary, axis=1, keepdims=True)
    check_projection(case, (boundary + 1e-3 * rng.standard_normal((40, 3))).ravel())


def test_pow_special_regions():
    rng = np.random.default_rng(8)
    case = CASES["pow3d"]
    # z = 0: projection is (max(x, 0), max(y, 0), 0).
    tri = rng.standard_normal((40, 3))
    tri[:, 2] = 0.0
    p = check_projection(case, tri.ravel()).reshape(-1, 3)
    expected = np.stack([np.maximum(tri[:, 0], 0), np.maximum(tri[:, 1], 0), 0 * tri[:, 2]], 1)
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-15)
    # Tiny x or y (the projection then touches the faces), both signs.
    for col in (0, 1):
        tri = rng.standard_normal((40, 3))
        tri[:, col] = 1e-13 * rng.standard_normal(40)
        check_projection(case, tri.ravel())
    # Both x, y < 0 (projection near 0) and extreme exponents.
    tri = rng.standard_normal((40, 3))
    tri[:, :2] = -abs(tri[:, :2])
    check_projection(case, tri.ravel())
    extreme = PowCone3D(np.resize([1e-3, 0.999], 40))
    v = rng.standard_normal(120)
    p = extreme.project(v)
    d = v - p
    assert pow_residual(p, extreme.alphas).max() <= TOL and abs(p @ d) <= TOL
    assert pow_polar_residual(d, extreme.alphas).max() <= TOL


# --------------------------------------------------------------------------------------------
# Agreement with CLARABEL on min ||p - v||^2 s.t. p in K
# --------------------------------------------------------------------------------------------


def _clarabel(var, target, constraints):
    """argmin ||var - target||^2 over the constraints, by CLARABEL at the tightest tolerance
    it reaches (CLARABEL sometimes stops at tolerances below 1e-10 on these problems)."""
    prob = cp.Problem(cp.Minimize(cp.sum_squares(var - target)), constraints)
    for tol in (1e-12, 1e-10):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                prob.solve(
                    solver=cp.CLARABEL, tol_gap_abs=tol, tol_gap_rel=tol, tol_feas=tol, max_iter=500
                )
        except cp.error.SolverError:
            continue
        if prob.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            return var.value
    pytest.fail("CLARABEL did not solve the reference problem")


def test_exp_and_pow_agree_with_clarabel():
    rng = np.random.default_rng(9)
    k = 12
    v = rng.standard_normal((k, 3)) * np.array([1.0, 1.0, 2.0])
    v[0] = [-1.0, 1e-7, -0.5]  # near y = 0
    v[1] = [0.3, -0.2, 0.1]
    v[2] = [3.0, 0.5, 0.2]
    x = cp.Variable((3, k))
    ref = _clarabel(x, v.T, [cp.constraints.ExpCone(x[0], x[1], x[2])]).T
    np.testing.assert_allclose(ExpCone(k).project(v.ravel()).reshape(-1, 3), ref, atol=1e-6)

    alphas = rng.uniform(0.1, 0.9, k)
    ref = _clarabel(x, v.T, [cp.PowCone3D(x[0], x[1], x[2], alphas)]).T
    np.testing.assert_allclose(PowCone3D(alphas).project(v.ravel()).reshape(-1, 3), ref, atol=1e-6)


def test_soc_and_psd_agree_with_clarabel():
    rng = np.random.default_rng(10)
    v = rng.standard_normal(SecondOrderCone(SOC_SIZES).dim)
    p = cp.Variable(v.size)
    blocks, start = [], 0
    for m in SOC_SIZES:
        blocks.append(cp.SOC(p[start], p[start + 1 : start + m]) if m > 1 else p[start] >= 0)
        start += m
    ref = _clarabel(p, v, blocks)
    np.testing.assert_allclose(SecondOrderCone(SOC_SIZES).project(v), ref, atol=1e-6)

    sizes = [1, 3, 4]
    v = rng.standard_normal(PSDCone(sizes).dim)
    start, got = 0, PSDCone(sizes).project(v)
    for n in sizes:
        k = n * (n + 1) // 2
        target = tri_to_full(v[start : start + k], n, TriangleKind.LOWER, True)
        mat = cp.Variable((n, n), symmetric=True)
        ref = _clarabel(mat, target, [mat >> 0])
        np.testing.assert_allclose(
            tri_to_full(got[start : start + k], n, TriangleKind.LOWER, True), ref, atol=1e-6
        )
        start += k


# --------------------------------------------------------------------------------------------
# PSD packing, products, CVXPY dims
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_svec_matches_cvxpy(n):
    rng = np.random.default_rng(n)
    v = rng.standard_normal((4, n * (n + 1) // 2))
    mats = svec_to_mat(v, n)
    for i in range(4):
        np.testing.assert_allclose(mats[i], tri_to_full(v[i], n, TriangleKind.LOWER, True))
    np.testing.assert_allclose(mat_to_svec(mats), v)
    # svec is an isometry: <svec A, svec B> = trace(A B).
    np.testing.assert_allclose(v[0] @ v[1], np.trace(mats[0] @ mats[1]))


def test_psd_projection_is_eigenvalue_clipping():
    rng = np.random.default_rng(11)
    cone = PSDCone([4, 2, 4])
    v = rng.standard_normal(cone.dim)
    got = cone.project(v)
    start = 0
    for n in cone.sizes:
        k = n * (n + 1) // 2
        lam, q = np.linalg.eigh(tri_to_full(v[start : start + k], n, TriangleKind.LOWER, True))
        expected = (q * np.maximum(lam, 0)) @ q.T
        proj = tri_to_full(got[start : start + k], n, TriangleKind.LOWER, True)
        np.testing.assert_allclose(proj, expected, atol=1e-13)
        assert np.linalg.eigvalsh(proj).min() >= -1e-13
        start += k


def test_product_cone_layout():
    alphas = [0.3, 0.6]
    members = [ZeroCone(2), NonnegCone(3), SecondOrderCone([3, 1]), PSDCone([2]), ExpCone(2)]
    members.append(PowCone3D(alphas))
    prod = ProductCone(members)
    assert prod.dim == 2 + 3 + 4 + 3 + 6 + 6
    assert prod.offsets.tolist() == [0, 2, 5, 9, 12, 18, 24]
    blocks = prod.scaling_blocks()
    assert blocks.tolist() == [1, 1, 1, 1, 1, 3, 1, 3, 3, 3, 3, 3] and blocks.sum() == prod.dim
    v = np.random.default_rng(12).standard_normal(prod.dim)
    for method in ("project", "project_dual", "project_polar"):
        got = getattr(prod, method)(v)
        slices = zip(prod.offsets[:-1], prod.offsets[1:], strict=True)
        parts = [getattr(c, method)(v[a:b]) for c, (a, b) in zip(members, slices, strict=True)]
        np.testing.assert_array_equal(got, np.concatenate(parts))
    assert np.array_equal(prod.project_dual(v)[:2], v[:2])  # the dual of {0} is everything
    empty = ProductCone([])
    assert empty.dim == 0 and empty.project(np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError):
        prod.project(np.zeros(prod.dim + 1))


def test_cones_from_dims_simple_namespace():
    dims = SimpleNamespace(zero=2, nonneg=0, soc=[3, 4], psd=[], exp=1, p3d=[0.4], pnd=[])
    prod = cones_from_dims(dims)
    assert [c.name for c in prod.cones] == ["zero", "soc", "exp", "pow3d"]
    assert prod.dim == 2 + 7 + 3 + 3
    assert prod.scaling_blocks().tolist() == [1, 1, 3, 4, 3, 3]
    with pytest.raises(ValueError):
        cones_from_dims(
            SimpleNamespace(zero=1, nonneg=0, soc=[], psd=[], exp=0, p3d=[], pnd=[[0.5]])
        )


def test_cones_from_cvxpy_problem_data():
    """Layout built from a real ConeDims matches CVXPY's row count and cone order."""
    x = cp.Variable(3)
    mat = cp.Variable((3, 3), symmetric=True)
    cons = [
        cp.sum(x) == 1,
        x >= -1,
        cp.norm(x, 2) <= 5,
        mat >> 0,
        cp.constraints.ExpCone(x[0], x[1] + 2, x[2] + 3),
        cp.PowCone3D(x[0] + 1, x[1] + 1, x[2], 0.3),
    ]
    prob = cp.Problem(cp.Minimize(cp.sum(x) + cp.trace(mat)), cons)
    data, _, _ = prob.get_problem_data(cp.SCS)
    prod = cones_from_dims(data["dims"])
    assert prod.dim == data["A"].shape[0]
    assert [c.name for c in prod.cones] == ["zero", "nonneg", "soc", "psd", "exp", "pow3d"]
    assert prod.cones[3].sizes.tolist() == [3]
    np.testing.assert_allclose(prod.cones[5].alphas, [0.3])


def test_invalid_arguments():
    with pytest.raises(ValueError):
        SecondOrderCone([3, 0])
    with pytest.raises(ValueError):
        PSDCone([0])
    with pytest.raises(ValueError):
        PowCone3D([0.5, 1.0])
    with pytest.raises(ValueError):
        ExpCone(-1)
    with pytest.raises(ValueError):
        ExpCone(2).project(np.zeros(5))
