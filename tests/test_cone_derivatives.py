"""Tests for Cone.project_derivative: Jacobians of the Euclidean projections onto CVXPY's cones.

Every Jacobian is compared with central finite differences of ``project`` at points drawn from
each case of the projection (inside K, inside the polar cone, on each boundary piece it projects
onto), kept at least 5% of the point's size away from the sets where the projection is not
differentiable. The curved exponential- and power-cone cases are also checked against an
independent dense solve of the KKT system. Further: symmetry and spectrum in [0, 1],
positive homogeneity (DPi(v) v = Pi(v), DPi(c v) = DPi(v)), the generalized-Jacobian choices at
nondifferentiable points, the block structure of products, extreme magnitudes and large batches.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from cvxprox.functions.cones import (
    Cone,
    ExpCone,
    NonnegCone,
    PowCone3D,
    ProductCone,
    PSDCone,
    SecondOrderCone,
    ZeroCone,
    mat_to_svec,
)

FD_EPS = 1e-6  # finite-difference step, relative to the point's max-abs
FD_TOL = 1e-6  # tolerance, relative to max(1, max|finite difference|)
MARGIN = 0.05  # relative distance of the test points to nondifferentiable sets
SOC_SIZES = [1, 2, 3, 5, 10, 3, 1, 4]
PSD_ORDERS = [1, 2, 3, 4, 6, 3, 1]


def fd_error(cone: Cone, v: np.ndarray, rng: np.random.Generator, n_dirs: int = 3) -> float:
    """Worst relative difference between ``DPi(v) h`` and central differences of ``Pi``."""
    jac = cone.project_derivative(v)
    assert isinstance(jac, sp.csr_array)
    assert jac.shape == (cone.dim, cone.dim)
    eps = FD_EPS * max(np.max(np.abs(v), initial=0.0), 1e-300)
    worst = 0.0
    for _ in range(n_dirs):
        h = rng.standard_normal(cone.dim)
        fd = (cone.project(v + eps * h) - cone.project(v - eps * h)) / (2 * eps)
        err = np.max(np.abs(jac @ h - fd), initial=0.0) / max(1.0, np.max(np.abs(fd), initial=0))
        worst = max(worst, err)
    return worst


def dense(cone: Cone, v: np.ndarray) -> np.ndarray:
    return cone.project_derivative(v).toarray()


def check_spectrum(jac: np.ndarray, tol: float = 1e-10) -> None:
    """Symmetric with eigenvalues in [0, 1] (up to ``tol``)."""
    np.testing.assert_allclose(jac, jac.T, rtol=0, atol=tol)
    if jac.size:
        eig = np.linalg.eigvalsh(0.5 * (jac + jac.T))
        assert eig.min() >= -tol and eig.max() <= 1 + tol


# --------------------------------------------------------------------------------------------
# Point generators, one per projection case (the blocks of one vector share the case)
# --------------------------------------------------------------------------------------------


def soc_point(rng, sizes, region):
    """``region``: 'inside' (||x|| < t), 'polar' (||x|| < -t), 'outside' (||x|| > |t|)."""
    parts = []
    for m in sizes:
        x = rng.standard_normal(m - 1)
        s = np.linalg.norm(x)
        if m == 1:
            t = rng.uniform(0.1, 1.0) * (1.0 if region == "inside" else -1.0)
            if region == "outside":
                t *= rng.choice([-1.0, 1.0])
        elif region == "inside":
            t = s + rng.uniform(MARGIN, 1.0) * (1.0 + s)
        elif region == "polar":
            t = -s - rng.uniform(MARGIN, 1.0) * (1.0 + s)
        else:
            t = s * rng.uniform(-0.9, 0.9)
        parts.append(np.concatenate([[t], x]))
    return np.concatenate(parts)


def psd_point(rng, orders, region):
    """``region``: 'pd', 'nd', 'mixed' (eigenvalues of both signs), 'repeated' (mixed with
    repeated eigenvalues); all eigenvalues have magnitude >= MARGIN."""
    parts = []
    for n in orders:
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        mag = rng.uniform(MARGIN, 1.0, n)
        if region == "pd":
            lam = mag
        elif region == "nd":
            lam = -mag
        elif region == "mixed":
            lam = mag * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
            rng.shuffle(lam)
        else:
            lam = np.resize([0.7, 0.7, -0.4, -0.4, 0.7, 0.2], n)
        parts.append(mat_to_svec((q * lam) @ q.T))
    return np.concatenate(parts)


def exp_point(rng, count, region):
    """``region``: 'inside', 'polar', 'face' (x, y < 0, not in K or K°) or 'outside'."""
    if region == "inside":
        y = rng.uniform(0.1, 1.0, count)
        x = y * rng.uniform(-3.0, 3.0, count)
        z = y * np.exp(x / y) * (1.0 + rng.uniform(MARGIN, 1.0, count))
        return np.stack([x, y, z], 1).ravel()
    if region == "polar":
        x = rng.uniform(0.1, 1.0, count)
        y = x * rng.uniform(-3.0, 3.0, count)
        z = -x * np.exp(y / x - 1.0) * (1.0 + rng.uniform(MARGIN, 1.0, count))
        return np.stack([x, y, z], 1).ravel()
    if region == "face":
        x, y = -rng.uniform(MARGIN, 1.0, (2, count))
        z = rng.uniform(MARGIN, 1.0, count) * rng.choice([-1.0, 1.0], count)
        return np.stack([x, y, z], 1).ravel()
    # Outside both K and K°, away from them and from the face x, y <= 0.
    cone = ExpCone(1)
    out = []
    while len(out) < count:
        v = rng.standard_normal(3)
        p = cone.project(v)
        size = np.max(np.abs(v))
        if min(np.linalg.norm(p), np.linalg.norm(v - p), max(v[0], v[1])) > MARGIN * size:
            out.append(v)
    return np.concatenate(out)


def exp_ray_point(rng, rho):
    """``s r + mu n`` with ``r = (rho, 1, e^rho)`` on the boundary of K, ``n`` the normal."""
    ray = np.array([rho, 1.0, np.exp(rho)])
    normal = np.array([1.0, 1.0 - rho, -np.exp(-rho)])
    ray /= np.linalg.norm(ray)
    normal /= np.linalg.norm(normal)
    return ray + rng.uniform(0.1, 10.0) * normal


def pow_point(rng, alphas, region):
    """``region``: 'inside', 'polar', 'flat' (z = 0, one of x, y positive) or 'outside'."""
    count = alphas.size
    b = 1.0 - alphas
    sign = rng.choice([-1.0, 1.0], count)
    if region == "inside":
        x, y = rng.uniform(0.1, 1.0, (2, count))
        z = sign * x**alphas * y**b * rng.uniform(0.0, 1.0 - MARGIN, count)
        return np.stack([x, y, z], 1).ravel()
    if region == "polar":
        x, y = -rng.uniform(0.1, 1.0, (2, count))
        bound = (-x / alphas) ** alphas * (-y / b) ** b
        z = sign * bound * rng.uniform(0.0, 1.0 - MARGIN, count)
        return np.stack([x, y, z], 1).ravel()
    if region == "flat":
        pos, neg = rng.uniform(0.1, 1.0, (2, count))
        x = np.where(sign > 0, pos, -neg)
        y = np.where(sign > 0, -neg, pos)
        return np.stack([x, y, np.zeros(count)], 1).ravel()
    out = []
    for a in alphas:
        cone = PowCone3D([a])
        while True:
            v = rng.standard_normal(3)
            p = cone.project(v)
            size = np.max(np.abs(v))
            if min(np.linalg.norm(p), np.linalg.norm(v - p), abs(v[2])) > MARGIN * size:
                out.append(v)
                break
    return np.concatenate(out)


# --------------------------------------------------------------------------------------------
# Finite differences, case by case
# --------------------------------------------------------------------------------------------


def test_zero_and_nonneg_finite_differences():
    rng = np.random.default_rng(0)
    v = rng.standard_normal(7)
    v = np.where(np.abs(v) < MARGIN, 0.5, v)
    assert fd_error(ZeroCone(7), v, rng) == 0.0
    assert fd_error(NonnegCone(7), v, rng) <= FD_TOL
    np.testing.assert_array_equal(dense(NonnegCone(7), v), np.diag(v > 0).astype(float))
    assert dense(ZeroCone(7), v).nonzero()[0].size == 0


@pytest.mark.parametrize("region", ["inside", "polar", "outside"])
@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e4])
def test_soc_finite_differences(region, scale):
    rng = np.random.default_rng(1)
    cone = SecondOrderCone(SOC_SIZES)
    for _ in range(3):
        v = scale * soc_point(rng, SOC_SIZES, region)
        assert fd_error(cone, v, rng) <= FD_TOL


def test_soc_region_jacobians():
    rng = np.random.default_rng(2)
    cone = SecondOrderCone(SOC_SIZES)
    inside = soc_point(rng, SOC_SIZES, "inside")
    np.testing.assert_array_equal(dense(cone, inside), np.eye(cone.dim))
    np.testing.assert_array_equal(dense(cone, soc_point(rng, SOC_SIZES, "polar")), 0.0)
    # Outside: (1/2) [[1, u^T], [u, (1 + t/s) I - (t/s) u u^T]] with u = x/s.
    t, x = 0.3, np.array([0.0, 3.0, 4.0])
    u = x / 5.0
    expected = 0.5 * np.block(
        [[np.ones((1, 1)), u[None, :]], [u[:, None], 1.06 * np.eye(3) - 0.06 * np.outer(u, u)]]
    )
    np.testing.assert_allclose(dense(SecondOrderCone([4]), np.r_[t, x]), expected, atol=1e-15)


@pytest.mark.parametrize("region", ["pd", "nd", "mixed", "repeated"])
def test_psd_finite_differences(region):
    rng = np.random.default_rng(3)
    cone = PSDCone(PSD_ORDERS)
    for scale in (1.0, 1e-3, 1e4):
        v = scale * psd_point(rng, PSD_ORDERS, region)
        assert fd_error(cone, v, rng) <= FD_TOL


def test_psd_region_jacobians():
    rng = np.random.default_rng(4)
    cone = PSDCone(PSD_ORDERS)
    np.testing.assert_array_equal(dense(cone, psd_point(rng, PSD_ORDERS, "pd")), np.eye(cone.dim))
    np.testing.assert_array_equal(dense(cone, psd_point(rng, PSD_ORDERS, "nd")), 0.0)
    # diag(2, -1): DPi[H] keeps H_11, drops H_22 and scales H_12 by 2 / (2 + 1).
    jac = dense(PSDCone([2]), mat_to_svec(np.diag([2.0, -1.0])))
    np.testing.assert_allclose(jac, np.diag([1.0, 2.0 / 3.0, 0.0]), atol=1e-15)


@pytest.mark.parametrize("region", ["inside", "polar", "face", "outside"])
@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e4])
def test_exp_finite_differences(region, scale):
    rng = np.random.default_rng(5)
    cone = ExpCone(30)
    v = scale * exp_point(rng, 30, region)
    assert fd_error(cone, v, rng) <= FD_TOL


@pytest.mark.parametrize("rho", [-30.0, -5.0, -0.5, 0.0, 0.5, 3.0, 8.0])
def test_exp_finite_differences_along_the_boundary(rho):
    rng = np.random.default_rng(6)
    cone = ExpCone(5)
    v = np.concatenate([exp_ray_point(rng, rho) for _ in range(5)])
    assert fd_error(cone, v, rng) <= FD_TOL


def test_exp_region_jacobians():
    rng = np.random.default_rng(7)
    cone = ExpCone(20)
    np.testing.assert_array_equal(dense(cone, exp_point(rng, 20, "inside")), np.eye(60))
    np.testing.assert_array_equal(dense(cone, exp_point(rng, 20, "polar")), 0.0)
    v = exp_point(rng, 20, "face")
    expected = np.stack([np.ones(20), np.zeros(20), v[2::3] > 0], 1).ravel()
    np.testing.assert_array_equal(dense(cone, v), np.diag(expected))


@pytest.mark.parametrize("region", ["inside", "polar", "outside"])
@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e4])
def test_pow_finite_differences(region, scale):
    rng = np.random.default_rng(8)
    alphas = np.concatenate([[0.5, 0.1, 0.9, 0.3], rng.uniform(0.05, 0.95, 16)])
    cone = PowCone3D(alphas)
    v = scale * pow_point(rng, alphas, region)
    assert fd_error(cone, v, rng) <= FD_TOL


@pytest.mark.parametrize("alpha", [0.1, 0.25, 0.5, 0.75, 0.9])
def test_pow_finite_differences_at_z_zero(alpha):
    """At z = 0 with x > 0 > y (or y > 0 > x), ``z_p / z -> 1`` when the positive coordinate's
    exponent e exceeds 1/2, ``-> 0`` when below, ``-> c / (c + 2|c'|)`` at exactly 1/2.

    The projection is differentiable there but not twice: the finite-difference error is of order
    ``eps^|e/(1-e) - 1|``, so exponents close to (not equal to) 1/2 are left out.
    """
    rng = np.random.default_rng(9)
    alphas = np.full(12, alpha)
    cone = PowCone3D(alphas)
    v = pow_point(rng, alphas, "flat")
    assert fd_error(cone, v, rng) <= FD_TOL
    x, y = v[0::3], v[1::3]
    pos, neg = np.maximum(x, y), -np.minimum(x, y)
    exponent = np.where(x > 0, alpha, 1.0 - alpha)
    k = np.where(exponent > 0.5, 1.0, 0.0) if alpha != 0.5 else pos / (pos + 2 * neg)
    expected = np.stack([x > 0, y > 0, k], 1).ravel()
    np.testing.assert_allclose(dense(cone, v), np.diag(expected), rtol=1e-15, atol=0)


def test_pow_region_jacobians():
    rng = np.random.default_rng(10)
    alphas = rng.uniform(0.05, 0.95, 20)
    cone = PowCone3D(alphas)
    np.testing.assert_array_equal(dense(cone, pow_point(rng, alphas, "inside")), np.eye(60))
    np.testing.assert_array_equal(dense(cone, pow_point(rng, alphas, "polar")), 0.0)


# --------------------------------------------------------------------------------------------
# The curved boundaries against a dense solve of the KKT system
# --------------------------------------------------------------------------------------------


def kkt_jacobian(v, p, grad, hess):
    """``DPi(v)`` from ``(I + nu Hess g) dp + grad g dnu = dv``, ``grad g^T dp = 0``, where
    ``p - v + nu grad g(p) = 0`` (``nu`` by least squares)."""
    nu = grad @ (v - p) / (grad @ grad)
    kkt = np.zeros((4, 4))
    kkt[:3, :3] = np.eye(3) + nu * hess
    kkt[:3, 3] = kkt[3, :3] = grad
    return np.linalg.solve(kkt, np.vstack([np.eye(3), np.zeros((1, 3))]))[:3]


def test_exp_boundary_matches_kkt_solve():
    rng = np.random.default_rng(11)
    points = [exp_point(rng, 1, "outside") for _ in range(40)]
    points += [exp_ray_point(rng, rho) for rho in (-8.0, -2.0, 0.0, 1.0, 4.0)]
    for v in points:
        cone = ExpCone(1)
        p = cone.project(v)
        e, rho = np.exp(p[0] / p[1]), p[0] / p[1]
        grad = np.array([e, e * (1.0 - rho), -1.0])
        hess = e / p[1] * np.array([[1.0, -rho, 0.0], [-rho, rho**2, 0.0], [0.0, 0.0, 0.0]])
        np.testing.assert_allclose(dense(cone, v), kkt_jacobian(v, p, grad, hess), atol=1e-12)


def test_pow_boundary_matches_kkt_solve():
    rng = np.random.default_rng(12)
    alphas = np.concatenate([[0.5, 0.1, 0.9], rng.uniform(0.05, 0.95, 37)])
    for a, v in zip(alphas, pow_point(rng, alphas, "outside").reshape(-1, 3), strict=True):
        cone = PowCone3D([a])
        p = cone.project(v)
        b, sign = 1.0 - a, np.sign(v[2])
        r = p[0] ** a * p[1] ** b
        grad = np.array([a * r / p[0], b * r / p[1], -sign])
        hess = np.zeros((3, 3))
        hess[0, 0] = a * (a - 1.0) * r / p[0] ** 2
        hess[1, 1] = b * (b - 1.0) * r / p[1] ** 2
        hess[0, 1] = hess[1, 0] = a * b * r / (p[0] * p[1])
        np.testing.assert_allclose(dense(cone, v), kkt_jacobian(v, p, grad, hess), atol=1e-12)


# --------------------------------------------------------------------------------------------
# Structure: symmetry, spectrum, homogeneity, nondifferentiable points, products
# --------------------------------------------------------------------------------------------


def _mixed_cones(rng):
    """Each cone with a vector mixing all its cases, boundary and zero blocks included."""
    soc = np.concatenate(
        [soc_point(rng, SOC_SIZES, r) for r in ("inside", "polar", "outside")]
        + [[0.0, 0.0, 0.0], [5.0, 3.0, 4.0], [-5.0, 3.0, 4.0], [0.0], [0.0, 1.0]]
    )
    soc_sizes = SOC_SIZES * 3 + [3, 3, 3, 1, 2]
    psd_orders = PSD_ORDERS * 4 + [3]
    psd = np.concatenate(
        [psd_point(rng, PSD_ORDERS, r) for r in ("pd", "nd", "mixed", "repeated")]
        + [mat_to_svec(np.diag([1.0, 0.0, -1.0]))]
    )
    exp = np.concatenate(
        [exp_point(rng, 5, r) for r in ("inside", "polar", "face", "outside")]
        + [[0.0, 0.0, 0.0], [-1.0, 0.0, 1.0], [1.0, 0.0, -1.0], [0.0, -1.0, 0.5]]
    )
    alphas = rng.uniform(0.05, 0.95, 20)
    regions = ("inside", "polar", "flat", "outside")
    pw = np.concatenate(
        [pow_point(rng, alphas[5 * i : 5 * i + 5], r) for i, r in enumerate(regions)]
    )
    pow_alphas = np.concatenate([alphas, [0.3, 0.5, 0.7]])
    pw = np.concatenate([pw, [0.0, 0.0, 0.0, 1.0, 0.0, 0.5, 0.0, 1.0, -0.5]])
    return [
        (NonnegCone(4), np.array([1.0, -1.0, 0.0, 2.0])),
        (SecondOrderCone(soc_sizes), soc),
        (PSDCone(psd_orders), psd),
        (ExpCone(exp.size // 3), exp),
        (PowCone3D(pow_alphas), pw),
    ]


@pytest.fixture
def mixed_cones():
    return _mixed_cones(np.random.default_rng(13))


def test_symmetric_with_spectrum_in_unit_interval(mixed_cones):
    for cone, v in mixed_cones:
        check_spectrum(dense(cone, v))


def test_positive_homogeneity(mixed_cones):
    for cone, v in mixed_cones:
        jac = cone.project_derivative(v)
        np.testing.assert_allclose(jac @ v, cone.project(v), rtol=0, atol=1e-12 * np.abs(v).max())
        for scale in (1e-5, 1e7):
            again = cone.project_derivative(scale * v)
            np.testing.assert_allclose(again.toarray(), jac.toarray(), rtol=0, atol=1e-12)


def test_generalized_jacobian_choices():
    # Nonneg at 0, SOC at 0 and on both boundaries, size-1 SOC blocks, exp and pow at 0.
    np.testing.assert_array_equal(dense(NonnegCone(2), np.array([0.0, -0.0])), 0.0)
    soc = SecondOrderCone([3, 3, 3, 1, 1])
    jac = dense(soc, np.array([0, 0, 0, 5, 3, 4, -5, 3, 4, 0, 2.0]))
    np.testing.assert_array_equal(jac, np.diag([0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1.0]))
    np.testing.assert_array_equal(dense(ExpCone(1), np.zeros(3)), 0.0)
    np.testing.assert_array_equal(dense(PowCone3D([0.4]), np.zeros(3)), 0.0)
    # A zero eigenvalue counts as negative: at diag(1, 0), B = [[1, 1], [1, 0]].
    jac = dense(PSDCone([2]), mat_to_svec(np.diag([1.0, 0.0])))
    np.testing.assert_allclose(jac, np.diag([1.0, 1.0, 0.0]), atol=1e-15)


def test_product_cone_is_block_diagonal(mixed_cones):
    cones = [ZeroCone(3)] + [c for c, _ in mixed_cones]
    v = np.concatenate([np.array([1.0, -2.0, 3.0])] + [v for _, v in mixed_cones])
    prod = ProductCone(cones)
    jac = prod.project_derivative(v)
    assert isinstance(jac, sp.csr_array) and jac.shape == (prod.dim, prod.dim)
    bounds = zip(prod.offsets[:-1], prod.offsets[1:], strict=True)
    blocks = [c.project_derivative(v[a:b]) for c, (a, b) in zip(cones, bounds, strict=True)]
    np.testing.assert_allclose(jac.toarray(), sp.block_diag(blocks).toarray(), rtol=0, atol=1e-14)
    small = ProductCone([ZeroCone(2), NonnegCone(2)])
    assert fd_error(small, np.array([1, 2, -1, 3.0]), np.random.default_rng(15)) <= 1e-9


def test_lengths_dtypes_and_empty_cones():
    for cone in (ZeroCone(2), NonnegCone(2), SecondOrderCone([2]), PSDCone([1, 1])):
        with pytest.raises(ValueError):
            cone.project_derivative(np.ones(3))
    for cone in (ExpCone(1), PowCone3D([0.5]), ProductCone([ExpCone(1)])):
        with pytest.raises(ValueError):
            cone.project_derivative(np.ones(4))
        with pytest.raises(ValueError):
            cone.project_derivative(np.ones((1, 3)))
    v = np.array([0.3, -0.2, 0.5], dtype=np.float32)
    for cone in (SecondOrderCone([3]), ExpCone(1), PowCone3D([0.4]), PSDCone([2])):
        jac = cone.project_derivative(v)
        assert jac.dtype == np.float64
        np.testing.assert_allclose(jac.toarray(), dense(cone, v.astype(np.float64)), atol=1e-6)
    for cone in (ZeroCone(0), NonnegCone(0), ExpCone(0), PowCone3D([]), ProductCone([])):
        assert cone.project_derivative(np.zeros(0)).shape == (0, 0)


def test_extreme_magnitudes_stay_finite():
    vals = [0.0, 5e-324, 1e-300, 1e-150, 1e-8, 0.3, 1.0, 1e8, 1e150, 1e300]
    vals = vals + [-x for x in vals]
    grid = np.array(np.meshgrid(vals, vals, vals)).reshape(3, -1).T
    n = grid.shape[0]
    alphas = np.resize([0.5, 0.01, 0.99, 0.3], n)
    for cone in (ExpCone(n), PowCone3D(alphas), SecondOrderCone([3] * n), PSDCone([2] * n)):
        jac = cone.project_derivative(grid.ravel())
        assert np.all(np.isfinite(jac.data)), cone.name
        coo = jac.tocoo()
        assert np.all(coo.row // 3 == coo.col // 3)
        blocks = np.zeros((n, 3, 3))
        blocks[coo.row // 3, coo.row % 3, coo.col % 3] = coo.data
        np.testing.assert_allclose(blocks, np.swapaxes(blocks, 1, 2), rtol=0, atol=1e-12)
        eig = np.linalg.eigvalsh(blocks)
        assert eig.min() >= -1e-12 and eig.max() <= 1 + 1e-12, cone.name
        unit = grid / np.maximum(np.abs(grid).max(axis=1), 1e-300)[:, None]
        resid = jac @ unit.ravel() - cone.project(unit.ravel())
        assert np.abs(resid).max() <= 1e-12, cone.name


def test_large_batches():
    """20000 exponential and power cones and 10000 SOC blocks at once (no timing assertion)."""
    rng = np.random.default_rng(14)
    alphas = rng.uniform(0.05, 0.95, 20000)
    cases = [
        (ExpCone(20000), lambda i: ExpCone(1)),
        (SecondOrderCone([3] * 10000), lambda i: SecondOrderCone([3])),
        (PowCone3D(alphas), lambda i: PowCone3D([alphas[i]])),
    ]
    for cone, single in cases:
        v = rng.standard_normal(cone.dim)
        jac = cone.project_derivative(v)
        assert jac.nnz <= 3 * cone.dim
        assert abs(jac - jac.T).max() <= 1e-12
        np.testing.assert_allclose(jac @ v, cone.project(v), rtol=0, atol=1e-12)
        # A few blocks agree with the same cones differentiated one at a time.
        for i in rng.choice(cone.dim // 3, 5, replace=False):
            sl = slice(3 * i, 3 * i + 3)
            np.testing.assert_allclose(jac[sl, sl].toarray(), dense(single(i), v[sl]), atol=1e-14)
