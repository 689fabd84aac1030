"""Tests for cvxprox.functions.prox: proximal operators of closed convex functions.

u = prox_{tf}(v) = argmin_u t f(u) + 1/2 ||u - v||^2 exactly when v - u in t df(u). Every function
is checked against CLARABEL (or scipy.optimize for the smooth ones) solving that problem, against
its optimality conditions at scales from 1e-6 to 1e6, against scalar root finding (brentq) for the
functions whose prox is iterative, and for Moreau's identity, firm nonexpansiveness, its value
against CVXPY's atoms, its gradient against finite differences and its input validation.
"""

from collections.abc import Callable
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import pytest
from scipy.optimize import brentq, minimize
from scipy.special import expit

from cvxprox.functions.cones import NonnegCone, ZeroCone
from cvxprox.functions.prox import (
    TV1D,
    BlockSum,
    Box,
    GroupL2,
    Huber,
    KLDiv,
    L1Ball,
    L2Ball,
    LinfBall,
    Logistic,
    NegEntropy,
    Norm1,
    Norm2,
    NormInf,
    Pos,
    ProxFunction,
    Quadratic,
    Simplex,
    SumSquares,
)

M = 8
TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
KKT_TOL = 1e-9  # optimality violations relative to the data's scale
SCALES = [1e-6, 1.0, 1e6]
STEPS = [1e-6, 1.0, 1e6]

_rng = np.random.default_rng(20240601)
W_ARRAY = np.array([0.0, 0.5, 1.0, 2.0, 3.0, 0.1, 1.5, 0.7])
LOWER = np.array([-1.0, -np.inf, 0.0, -2.0, 0.5, -np.inf, -0.3, 1.0])
UPPER = np.array([1.0, 0.5, np.inf, -1.0, 0.5, np.inf, 2.0, 3.0])
C_KL = np.array([0.5, 1.0, 2.0, 0.1, 3.0, 1.0, 0.7, 5.0])
GROUP_W = np.array([1.0, 0.0, 2.5, 0.4])
_F = _rng.standard_normal((M, 5))
# Rank 5: positive semidefinite and singular; unit spectral norm, so that t w ||Q|| is the
# scale the optimality checks measure against.
Q_PSD = _F @ _F.T / np.linalg.norm(_F, 2) ** 2


@dataclass
class Case:
    """A function and its CVXPY model: (objective expression or None, constraints)."""

    name: str
    make: Callable[[], ProxFunction]
    model: Callable[[cp.Variable], tuple[cp.Expression | None, list]]


def _finite(bound: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isfinite(bound))


CASES = [
    Case("zero", lambda: ZeroCone(M), lambda u: (None, [u == 0])),
    Case("nonneg", lambda: NonnegCone(M), lambda u: (None, [u >= 0])),
    Case(
        "box",
        lambda: Box(LOWER, UPPER),
        lambda u: (
            None,
            [
                u[_finite(LOWER)] >= LOWER[_finite(LOWER)],
                u[_finite(UPPER)] <= UPPER[_finite(UPPER)],
            ],
        ),
    ),
    Case("box_scalar", lambda: Box(-0.5, 2.0, M), lambda u: (None, [u >= -0.5, u <= 2.0])),
    Case("simplex", lambda: Simplex(M, 2.5), lambda u: (None, [u >= 0, cp.sum(u) == 2.5])),
    Case("l2_ball", lambda: L2Ball(M, 1.5), lambda u: (None, [cp.norm(u, 2) <= 1.5])),
    Case("linf_ball", lambda: LinfBall(M, 0.4), lambda u: (None, [cp.norm_inf(u) <= 0.4])),
    Case("l1_ball", lambda: L1Ball(M, 1.2), lambda u: (None, [cp.norm1(u) <= 1.2])),
    Case("norm1", lambda: Norm1(M, 0.7), lambda u: (0.7 * cp.norm1(u), [])),
    Case("norm1_w", lambda: Norm1(M, W_ARRAY), lambda u: (W_ARRAY @ cp.abs(u), [])),
    Case("sum_squares", lambda: SumSquares(M, 1.5), lambda u: (1.5 * cp.sum_squares(u), [])),
    Case("sum_squares_w", lambda: SumSquares(M, W_ARRAY), lambda u: (W_ARRAY @ cp.square(u), [])),
    Case("norm2", lambda: Norm2(M, 2.0), lambda u: (2.0 * cp.norm(u, 2), [])),
    Case("norm_inf", lambda: NormInf(M, 1.3), lambda u: (1.3 * cp.norm_inf(u), [])),
    Case("huber", lambda: Huber(M), lambda u: (cp.sum(cp.huber(u, 1.0)), [])),
    Case(
        "huber_w",
        lambda: Huber(M, 0.4, W_ARRAY),
        lambda u: (W_ARRAY @ cp.huber(u, 0.4), []),
    ),
    Case("pos_w", lambda: Pos(M, W_ARRAY), lambda u: (W_ARRAY @ cp.pos(u), [])),
    Case(
        "group_l2",
        lambda: GroupL2(M, 2, 0.8),
        lambda u: (0.8 * sum(cp.norm(u[2 * g : 2 * g + 2], 2) for g in range(4)), []),
    ),
    Case(
        "group_l2_w",
        lambda: GroupL2(M, 2, GROUP_W),
        lambda u: (sum(GROUP_W[g] * cp.norm(u[2 * g : 2 * g + 2], 2) for g in range(4)), []),
    ),
    Case("tv1d", lambda: TV1D(M, 0.6), lambda u: (0.6 * cp.tv(u), [])),
    Case(
        "block_sum",
        lambda: BlockSum([TV1D(3, 0.6), NormInf(5, 1.3)]),
        lambda u: (0.6 * cp.tv(u[:3]) + 1.3 * cp.norm_inf(u[3:]), []),
    ),
    Case("quad_form", lambda: Quadratic(Q_PSD, 0.8), lambda u: (0.8 * cp.quad_form(u, Q_PSD), [])),
    Case("logistic_w", lambda: Logistic(M, W_ARRAY), lambda u: (W_ARRAY @ cp.logistic(u), [])),
    Case(
        "neg_entropy",
        lambda: NegEntropy(M, 0.9),
        lambda u: (0.9 * cp.sum(-cp.entr(u)), []),
    ),
    Case(
        "neg_entropy_w",
        lambda: NegEntropy(M, W_ARRAY[1:].tolist() + [1.0]),
        lambda u: (np.r_[W_ARRAY[1:], 1.0] @ -cp.entr(u), []),
    ),
    Case(
        "kl_div_w",
        lambda: KLDiv(M, C_KL, W_ARRAY[::-1] + 0.2),
        lambda u: ((W_ARRAY[::-1] + 0.2) @ cp.kl_div(u, C_KL), []),
    ),
]
IDS = [c.name for c in CASES]


def _points(seed: int, scale: float = 1.0, count: int = 3) -> list[np.ndarray]:
    """Random points, one of them with exact zeros and ties."""
    rng = np.random.default_rng(seed)
    pts = [scale * rng.standard_normal(M) for _ in range(count)]
    tied = scale * rng.standard_normal(M)
    tied[[1, 4]] = 0.0
    tied[5] = tied[6] = -tied[2]
    return [*pts, tied]


# --------------------------------------------------------------------------------------------
# Optimality conditions: v - u in t df(u), with violations relative to the data's scale
# --------------------------------------------------------------------------------------------


def _as_array(weight: float | np.ndarray, m: int = M) -> np.ndarray:
    return np.broadcast_to(np.asarray(weight, dtype=float), (m,))


def _violation(f: ProxFunction, v: np.ndarray, u: np.ndarray, t: float) -> float:
    """The largest violation of the optimality conditions of u = prox_{tf}(v), relative."""
    d, m = v - u, v.size
    scale = max(np.max(np.abs(v)), np.max(np.abs(u)), 1e-300)
    weight = getattr(f, "weight", 0.0)
    scale = max(scale, t * float(np.max(weight)))
    tol = KKT_TOL * scale
    big = np.abs(u) > tol
    gaps: list[float] = [0.0]

    def add(*values: np.ndarray | float) -> None:
        gaps.extend(float(np.max(x, initial=0.0)) for x in values)

    if isinstance(f, BlockSum):
        parts = zip(f.functions, f.blocks(v), f.blocks(u), strict=True)
        return max(_violation(g, vb, ub, t) for g, vb, ub in parts)
    if isinstance(f, ZeroCone):
        add(np.abs(u))
    elif isinstance(f, NonnegCone):
        add(-u, d, np.minimum(np.abs(u), np.abs(d)))
    elif isinstance(f, Box):
        lo, up = _as_array(f.lower, m), _as_array(f.upper, m)
        add(lo - u, u - up)
        add(np.where(d > tol, np.abs(u - up), 0), np.where(d < -tol, np.abs(u - lo), 0))
    elif isinstance(f, Simplex):
        add(-u, abs(np.sum(u) - f.total) / m)
        support = u > tol
        theta = np.max(d[support])
        add(np.abs(d[support] - theta), d[~support] - theta)
    elif isinstance(f, L2Ball):
        nrm = np.linalg.norm(u)
        add(nrm - f.radius)
        if nrm > tol:
            add(np.abs(d - (d @ u) / nrm**2 * u), -(d @ u) / nrm)
        if np.linalg.norm(d) > tol:
            add(abs(nrm - f.radius))
    elif isinstance(f, LinfBall):
        add(np.abs(u) - f.radius)
        add(np.where(d > tol, np.abs(u - f.radius), 0), np.where(d < -tol, np.abs(u + f.radius), 0))
    elif isinstance(f, L1Ball):
        lam = np.max(np.abs(d))
        add((np.sum(np.abs(u)) - f.radius) / m)
        if lam > tol:
            add(abs(np.sum(np.abs(u)) - f.radius) / m)
        add(np.abs(d[big] - lam * np.sign(u[big])))
    elif isinstance(f, Norm1):
        a = t * _as_array(f.weight, m)
        add(np.abs(d) - a, np.where(u != 0, np.abs(d - a * np.sign(u)), 0))
    elif isinstance(f, Pos):
        a = t * _as_array(f.weight, m)
        add(np.where(u > tol, np.abs(d - a), 0), np.where(u < -tol, np.abs(d), 0), -d, d - a)
    elif isinstance(f, Norm2):
        nrm, a = np.linalg.norm(u), t * f.weight
        add(np.abs(d - a * u / nrm) if nrm > tol else np.linalg.norm(d) - a)
    elif isinstance(f, GroupL2):
        groups, dg = u.reshape(-1, f.group_size), d.reshape(-1, f.group_size)
        a = t * np.broadcast_to(f.weight, (groups.shape[0],))
        for ug, dd, ag in zip(groups, dg, a, strict=True):
            nrm = np.linalg.norm(ug)
            add(np.abs(dd - ag * ug / nrm) if nrm > tol else np.linalg.norm(dd) - ag)
    elif isinstance(f, NormInf):
        a, top = t * f.weight, np.max(np.abs(u))
        add((np.sum(np.abs(d)) - a) / m)
        if top > tol:
            add((a - np.sum(np.abs(d))) / m)
            add(np.where(np.abs(u) < top - tol, np.abs(d), 0), -d * np.sign(u))
    elif isinstance(f, TV1D):
        # u = v - D'p with p_k = cumsum(u - v)_k, |p_k| <= a, p_k = a sign(u_{k+1} - u_k)
        # where u jumps, and p_{m-1} = 0 (D the forward difference).
        a, p, jump = t * f.weight, np.cumsum(-d), np.diff(u)
        add(np.abs(p[:-1]) - a, abs(p[-1]))
        add(np.where(np.abs(jump) > tol, np.abs(p[:-1] - a * np.sign(jump)), 0))
    elif f.smooth:
        add(np.abs(d - t * f.grad(u)))
    elif isinstance(f, NegEntropy | KLDiv):
        a = t * _as_array(f.weight, m)
        c = _as_array(f.c, m) if isinstance(f, KLDiv) else np.full(m, np.exp(-1.0))
        add(-u, np.where(a == 0, np.abs(u - np.maximum(v, 0)), 0))
        live = (a > 0) & (u > 1e-300)
        gscale = scale + np.max(a[live] * np.abs(np.log(u[live] / c[live])), initial=0)
        add(np.abs(d[live] - a[live] * np.log(u[live] / c[live])) * scale / gscale)
        add(np.where((a > 0) & (u <= 1e-300), d - a * np.log(1e-300 / c), 0))
    else:
        raise AssertionError(f"no optimality check for {f!r}")
    return max(gaps) / scale


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_optimality_conditions_across_scales(case: Case) -> None:
    f = case.make()
    for k, scale in enumerate(SCALES):
        for v in _points(k, scale):
            for t in STEPS:
                u = f.prox(v, t)
                assert u.shape == (M,) and u.dtype == np.float64
                assert np.all(np.isfinite(u))
                assert _violation(f, v, u, t) <= KKT_TOL, (scale, t, v, u)


# --------------------------------------------------------------------------------------------
# Against numerical minimization
# --------------------------------------------------------------------------------------------


def _cvxpy_prox(case: Case, v: np.ndarray, t: float) -> np.ndarray:
    u = cp.Variable(M)
    objective, constraints = case.model(u)
    total = 0.5 * cp.sum_squares(u - v) + (0 if objective is None else t * objective)
    prob = cp.Problem(cp.Minimize(total), constraints)
    prob.solve(solver=cp.CLARABEL, **TIGHT)
    assert prob.status == cp.OPTIMAL
    return u.value


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_prox_matches_clarabel(case: Case) -> None:
    f = case.make()
    # CLARABEL's exponential-cone solutions are accurate to about 1e-5 here (the brentq test
    # below checks those functions to 1e-12)
    tol = 2e-5 if isinstance(f, Logistic | NegEntropy | KLDiv) else 2e-6
    for seed, (scale, t) in enumerate([(1.0, 0.5), (3.0, 4.0), (0.3, 0.05)]):
        v = _points(seed, scale, count=1)[0]
        ref = _cvxpy_prox(case, v, t)
        np.testing.assert_allclose(f.prox(v, t), ref, atol=tol * max(1.0, scale), rtol=0)


@pytest.mark.parametrize(
    "make",
    [lambda: SumSquares(M, W_ARRAY), lambda: Huber(M, 0.3, 2.0), lambda: Logistic(M, W_ARRAY * 3)],
)
def test_smooth_prox_matches_scipy_minimize(make: Callable[[], ProxFunction]) -> None:
    f = make()
    for seed, (scale, t) in enumerate([(1.0, 1.0), (4.0, 0.2), (10.0, 30.0)]):
        v = _points(seed, scale, count=1)[0]

        def objective(u: np.ndarray, v: np.ndarray = v, t: float = t) -> tuple[float, np.ndarray]:
            return t * f(u) + 0.5 * np.sum((u - v) ** 2), t * f.grad(u) + u - v

        res = minimize(
            objective,
            v,
            jac=True,
            method="L-BFGS-B",
            options={"gtol": 1e-13, "ftol": 1e-16, "maxiter": 5000},
        )
        np.testing.assert_allclose(f.prox(v, t), res.x, atol=1e-6 * scale, rtol=0)


def _brentq_prox(f: ProxFunction, v: np.ndarray, t: float) -> np.ndarray:
    """The prox of the logistic loss, negative entropy or KL divergence, entry by entry."""
    a = t * _as_array(f.weight)
    out = np.empty(M)
    for i in range(M):
        if isinstance(f, Logistic):
            out[i] = brentq(
                lambda u, i=i: u + a[i] * expit(u) - v[i],
                v[i] - a[i],
                v[i],
                xtol=1e-300,
                rtol=8.9e-16,
            )
            continue
        if a[i] == 0:
            out[i] = max(v[i], 0.0)
            continue
        log_c = np.log(f.c if np.isscalar(f.c) else f.c[i]) if isinstance(f, KLDiv) else -1.0
        c = np.exp(log_c)

        def phi(ell: float, i: int = i, log_c: float = log_c) -> float:
            return np.exp(ell) + a[i] * (ell - log_c) - v[i]

        lo = log_c + min(0.0, (v[i] - c) / a[i])
        hi = max(log_c, np.log(max(v[i], 1e-300)))
        lo, hi = lo - 1e-6 * (1 + abs(lo)), hi + 1e-6 * (1 + abs(hi))
        out[i] = np.exp(brentq(phi, lo, hi, xtol=1e-300, rtol=8.9e-16))
    return out


@pytest.mark.parametrize(
    "make",
    [
        lambda: Logistic(M),
        lambda: Logistic(M, W_ARRAY),
        lambda: NegEntropy(M, W_ARRAY),
        lambda: KLDiv(M, C_KL, 2.0),
        lambda: KLDiv(M, 1e-3, W_ARRAY),
    ],
)
def test_iterative_prox_matches_brentq(make: Callable[[], ProxFunction]) -> None:
    f = make()
    for k, scale in enumerate([1e-6, 1e-2, 1.0, 30.0, 1e3, 1e6]):
        for v in _points(10 + k, scale, count=2):
            for t in [1e-6, 1e-2, 1.0, 1e2, 1e6]:
                u, ref = f.prox(v, t), _brentq_prox(f, v, t)
                if isinstance(f, Logistic):
                    tol = 1e-14 * (np.abs(v) + t * _as_array(f.weight))
                else:
                    tol = 1e-12 * ref + 1e-300
                assert np.all(np.abs(u - ref) <= tol), (scale, t, u, ref)


# --------------------------------------------------------------------------------------------
# Moreau's identity, firm nonexpansiveness, input handling
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_moreau_identity(case: Case) -> None:
    f = case.make()
    for k, scale in enumerate(SCALES):
        for v in _points(20 + k, scale):
            for t in [1e-3, 0.7, 1e3]:
                p, q = f.prox(v, t), f.prox_conj(v / t, 1.0 / t)
                size = max(np.max(np.abs(v)), np.max(np.abs(p)))
                np.testing.assert_allclose(p + t * q, v, rtol=0, atol=1e-14 * size)
                # overrides of prox_conj agree with the base class's Moreau formula
                q, base = f.prox_conj(v, t), ProxFunction.prox_conj(f, v, t)
                size = max(np.max(np.abs(v)), t * np.max(np.abs(f.prox(v / t, 1 / t))))
                np.testing.assert_allclose(q, base, rtol=0, atol=1e-14 * size)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_firmly_nonexpansive(case: Case) -> None:
    f = case.make()
    rng = np.random.default_rng(30)
    for _ in range(20):
        scale = 10.0 ** rng.uniform(-3, 3)
        x, y = scale * rng.standard_normal((2, M))
        t = 10.0 ** rng.uniform(-2, 2)
        dp = f.prox(x, t) - f.prox(y, t)
        assert dp @ dp <= dp @ (x - y) + 1e-12 * scale**2


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_input_untouched_and_output_fresh(case: Case) -> None:
    f = case.make()
    v = _points(40)[0]
    v.flags.writeable = False
    for out in (f.prox(v, 0.5), f.prox_conj(v, 0.5)):
        assert not np.shares_memory(out, v)
    assert f.prox(list(v), 0.5).shape == (M,)  # any array-like of the right length


@pytest.mark.parametrize(
    "f",
    [
        Norm1(401, 0.5),
        Pos(401, 0.5),
        Huber(401, 0.7, 0.5),
        SumSquares(401, 0.5),
        Logistic(401, 0.5),
        NegEntropy(401, 0.5),
        KLDiv(401, 0.8, 0.5),
        Box(-1.0, 2.0, 401),
        NonnegCone(401),
        LinfBall(401, 1.5),
    ],
    ids=repr,
)
def test_separable_sweep_across_kinks(f: ProxFunction) -> None:
    """A dense sweep of v through every kink and branch boundary of a separable prox."""
    v = np.linspace(-4.0, 4.0, 401)
    for t in [0.3, 1.0, 2.0]:
        assert _violation(f, v, f.prox(v, t), t) <= KKT_TOL


def test_edge_cases_at_zero_and_far_out() -> None:
    zero = np.zeros(M)
    for case in CASES:
        f = case.make()
        if not isinstance(f, Simplex | Box | KLDiv | NegEntropy | Logistic):
            np.testing.assert_array_equal(f.prox(zero, 1.0), zero)
    assert np.all(Logistic(M).prox(np.full(M, 1e300), 1.0) == 1e300)
    np.testing.assert_allclose(Logistic(M).prox(np.full(M, 1e6), 1.0), 1e6 - 1.0, rtol=1e-15)
    np.testing.assert_allclose(Logistic(M).prox(np.full(M, -1e6), 1.0), -1e6, rtol=1e-15)
    u = NegEntropy(M).prox(np.full(M, -1e4), 1.0)  # exp(-1e4 - 1) underflows
    assert np.all(u >= 0) and np.all(u < 1e-300)
    omega = 0.5671432904097838  # u + log u + 1 = 1 at u = W(1)
    np.testing.assert_allclose(NegEntropy(M).prox(np.ones(M), 1.0), omega, rtol=1e-15)
    np.testing.assert_allclose(
        KLDiv(M, 3.0, 0.0).prox(np.linspace(-1, 1, M), 1.0), np.maximum(np.linspace(-1, 1, M), 0)
    )
    v = _points(41)[0]
    np.testing.assert_array_equal(Simplex(M, 0.0).prox(v, 1.0), zero)
    np.testing.assert_array_equal(L1Ball(M, 0.0).prox(v, 1.0), zero)
    np.testing.assert_array_equal(L2Ball(M, 0.0).prox(v, 1.0), zero)
    np.testing.assert_array_equal(L1Ball(M, 1e9).prox(v, 1.0), v)
    np.testing.assert_array_equal(Norm1(M, 0.0).prox(v, 1.0), v)
    np.testing.assert_array_equal(NormInf(M, 0.0).prox(v, 1.0), v)
    np.testing.assert_array_equal(Box(-np.inf, np.inf, M).prox(v, 1.0), v)
    simplex = Simplex(M, 2.0).prox(np.full(M, 7.0), 1.0)
    np.testing.assert_allclose(simplex, 2.0 / M)  # ties everywhere
    np.testing.assert_allclose(NormInf(M, 1.0).prox(np.full(M, 1.0), 1.0), 1 - 1 / M)
    w = np.array([0, 1, 1, 0, 1, 1, 1, 1.0])
    np.testing.assert_array_equal(Huber(M, 1, w).prox(v, 5.0)[w == 0], v[w == 0])


def test_group_l2_compiled_prox_matches_the_namespace_formula() -> None:
    """GroupL2's compiled prox (NumPy float64) against the block soft thresholding
    written with NumPy, groups of 1, 2 and 3 with one weight and per-group weights: a zero
    group, one below, one at (per-group weights) and one above its threshold, and a
    strided input."""
    rng = np.random.default_rng(51)
    for k in (1, 2, 3):
        groups = rng.standard_normal((6, k))
        groups[0] = 0.0
        weight = rng.uniform(0.5, 1.5, 6)
        norms = np.linalg.norm(groups, axis=1)
        groups[1] *= 0.5 * weight[1] / norms[1]
        groups[2] *= 0.8 * weight[2] / norms[2]
        groups[3] *= 3.0 * weight[3] / norms[3]
        v = groups.ravel()
        for w in (weight, 0.9):
            a = 0.8 * np.broadcast_to(w, (6,))
            nrm = np.linalg.norm(groups, axis=1)
            scale = np.where(nrm > a, 1.0 - a / np.where(nrm > a, nrm, 1.0), 0.0)
            want = (groups * scale[:, None]).ravel()
            np.testing.assert_allclose(GroupL2(6 * k, k, w).prox(v, 0.8), want, atol=1e-15)
        strided = np.repeat(v, 2)[::2]
        np.testing.assert_array_equal(GroupL2(6 * k, k, 0.9).prox(strided, 0.8), want)


def test_large_vector_is_fast_and_matches_closed_forms() -> None:
    rng = np.random.default_rng(50)
    v = rng.standard_normal(200_000)
    u = L1Ball(v.size, 10.0).prox(v, 1.0)
    assert np.sum(np.abs(u)) == pytest.approx(10.0, rel=1e-10)
    u = Simplex(v.size).prox(v, 1.0)
    assert np.sum(u) == pytest.approx(1.0, rel=1e-10) and np.min(u) >= 0
    u = Logistic(v.size).prox(v, 2.0)
    np.testing.assert_allclose(u + 2.0 * expit(u), v, rtol=0, atol=1e-14)


# --------------------------------------------------------------------------------------------
# Values, gradients, Lipschitz constants
# --------------------------------------------------------------------------------------------


VALUED = [c for c in CASES if not c.make().is_indicator]


@pytest.mark.parametrize("case", VALUED, ids=[c.name for c in VALUED])
def test_value_matches_cvxpy(case: Case) -> None:
    f = case.make()
    for v in _points(60, 2.0):
        v = np.abs(v) if isinstance(f, NegEntropy | KLDiv) else v
        u = cp.Variable(M, value=v)
        assert f(v) == pytest.approx(float(case.model(u)[0].value), rel=1e-12, abs=1e-12)


def test_domain_values() -> None:
    v = np.linspace(-1, 1, M)
    assert NegEntropy(M)(v) == np.inf and KLDiv(M, 1.0, W_ARRAY)(v) == np.inf
    assert NegEntropy(M, 0.0)(v) == np.inf  # a zero weight keeps the domain v >= 0
    assert NegEntropy(M)(np.zeros(M)) == 0.0 and KLDiv(M, 2.0)(np.zeros(M)) == 2.0 * M


def test_indicator_values() -> None:
    e1, ones = np.eye(M)[0], np.ones(M) / np.sqrt(M)
    upper_face = np.clip(np.zeros(M), LOWER, UPPER)
    upper_face[0] = UPPER[0]
    boundary = [  # (f, a boundary point, an outward unit normal there)
        (ZeroCone(M), np.zeros(M), e1),
        (NonnegCone(M), np.r_[0.0, np.ones(M - 1)], -e1),
        (Box(LOWER, UPPER), upper_face, e1),
        (Simplex(M, 2.0), np.full(M, 0.25), ones),
        (L2Ball(M, 2.0), 2.0 * ones, ones),
        (LinfBall(M, 3.0), np.full(M, -3.0), -e1),
        (L1Ball(M, 4.0), np.full(M, 0.5), ones),
    ]
    rng = np.random.default_rng(80)
    for f, b, n in boundary:
        assert f.is_indicator and not f.smooth
        assert f(b) == 0.0 and f(b + 1e-10 * n) == 0.0 and f(b + 1e-8 * n) == np.inf
        for scale in SCALES:
            assert f(f.prox(scale * rng.standard_normal(M), 1.0)) == 0.0
    assert Simplex(M)(np.full(M, 1e6 / M)) == np.inf
    for f in (Norm1(M), Huber(M), Logistic(M)):
        assert not f.is_indicator


SMOOTH = [
    lambda: SumSquares(M, W_ARRAY),
    lambda: Huber(M, 0.6, W_ARRAY),
    lambda: Logistic(M, W_ARRAY),
    lambda: SumSquares(M, 3.0),
]


@pytest.mark.parametrize("make", SMOOTH)
def test_gradient_and_lipschitz(make: Callable[[], ProxFunction]) -> None:
    f = make()
    assert f.smooth
    rng = np.random.default_rng(70)
    h = 1e-6
    for _ in range(5):
        v = 2.0 * rng.standard_normal(M)
        fd = np.array([(f(v + h * e) - f(v - h * e)) / (2 * h) for e in np.eye(M)])
        np.testing.assert_allclose(f.grad(v), fd, rtol=1e-6, atol=1e-7)
    lip, ratio = f.lipschitz(), 0.0
    for _ in range(200):
        x, y = rng.standard_normal((2, M)) * 10.0 ** rng.uniform(-3, 1)
        r = np.linalg.norm(f.grad(x) - f.grad(y)) / np.linalg.norm(x - y)
        assert r <= lip * (1 + 1e-12)
        ratio = max(ratio, r)
    # the bound is tight: along the coordinate of the largest weight, near 0
    i = int(np.argmax(np.broadcast_to(f.weight, (M,))))
    e = np.eye(M)[i] * 1e-4
    tight = np.linalg.norm(f.grad(e) - f.grad(-e)) / np.linalg.norm(2 * e)
    assert tight == pytest.approx(lip, rel=1e-6)


def test_nonsmooth_have_no_gradient() -> None:
    for f in (Norm1(M), NegEntropy(M), Box(0, 1, M)):
        assert not f.smooth
        with pytest.raises(NotImplementedError):
            f.grad(np.ones(M))
        with pytest.raises(NotImplementedError):
            f.lipschitz()


def test_describe_and_repr() -> None:
    assert Norm1(M).describe() == "norm1"
    assert Norm1(M, 2.0).describe() == "2*norm1"
    assert Norm1(M, W_ARRAY).describe() == "w*norm1"
    assert Huber(M).describe() == "huber(M=1)"
    assert GroupL2(M, 2).describe() == "group_l2(2)"
    assert NonnegCone(M).describe() == "nonneg"
    assert repr(Simplex(M)) == f"Simplex(simplex(total=1), size={M})"
    for case in CASES:
        f = case.make()
        assert f.size == M and f.describe() in repr(f)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: Norm1(0),
        lambda: Norm1(2.5),
        lambda: Norm1(M, -1.0),
        lambda: Norm1(M, np.inf),
        lambda: Norm1(M, np.nan),
        lambda: Norm1(M, np.ones(M - 1)),
        lambda: Norm1(M, np.ones((M, 1))),
        lambda: Norm1(M, np.r_[np.ones(M - 1), -1.0]),
        lambda: SumSquares(M, np.r_[np.ones(M - 1), np.nan]),
        lambda: Norm2(M, np.ones(M)),
        lambda: NormInf(M, -2.0),
        lambda: Huber(M, 0.0),
        lambda: Huber(M, -1.0),
        lambda: Huber(M, 1.0, np.ones(3)),
        lambda: GroupL2(M, 3),
        lambda: GroupL2(M, 0),
        lambda: GroupL2(M, 2, np.ones(M)),
        lambda: GroupL2(M, 2, [1.0, -1.0, 1.0, 1.0]),
        lambda: KLDiv(M, 0.0),
        lambda: KLDiv(M, np.r_[np.ones(M - 1), 0.0]),
        lambda: KLDiv(M, np.ones(3)),
        lambda: Logistic(M, np.ones(M + 1)),
        lambda: NegEntropy(-1),
        lambda: Box(1.0, 0.0, M),
        lambda: Box(0.0, 1.0),
        lambda: Box(np.zeros(3), np.ones(4)),
        lambda: Box(np.zeros(3), 1.0, 4),
        lambda: Box(np.inf, np.inf, M),
        lambda: Box(np.nan, 1.0, M),
        lambda: Simplex(M, -1.0),
        lambda: L2Ball(M, -1.0),
        lambda: L1Ball(M, np.inf),
        lambda: LinfBall(M, [1.0, 2.0]),
        lambda: TV1D(0),
        lambda: TV1D(M, -1.0),
        lambda: TV1D(M, np.ones(M)),
        lambda: BlockSum([]),
        lambda: BlockSum([Norm1(M), 1.0]),
    ],
)
def test_bad_parameters_raise(build: Callable[[], ProxFunction]) -> None:
    with pytest.raises(ValueError):
        build()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_arguments_raise(case: Case) -> None:
    f = case.make()
    v = np.ones(M)
    for call in (
        lambda: f.prox(np.ones(M + 1), 1.0),
        lambda: f.prox(np.ones((M, 1)), 1.0),
        lambda: f.prox(v, 0.0),
        lambda: f.prox(v, -1.0),
        lambda: f.prox(v, np.inf),
        lambda: f.prox(v, np.ones(2)),
        lambda: f.prox_conj(v, 0.0),
        lambda: f(np.ones(M - 1)),
    ):
        with pytest.raises(ValueError):
            call()
