"""Tests for cvxprox.backend.jit.cones: the compiled projection against the reference
cvxprox.functions.cones.

Agreement is checked to 1e-9 relative to max|v| on random points at several scales, on points
inside K and inside the polar cone K°, on the special regions of the exponential and power
cones, and on Moreau's characterization of p = Pi_K(v): p in K, v - p in K°, <p, v - p> = 0
(membership tested with the reference: p in K iff Pi_K(p) = p, d in K° iff Pi_K(d) = 0).
"""

import numpy as np
import pytest

from cvxprox.backend.jit import cones as jit
from cvxprox.backend.jit.cones import cone_layout, project
from cvxprox.functions import cones as ref
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

RTOL = 1e-9  # agreement with the reference, relative to max|v|
MOREAU_TOL = 1e-10  # Moreau residuals, relative to ||v||
SCALES = [1e-8, 1.0, 1e8]


def mixed() -> ProductCone:
    return ProductCone(
        [
            ZeroCone(3),
            NonnegCone(4),
            SecondOrderCone([1, 3, 5]),
            PSDCone([1, 2, 3]),
            ExpCone(5),
            PowCone3D([0.3, 0.7]),
        ]
    )


# Fresh reference cones (an ExpCone carries its own warm starts).
CONES = {
    "zero": lambda: ZeroCone(7),
    "nonneg": lambda: NonnegCone(9),
    "soc": lambda: SecondOrderCone([1, 2, 3, 5, 10, 1]),
    "psd": lambda: PSDCone([1, 2, 3, 4, 6, 3]),
    "exp": lambda: ExpCone(40),
    "pow3d": lambda: PowCone3D(np.linspace(0.05, 0.95, 40)),
    "mixed": mixed,
}


def members(cone: Cone) -> list[Cone]:
    return cone.cones if isinstance(cone, ProductCone) else [cone]


def interior_points(member: Cone) -> tuple[np.ndarray, np.ndarray]:
    """A point in the interior of the member cone K and one in the interior of K°."""
    match member:
        case ZeroCone():
            return np.zeros(member.dim), np.zeros(member.dim)
        case NonnegCone():
            center = np.ones(member.dim)
        case SecondOrderCone():
            center = np.concatenate([np.eye(1, int(m))[0] for m in member.sizes])
        case PSDCone():
            center = np.concatenate([mat_to_svec(np.eye(int(n))) for n in member.sizes])
        case ExpCone():
            return np.tile([-1.0, 1.0, 1.0], member.count), np.tile([1.0, -1.0, -1.0], member.count)
        case PowCone3D():
            count = member.alphas.size
            return np.tile([1.0, 1.0, 0.0], count), np.tile([-1.0, -1.0, 0.0], count)
    return center, -center  # a self-dual cone


def interior_direction(cone: Cone, polar: bool) -> np.ndarray:
    """A point in the interior of K (of K° if ``polar``), member by member."""
    return np.concatenate([np.zeros(0)] + [interior_points(m)[polar] for m in members(cone)])


def assert_agrees(cone: Cone, layout: jit.ConeLayout, v: np.ndarray) -> np.ndarray:
    """Project ``v`` with both implementations, compare, and return the compiled result."""
    got = project(layout, v)
    expected = cone.project(v)
    tol = RTOL * max(np.max(np.abs(v), initial=0.0), np.finfo(float).tiny)
    np.testing.assert_allclose(got, expected, rtol=0, atol=tol)
    return got


def assert_moreau(cone: Cone, v: np.ndarray, p: np.ndarray) -> None:
    """p in K, v - p in K°, <p, v - p> = 0, relative to ||v||."""
    d = v - p
    scale = max(np.linalg.norm(v), np.finfo(float).tiny)
    assert np.linalg.norm(cone.project(p) - p) <= MOREAU_TOL * scale
    assert np.linalg.norm(cone.project(d)) <= MOREAU_TOL * scale
    assert abs(p @ d) <= MOREAU_TOL * scale**2


# --------------------------------------------------------------------------------------------
# Every kind and the mixed product
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONES))
@pytest.mark.parametrize("scale", SCALES)
def test_random_points_match_reference(name, scale):
    cone, rng = CONES[name](), np.random.default_rng(0)
    layout = cone_layout(cone)
    for _ in range(5):
        for v in (rng.standard_normal(cone.dim), rng.standard_normal(cone.dim) ** 3):
            p = assert_agrees(cone, layout, scale * v)
            assert_moreau(cone, scale * v, p)


@pytest.mark.parametrize("name", list(CONES))
def test_points_inside_cone_are_fixed(name):
    """Boundary points Pi_K(w) and interior points Pi_K(w) + c e project to themselves."""
    cone, rng = CONES[name](), np.random.default_rng(1)
    layout, center = cone_layout(cone), interior_direction(cone, polar=False)
    for scale in SCALES:
        for c in (0.0, 1e-6, 0.5):
            v = scale * (cone.project(rng.standard_normal(cone.dim)) + c * center)
            p = assert_agrees(cone, layout, v)
            np.testing.assert_allclose(p, v, rtol=0, atol=1e-12 * np.linalg.norm(v))


@pytest.mark.parametrize("name", list(CONES))
def test_points_inside_polar_project_to_zero(name):
    """Points w - Pi_K(w) of K° and interior points w - Pi_K(w) + c e° project to 0."""
    cone, rng = CONES[name](), np.random.default_rng(2)
    layout, center = cone_layout(cone), interior_direction(cone, polar=True)
    for scale in SCALES:
        for c in (0.0, 1e-6, 0.5):
            w = rng.standard_normal(cone.dim)
            v = scale * (w - cone.project(w) + c * center)
            p = assert_agrees(cone, layout, v)
            assert np.linalg.norm(p) <= 1e-12 * np.linalg.norm(v)


def test_zero_vector_and_in_place():
    cone = mixed()
    layout = cone_layout(cone)
    zero = np.zeros(cone.dim)
    assert np.array_equal(project(layout, zero), zero)
    v = np.random.default_rng(3).standard_normal(cone.dim)
    expected = cone.project(v)
    assert project(layout, v, out=v) is v
    np.testing.assert_allclose(v, expected, rtol=0, atol=1e-12)


def test_layout_of_mixed_product():
    layout = cone_layout(mixed())
    starts = np.cumsum([0, 3, 4, 1, 3, 5, 1, 3, 6] + [3] * 6)
    assert [a.tolist() for a in layout.zero] == [[0], [3]]
    assert [a.tolist() for a in layout.nonneg] == [[3], [4]]
    assert [a.tolist() for a in layout.soc] == [starts[2:5].tolist(), [1, 3, 5]]
    psd_starts, orders, work = layout.psd
    assert psd_starts.tolist() == starts[5:8].tolist() and orders.tolist() == [1, 2, 3]
    assert work.size == 9
    exp_starts, warm = layout.exp
    assert exp_starts.tolist() == starts[8:13].tolist() and np.all(np.isnan(warm))
    pow_starts, alphas = layout.pow3d
    assert pow_starts.tolist() == starts[13:].tolist() and alphas.tolist() == [0.3, 0.7]
    assert layout.dim == mixed().dim
    groups = [group for group in layout.arrays if group is not None]
    assert all(group[0].dtype == np.int64 for group in groups)
    assert orders.dtype == np.int64 and alphas.dtype == warm.dtype == np.float64


def test_layout_leaves_out_absent_kinds():
    """A kind the cone does not have is None, so that its code is not compiled."""
    layout = cone_layout(ProductCone([ZeroCone(2), NonnegCone(3)]))
    assert layout.soc is layout.psd is layout.exp is layout.pow3d is None
    assert cone_layout(NonnegCone(3)).zero[0].size == 0
    assert cone_layout(ExpCone(2)).exp is not None and cone_layout(ExpCone(2)).psd is None


def test_empty_cones():
    for cone in (
        ProductCone([]),
        ProductCone([ZeroCone(0), NonnegCone(0), SecondOrderCone([]), PSDCone([])]),
        ProductCone([ExpCone(0), PowCone3D([])]),
    ):
        layout = cone_layout(cone)
        assert layout.dim == 0 and project(layout, np.zeros(0)).shape == (0,)


def test_invalid_arguments():
    layout = cone_layout(mixed())
    with pytest.raises(ValueError):
        project(layout, np.zeros(layout.dim + 1))
    with pytest.raises(ValueError):
        project(layout, np.zeros(layout.dim), out=np.zeros(layout.dim, dtype=np.float32))
    with pytest.raises(TypeError):
        cone_layout(Cone())


def test_constants_match_reference():
    for name in (
        "_TOL",
        "_MAX_ITER",
        "_BISECT_AFTER",
        "_EXP_RHO_UP",
        "_EXP_RHO_AT_HI",
        "_EXP_RHO_DOWN",
        "_EXP_RHO_MIN",
        "_EXP_EDGE",
        "_POW_U_MAX",
    ):
        assert getattr(jit, name) == getattr(ref, name), name


# --------------------------------------------------------------------------------------------
# Exponential cone
# --------------------------------------------------------------------------------------------


def test_exp_special_regions():
    rng = np.random.default_rng(6)
    cone = ExpCone(40)
    layout = cone_layout(cone)
    # x <= 0 and y <= 0: projection is (x, 0, max(z, 0)).
    tri = np.stack(
        [-abs(rng.standard_normal(40)), -abs(rng.standard_normal(40)), rng.standard_normal(40)], 1
    )
    tri[:3, 0] = 0.0
    tri[3:6, 1] = 0.0
    p = assert_agrees(cone, layout, tri.ravel()).reshape(-1, 3)
    expected = np.stack([tri[:, 0], 0 * tri[:, 1], np.maximum(tri[:, 2], 0)], 1)
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-15)
    # Near the face y = 0 from both sides, near the polar face x = 0.
    for col, val in [(1, 1e-14), (1, -1e-14), (1, 1e-6), (1, -1e-6), (1, 5e-324), (0, 1e-13)]:
        tri = rng.standard_normal((40, 3))
        tri[:, col] = val * (rng.standard_normal(40) if col == 0 else 1.0)
        v = tri.ravel()
        assert_moreau(cone, v, assert_agrees(cone, layout, v))
    # Near the curved boundary, far out (|rho| large) and within 1e-14 of it.
    rho = np.resize([-600.0, -50.0, -1.0, 0.5, 30.0, 300.0, 700.0], 40)
    cap = np.maximum(rho, 0)
    boundary = np.stack([rho * np.exp(-cap), np.exp(-cap), np.exp(rho - cap)], 1)
    boundary /= np.linalg.norm(boundary, axis=1, keepdims=True)
    for noise in (1e-3, 1e-14):
        v = (boundary + noise * rng.standard_normal((40, 3))).ravel()
        assert_moreau(cone, v, assert_agrees(cone, layout, v))


def test_exp_exact_decompositions():
    """v = p + d with p = s (rho, 1, e^rho) in K, d = mu (1, 1 - rho, -e^-rho) in K° projects
    to p."""
    rng = np.random.default_rng(7)
    rho = rng.uniform(-8, 8, 40)
    s, mu = 10.0 ** rng.uniform(-2, 1, (2, 40))
    p = (s[:, None] * np.stack([rho, np.ones(40), np.exp(rho)], 1)).ravel()
    d = (mu[:, None] * np.stack([np.ones(40), 1 - rho, -np.exp(-rho)], 1)).ravel()
    layout = cone_layout(ExpCone(40))
    for scale in SCALES:
        v = scale * (p + d)
        np.testing.assert_allclose(project(layout, v), scale * p, rtol=0, atol=1e-11 * scale)


def test_exp_warm_start():
    """The roots are kept in ``warm`` exactly as the reference keeps ``_last_rho``."""
    rng = np.random.default_rng(8)
    cone = ExpCone(40)
    layout = cone_layout(cone)
    v = rng.standard_normal(cone.dim)
    first = assert_agrees(cone, layout, v)
    general = np.isfinite(cone._last_rho)
    assert 0 < general.sum() < 40  # some triples need a root, others do not
    np.testing.assert_allclose(layout.exp[1], cone._last_rho, rtol=1e-12)  # NaN where no root
    np.testing.assert_allclose(project(layout, v), first, rtol=0, atol=1e-14)
    for step in (1e-8, 1e-3, 1.0):  # nearby and far points, warm-started by both
        v = v + step * rng.standard_normal(cone.dim)
        assert_agrees(cone, layout, v)
        np.testing.assert_allclose(layout.exp[1], cone._last_rho, rtol=1e-10)


# --------------------------------------------------------------------------------------------
# Power cone
# --------------------------------------------------------------------------------------------


def test_pow_special_regions():
    rng = np.random.default_rng(9)
    alphas = np.resize([0.05, 0.3, 0.5, 0.7, 0.95], 40)
    cone = PowCone3D(alphas)
    layout = cone_layout(cone)
    # z = 0: projection is (max(x, 0), max(y, 0), 0).
    tri = rng.standard_normal((40, 3))
    tri[:, 2] = 0.0
    p = assert_agrees(cone, layout, tri.ravel()).reshape(-1, 3)
    expected = np.stack([np.maximum(tri[:, 0], 0), np.maximum(tri[:, 1], 0), 0 * tri[:, 2]], 1)
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-15)
    # Tiny x or y (the projection touches the faces), both x, y < 0.
    for col in (0, 1, None):
        tri = rng.standard_normal((40, 3))
        if col is None:
            tri[:, :2] = -abs(tri[:, :2])
        else:
            tri[:, col] = 1e-13 * rng.standard_normal(40)
        v = tri.ravel()
        assert_moreau(cone, v, assert_agrees(cone, layout, v))
    # Extreme exponents.
    extreme = PowCone3D(np.resize([1e-3, 0.999], 40))
    v = rng.standard_normal(extreme.dim)
    assert_moreau(extreme, v, assert_agrees(extreme, cone_layout(extreme), v))


def test_extreme_magnitudes():
    vals = [0.0, 5e-324, 1e-300, 1e-150, 1e-8, 0.3, 1.0, 1e8, 1e150, 1e300]
    vals = vals + [-x for x in vals]
    grid = np.array(np.meshgrid(vals, vals, vals)).reshape(3, -1).T
    n = grid.shape[0]
    alphas = np.resize([0.5, 0.01, 0.99, 0.3], n)
    for cone in (ExpCone(n), PowCone3D(alphas), SecondOrderCone([3] * n)):
        got = project(cone_layout(cone), grid.ravel()).reshape(-1, 3)
        assert np.all(np.isfinite(got)), cone.name
        expected = cone.project(grid.ravel()).reshape(-1, 3)
        scale = np.abs(grid).max(axis=1, keepdims=True)
        assert np.all(np.abs(got - expected) <= RTOL * scale), cone.name


@pytest.mark.parametrize("name", ["zero", "nonneg", "soc", "exp", "pow3d"])
def test_non_finite_entries_like_reference(name):
    """A diverging iterate gives NaN where the reference does, and the kernel does not raise."""
    cone = CONES[name]()
    layout = cone_layout(cone)
    for bad in (np.nan, np.inf, -np.inf):
        v = np.random.default_rng(10).standard_normal(cone.dim)
        v[::5] = bad
        got, expected = project(layout, v), cone.project(v)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_non_finite_psd_block_gives_nan():
    """A PSD block with an inf or NaN entry is NaN (``eigh`` would raise; the reference's
    batched ``eigh`` sometimes does); the other blocks are unaffected."""
    cone = PSDCone([3, 2])
    layout = cone_layout(cone)
    for bad in (np.nan, np.inf):
        v = np.random.default_rng(11).standard_normal(cone.dim)
        v[2] = bad
        got = project(layout, v)
        assert np.all(np.isnan(got[:6]))
        np.testing.assert_allclose(got[6:], PSDCone([2]).project(v[6:]), rtol=0, atol=1e-14)
