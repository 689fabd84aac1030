"""1-D total variation: the exact prox (``TV1D``, Condat's method in ``cvxprox.backend.jit.tv``)
and its lowering from ``tv(x)`` (``reductions/structure.py``), which lets FISTA solve
smooth + TV models such as TV deconvolution."""

import math
import time

import cvxpy as cp
import numpy as np
import pytest

import cvxprox
from cvxprox.backend.jit.tv import tv1d_prox
from cvxprox.functions.prox import TV1D, Norm1
from cvxprox.operators.linops import FiniteDiff, Gather, Identity
from cvxprox.reductions.structure import StructureLowering

TIGHT = {"tol_gap_abs": 1e-11, "tol_gap_rel": 1e-11, "tol_feas": 1e-11}


def _clarabel_prox(v: np.ndarray, lam: float) -> np.ndarray:
    u = cp.Variable(v.size)
    objective = 0.5 * cp.sum_squares(u - v)
    if v.size > 1:
        objective = objective + lam * cp.norm1(cp.diff(u))
    cp.Problem(cp.Minimize(objective)).solve(solver=cp.CLARABEL, **TIGHT)
    return u.value


def _certificate_violation(v: np.ndarray, u: np.ndarray, lam: float) -> float:
    """The largest violation, relative to the data, of the optimality conditions of
    u = prox(v): p = cumsum(u - v) has |p_k| <= lam, p_{m-1} = 0 and p_k = lam
    sign(u_{k+1} - u_k) where u jumps."""
    scale = max(1.0, np.sum(np.abs(v)), lam)
    p, jump = np.cumsum(u - v), np.diff(u)
    gaps = [abs(p[-1]), np.max(np.abs(p[:-1]) - lam, initial=0.0)]
    jumps = np.abs(jump) > 1e-12 * scale
    gaps.append(np.max(np.abs(p[:-1][jumps] - lam * np.sign(jump[jumps])), initial=0.0))
    return max(gaps) / scale


def _signal(rng: np.random.Generator, m: int, kind: str) -> np.ndarray:
    if kind == "noise":
        return rng.standard_normal(m)
    steps = np.repeat(rng.standard_normal(m // 7 + 1), 7)[:m]
    return steps + 0.05 * rng.standard_normal(m)


@pytest.mark.parametrize("m", [1, 2, 3, 5, 17, 100, 400])
@pytest.mark.parametrize("kind", ["noise", "steps"])
def test_prox_matches_clarabel(m: int, kind: str) -> None:
    rng = np.random.default_rng(m)
    for weight, t in [(0.3, 1.0), (1.0, 0.05), (2.0, 2.5)]:
        v = 3.0 * _signal(rng, m, kind)
        u = TV1D(m, weight).prox(v, t)
        np.testing.assert_allclose(u, _clarabel_prox(v, t * weight), rtol=0, atol=1e-6)


def test_prox_satisfies_the_optimality_conditions_exactly() -> None:
    rng = np.random.default_rng(1)
    for trial in range(3000):
        m = int(rng.integers(1, 120))
        lam = float(rng.choice([1e-3, 0.1, 1.0, 10.0])) * rng.random()
        v = _signal(rng, m, "noise" if trial % 2 else "steps") * 10.0 ** rng.uniform(-3, 3)
        u = TV1D(m, lam).prox(v, 1.0)
        assert _certificate_violation(v, u, lam) <= 1e-12, (m, lam)


def test_small_sizes_in_closed_form() -> None:
    v = np.array([2.5])
    np.testing.assert_array_equal(TV1D(1, 5.0).prox(v, 1.0), v)
    # m = 2: the two entries move towards each other by lam, or meet at the mean.
    np.testing.assert_allclose(TV1D(2, 0.5).prox(np.array([0.0, 3.0]), 1.0), [0.5, 2.5])
    np.testing.assert_allclose(TV1D(2, 0.5).prox(np.array([3.0, 0.0]), 2.0), [2.0, 1.0])
    np.testing.assert_array_equal(TV1D(2, 1.0).prox(np.array([1.0, 2.0]), 1.0), [1.5, 1.5])


def test_weight_zero_large_weight_and_constant_input() -> None:
    rng = np.random.default_rng(2)
    v = rng.standard_normal(50)
    np.testing.assert_array_equal(TV1D(50, 0.0).prox(v, 3.0), v)
    # Once t w bounds every |sum_{j<=k} (mean - v_j)| the prox is the mean.
    bound = np.max(np.abs(np.cumsum(v.mean() - v)))
    for weight in (bound, 1e3, 1e12):
        u = TV1D(50, weight).prox(v, 1.0)
        assert np.all(u == u[0]) and u[0] == pytest.approx(v.mean(), rel=1e-14)
    # Just below the bound some jump remains.
    assert np.ptp(TV1D(50, 0.99 * bound).prox(v, 1.0)) > 0
    const = np.full(30, -1.25)
    for weight in (0.0, 0.1, 1e6):
        np.testing.assert_array_equal(TV1D(30, weight).prox(const, 0.7), const)


def test_value_in_place_kernel_and_describe() -> None:
    v = np.array([1.0, 3.0, 2.0, 2.0, -1.0])
    f = TV1D(5, 0.5)
    assert f(v) == pytest.approx(0.5 * (2 + 1 + 0 + 3))
    assert f.describe() == "0.5*tv1d" and TV1D(5).describe() == "tv1d"
    assert not f.smooth and not f.is_indicator
    u = v.copy()
    tv1d_prox(u, 0.8, u)  # in place gives the same answer
    np.testing.assert_array_equal(u, f.prox(v, 1.6))
    with pytest.raises(ValueError):
        f.prox(np.ones(4), 1.0)


# --------------------------------------------------------------------------------------------
# Lowering
# --------------------------------------------------------------------------------------------


def _deconvolution(n: int, seed: int = 0) -> tuple[cp.Problem, cp.Variable]:
    rng = np.random.default_rng(seed)
    k = np.exp(-0.5 * (np.arange(-15, 16) / 5.0) ** 2)
    k /= k.sum()
    signal = np.repeat(rng.standard_normal(n // 20 + 1), 20)[:n]
    y = np.convolve(k, signal) + 0.05 * rng.standard_normal(n + k.size - 1)
    x = cp.Variable(n)
    return cp.Problem(cp.Minimize(cp.sum_squares(cp.convolve(k, x) - y) + 0.5 * cp.tv(x))), x


def test_tv_of_a_variable_lowers_to_tv1d() -> None:
    x, z = cp.Variable(12), cp.Variable(5)
    c = np.linspace(0.0, 2.0, 12) ** 2
    cases = {
        "tv": (0.3 * cp.tv(x), Identity),
        "norm1 diff": (cp.norm1(cp.diff(x)), Identity),
        "shifted": (cp.tv(x - c), Identity),
        "two variables": (cp.tv(x) + cp.sum_squares(z), Gather),
    }
    rng = np.random.default_rng(3)
    for name, (expr, op_type) in cases.items():
        prob = cp.Problem(cp.Minimize(expr))
        lowered = StructureLowering(prob).lower()
        tv = [t for t in lowered.program.terms if isinstance(t.function, TV1D)]
        assert len(tv) == 1 and isinstance(tv[0].op, op_type), name
        values = rng.standard_normal(lowered.layout.n)
        for var_id, val in lowered.layout.split(values).items():
            next(v for v in prob.variables() if v.id == var_id).value = val
        assert lowered.program.objective(values) == pytest.approx(prob.objective.value, rel=1e-12)


def test_tv_through_an_operator_keeps_the_difference() -> None:
    x = cp.Variable(12)
    M = np.random.default_rng(4).standard_normal((10, 12))
    X = cp.Variable((4, 5))
    for expr in (cp.tv(M @ x), cp.norm1(cp.diff(X, axis=0)), cp.sum(cp.abs(cp.diff(x)))):
        terms = StructureLowering(cp.Problem(cp.Minimize(expr))).lower().program.terms
        assert not any(isinstance(t.function, TV1D) for t in terms)
    terms = StructureLowering(cp.Problem(cp.Minimize(cp.tv(M @ x)))).lower().program.terms
    assert isinstance(terms[0].function, Norm1)
    assert not isinstance(terms[0].op, Identity | Gather | FiniteDiff)


def test_deconvolution_runs_fista_and_matches_clarabel() -> None:
    prob, x = _deconvolution(200)
    assert cvxprox.compile(prob).algorithm == "fista"
    prob.solve(solver="NABLAPROX")
    assert prob.solver_stats.extra_stats["algorithm"] == "fista"
    assert prob.status == cp.OPTIMAL
    value = prob.value
    prob.solve(solver="CLARABEL", **TIGHT)
    assert value == pytest.approx(prob.value, rel=1e-4)


def test_tv1d_with_constraints_and_their_duals() -> None:
    rng = np.random.default_rng(5)
    n = 40
    y = np.repeat(rng.standard_normal(5), 8) + 0.1 * rng.standard_normal(n)
    x, s = cp.Variable(n), cp.Variable(3)
    cons = [cp.sum(x) == 2.0, x <= 0.8, s >= x[:3] - 1.0]
    objective = cp.sum_squares(x - y) + 0.4 * cp.tv(x) + cp.sum_squares(s)
    prob = cp.Problem(cp.Minimize(objective), cons)
    prob.solve(solver="NABLAPROX", eps_abs=1e-9, eps_rel=1e-9)
    assert prob.status == cp.OPTIMAL
    value, x_value = prob.value, x.value
    duals = [np.atleast_1d(c.dual_value).copy() for c in cons]
    prob.solve(solver="CLARABEL", **TIGHT)
    assert value == pytest.approx(prob.value, rel=1e-7)
    np.testing.assert_allclose(x_value, x.value, atol=1e-5)
    np.testing.assert_allclose(duals[0], cons[0].dual_value, atol=1e-6)
    np.testing.assert_allclose(duals[2], cons[2].dual_value, atol=1e-6)
    # x <= 0.8 holds on a flat stretch of x, where TV's subgradient (and so the split of
    # the multiplier among the entries) is not unique: compare support and total.
    bound = duals[1]
    assert np.all(bound >= 0) and np.all(bound[x_value < 0.8 - 1e-4] == 0)
    assert np.any(bound > 0.1)
    assert bound.sum() == pytest.approx(cons[1].dual_value.sum(), rel=1e-6)


def test_walk_on_runs_of_equal_entries_is_linear() -> None:
    """On a run of equal entries the ties u = -lam, +lam are exact in floating point, so
    the segment ends advance through the run and a jump re-walks little of it: the
    kernel walks at most 3 N points. An ulp of round-off in a tie leaves k- or k+ behind
    and every jump re-walks the rest of the run (a count that grows with its length)."""
    rng = np.random.default_rng(8)
    for trial in range(40):
        m = int(rng.integers(2, 100))
        levels = [
            rng.standard_normal(m),
            0.1 * rng.integers(-3, 4, m),
            rng.standard_normal(m) * 10.0 ** rng.uniform(-3, 3),
            np.cumsum(rng.standard_normal(m)) + 1e3,
        ][trial % 4]
        widths = rng.integers(1, 3000, m) if trial % 8 < 4 else np.full(m, 2000)
        v = np.repeat(levels, widths)
        lam = float(10.0 ** rng.uniform(-3, 2))
        u = np.empty_like(v)
        walked = tv1d_prox(v, lam, u)
        assert walked <= 3 * v.size, (trial, walked / v.size)
        assert _certificate_violation(v, u, lam) <= 1e-12, trial


@pytest.mark.slow
def test_long_plateaus_take_linear_time() -> None:
    """On flat stretches the walk advances its segment ends on ties; without that every
    jump re-walks the plateau behind it (quadratic time). Five times the plateau length
    must cost about five times as much, not twenty-five (a ratio of two timings on the
    same machine; slow, as every timing is noisy on a shared machine)."""
    rng = np.random.default_rng(6)
    levels = rng.standard_normal(100)
    times = []
    for width in (400, 2000):
        v = np.repeat(levels, width)
        f = TV1D(v.size, 0.3)
        f.prox(v, 1.0)  # compiled
        best = math.inf
        for _ in range(3):
            start = time.perf_counter()
            u = f.prox(v, 1.0)
            best = min(best, time.perf_counter() - start)
        times.append(best)
        assert _certificate_violation(v, u, 0.3) <= 1e-12
    assert times[1] / times[0] < 15.0


def test_tv_denoising_in_a_box_keeps_structure() -> None:
    rng = np.random.default_rng(7)
    y = np.repeat(rng.standard_normal(10), 30) + 0.1 * rng.standard_normal(300)
    x = cp.Variable(300)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - y) + cp.tv(x)), [x >= -0.5, x <= 0.5])
    compiled = cvxprox.compile(prob)
    assert compiled.reduction.startswith("structure") and compiled.algorithm == "admm"
    prob.solve(solver="NABLAPROX", eps_abs=1e-7, eps_rel=1e-7)
    value = prob.value
    prob.solve(solver="CLARABEL", **TIGHT)
    assert value == pytest.approx(prob.value, rel=1e-5)
