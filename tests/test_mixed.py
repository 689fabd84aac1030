"""Mixed problems: the parts without a prox form are expanded into cone terms, every other
term keeps its prox (reductions/structure.py), and the answers match Clarabel's."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

import cvxprox

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
RNG = np.random.default_rng(11)


def _tv_norm_ball() -> cp.Problem:
    Y = RNG.standard_normal((10, 10))
    X = cp.Variable((10, 10))
    return cp.Problem(
        cp.Minimize(0.5 * cp.sum_squares(X - Y) + 0.3 * cp.tv(X)), [cp.norm(X[0]) <= 1]
    )


def _tv_soc() -> cp.Problem:
    Y = RNG.standard_normal((10, 10))
    X, t = cp.Variable((10, 10)), cp.Variable()
    return cp.Problem(
        cp.Minimize(0.5 * cp.sum_squares(X - Y) + 0.3 * cp.tv(X) + t),
        [cp.SOC(t, X[:, 1]), t <= 2],
    )


def _mpc() -> cp.Problem:
    n, m, T = 4, 2, 10
    A = np.eye(n) + 0.1 * RNG.standard_normal((n, n))
    B = RNG.standard_normal((n, m))
    x, u = cp.Variable((n, T + 1)), cp.Variable((m, T))
    cost = cp.sum_squares(x) + 0.1 * cp.sum_squares(u)
    cons = [x[:, 0] == 3 * RNG.standard_normal(n), cp.abs(u) <= 1]
    cons += [x[:, k + 1] == A @ x[:, k] + B @ u[:, k] for k in range(T)]
    return cp.Problem(cp.Minimize(cost), cons)


def _robust_lp() -> cp.Problem:
    n = 8
    x = cp.Variable(n)
    c = RNG.standard_normal(n)
    cons = [x <= 3, x >= -3]
    for i in range(5):
        P, a = 0.3 * RNG.standard_normal((3, n)), RNG.standard_normal(n)
        cons.append(cp.norm(P @ x) + a @ x <= 1 + i)
    return cp.Problem(cp.Minimize(c @ x), cons)


def _lasso_lse() -> cp.Problem:
    A, b = RNG.standard_normal((20, 8)), RNG.standard_normal(20)
    x = cp.Variable(8)
    objective = cp.sum_squares(A @ x - b) + 0.5 * cp.norm1(x) + 0.2 * cp.log_sum_exp(x)
    return cp.Problem(cp.Minimize(objective + 0.1 * cp.sum(cp.exp(x / 4))), [cp.sum(x) >= -1])


def _psd_l1() -> cp.Problem:
    G = RNG.standard_normal((5, 5))
    X = cp.Variable((5, 5))
    objective = cp.sum_squares(X - (G + G.T) / 2) + 0.1 * cp.norm1(X)
    return cp.Problem(cp.Minimize(objective), [X >> 0, X[0, 0] <= 0.3])


def _tv_power() -> cp.Problem:
    """x^1.5 <= t through CVXPY's exact canonical form: a 3-D power cone per entry."""
    y = RNG.standard_normal(30)
    x, t = cp.Variable(30), cp.Variable(30)
    cons = [cp.power(x + 2, 1.5, approx=False) <= t, cp.sum(t) <= 60]
    return cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - y) + 0.3 * cp.tv(x)), cons)


def _huber_pow3d() -> cp.Problem:
    A, b = RNG.standard_normal((20, 8)), RNG.standard_normal(20)
    x = cp.Variable(8)
    cons = [cp.PowCone3D(x[:4] + 1, 1 - x[4:], 2 + x[:4] + x[4:], [0.3, 0.4, 0.5, 0.6])]
    return cp.Problem(cp.Minimize(cp.sum(cp.huber(A @ x - b)) + 0.1 * cp.sum_squares(x)), cons)


def _l1_pow_nd() -> cp.Problem:
    A, b = RNG.standard_normal((20, 9)), RNG.standard_normal(20)
    x = cp.Variable(9)
    W = cp.reshape(x[:6], (3, 2), order="F") + 1
    alpha = np.array([[0.2, 0.5], [0.3, 0.25], [0.5, 0.25]])
    cons = [cp.PowConeND(W, 3 * x[6:8] + 2, alpha, axis=0)]
    return cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b) + 0.2 * cp.norm1(x)), cons)


def _tv_geo_mean_pnorm() -> cp.Problem:
    """geo_mean (a PowConeND in its canonical form) and pnorm(., 3) (3-D power cones)."""
    y = RNG.standard_normal(12)
    x = cp.Variable(12)
    cons = [cp.geo_mean(x[:6] + 2, approx=False) >= 2.5, cp.pnorm(x, 3, approx=False) <= 2.5]
    return cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - 2 * y) + 0.3 * cp.tv(x)), cons)


def _l1_balls() -> cp.Problem:
    A, b = RNG.standard_normal((20, 8)), RNG.standard_normal(20)
    x = cp.Variable(8)
    cons = [cp.norm1(A[:6] @ x - b[:6]) <= 0.8 * np.abs(b[:6]).sum(), cp.norm_inf(x) <= 0.4]
    return cp.Problem(cp.Minimize(cp.norm1(A @ x - b) + cp.sum_squares(x)), cons)


def _huber_pnorm_mixed_norm() -> cp.Problem:
    """pnorm(., 3) in the objective, a norm of norms (not a ball: its argument is not
    affine) in a constraint."""
    A, b = RNG.standard_normal((20, 8)), RNG.standard_normal(20)
    x = cp.Variable(8)
    objective = cp.sum(cp.huber(A @ x - b)) + cp.pnorm(x, 3, approx=False)
    grid = cp.reshape(x, (2, 4), order="F")
    return cp.Problem(cp.Minimize(objective), [cp.mixed_norm(grid, 2, 1) <= 0.5])


MODELS = {
    "tv_norm_ball": _tv_norm_ball(),
    "tv_soc": _tv_soc(),
    "mpc_abs": _mpc(),
    "robust_lp": _robust_lp(),
    "lasso_log_sum_exp": _lasso_lse(),
    "psd_l1": _psd_l1(),
    "tv_power": _tv_power(),
    "huber_pow3d": _huber_pow3d(),
    "l1_pow_nd": _l1_pow_nd(),
    "tv_geo_mean_pnorm": _tv_geo_mean_pnorm(),
    "l1_balls": _l1_balls(),
    "huber_pnorm_mixed_norm": _huber_pnorm_mixed_norm(),
}


def _flat(value: object) -> np.ndarray:
    if isinstance(value, list):
        return np.concatenate([np.ravel(v) for v in value])
    return np.ravel(np.asarray(value, dtype=np.float64))


@pytest.mark.parametrize("structure", ["auto", "always"])
@pytest.mark.parametrize("name", MODELS)
def test_mixed_model_matches_clarabel(name: str, structure: str) -> None:
    prob = MODELS[name]
    reduction = cvxprox.compile(prob, structure=structure).reduction
    # The lowering is used, never CVXPY's cone chain for the whole problem: its terms, or
    # under "auto" its assembled view where the structure does not pay off (a QP, an LP).
    kept = reduction.startswith("structure kept")
    assert kept or (structure == "auto" and "built from the structured lowering" in reduction)
    prob.solve(solver="CLARABEL", **TIGHT)
    value = prob.value
    duals = [_flat(c.dual_value) for c in prob.constraints]
    primal = [v.value.copy() for v in prob.variables()]
    prob.solve(solver="NABLAPROX", structure=structure, eps_abs=1e-9, eps_rel=1e-9)
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(value, rel=1e-6, abs=1e-6)
    for var, ref in zip(prob.variables(), primal, strict=True):
        np.testing.assert_allclose(var.value, ref, atol=1e-4 * max(1.0, np.abs(ref).max()))
    for con, ref in zip(prob.constraints, duals, strict=True):
        scale = max(1.0, np.abs(ref).max())
        np.testing.assert_allclose(_flat(con.dual_value), ref, atol=1e-4 * scale)


def test_compile_shows_kept_and_expanded_terms() -> None:
    compiled = cvxprox.compile(MODELS["robust_lp"], structure="always")
    assert compiled.reduction.startswith("structure kept; expanded into cones: constraint")
    text = repr(compiled)
    assert "soc" in text and "expanded: constraint" in text
    compiled = cvxprox.compile(MODELS["lasso_log_sum_exp"], structure="always")
    labels = [t.label for t in compiled.program.terms]
    assert labels[:2] == ["sumsquares", "norm1"]
    assert "expanded: log_sum_exp" in labels and "expanded: exp" in labels
    assert compiled.algorithm in ("admm", "pdhg")


def test_compile_shows_power_cones_and_balls_kept() -> None:
    """Power-cone constraints are cone terms of the structured program, parts whose
    canonical forms hold power cones are expanded, norm balls are ball terms; under
    "auto" a model whose structure does not pay off is built from the same lowering."""
    compiled = cvxprox.compile(MODELS["huber_pow3d"])
    assert compiled.reduction == "structure kept: every term has a prox"
    assert "pow3d" in [t.function.describe() for t in compiled.program.terms]
    compiled = cvxprox.compile(MODELS["tv_power"])
    assert compiled.reduction.startswith("structure kept; expanded into cones: constraint")
    assert "(of Power)" in compiled.reduction
    terms = compiled.program.terms
    assert [t.label for t in terms[:2]] == ["sumsquares", "tv1d"]
    assert "pow3d" in [t.function.describe() for t in terms]
    compiled = cvxprox.compile(MODELS["tv_geo_mean_pnorm"])
    assert "(of GeoMean)" in compiled.reduction and "(of Pnorm)" in compiled.reduction
    compiled = cvxprox.compile(MODELS["huber_pnorm_mixed_norm"])
    assert "expanded into cones: Pnorm" in compiled.reduction
    for name in ("l1_pow_nd", "l1_balls"):
        assert cvxprox.compile(MODELS[name]).reduction.endswith(
            "built from the structured lowering"
        )
        always = cvxprox.compile(MODELS[name], structure="always")
        assert always.reduction == "structure kept: every term has a prox"
    labels = [t.function.describe() for t in always.program.terms]
    assert any(label.startswith("l1_ball") for label in labels)
    assert any(label.startswith("linf_ball") for label in labels)


def test_concave_pnorm_in_the_objective_is_expanded() -> None:
    """harmonic_mean is a pnorm with p = -1 (concave): maximized, it is expanded, not
    refused as a convex norm with a negative weight."""
    y = RNG.standard_normal(9)
    x = cp.Variable(9)
    objective = 0.5 * cp.sum_squares(x - y) + 0.3 * cp.tv(x) - 0.2 * cp.harmonic_mean(x + 3)
    prob = cp.Problem(cp.Minimize(objective), [x >= -2])
    reduction = cvxprox.compile(prob).reduction
    assert reduction.startswith("structure kept; expanded into cones: PnormApprox")
    prob.solve(solver="CLARABEL", **TIGHT)
    value = prob.value
    prob.solve(solver="NABLAPROX", eps_abs=1e-9, eps_rel=1e-9)
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(value, rel=1e-7)


def test_parameters_refresh_an_expanded_problem() -> None:
    """An expanded part's canonical form is computed once; new parameter values re-lower
    it (same auxiliary variables) and the answer follows."""
    A, b0 = RNG.standard_normal((15, 6)), RNG.standard_normal(15)
    b = cp.Parameter(15, value=b0)
    x = cp.Variable(6)
    prob = cp.Problem(
        cp.Minimize(cp.sum_squares(A @ x - b) + cp.norm1(x) + cp.log_sum_exp(x)),
        [cp.norm(x, 3) <= 2],
    )
    for shift in (0.0, 1.5):
        b.value = b0 + shift
        prob.solve(solver="NABLAPROX", structure="always", eps_abs=1e-9, eps_rel=1e-9)
        value = prob.value
        prob.solve(solver="CLARABEL", **TIGHT)
        assert value == pytest.approx(prob.value, rel=1e-6)


def test_never_keeps_the_cone_chain() -> None:
    reduction = cvxprox.compile(MODELS["tv_soc"], structure="never").reduction
    assert reduction == "cones: option structure='never'"


def test_torch_layer_differentiates_through_expanded_terms() -> None:
    """abs(z) <= 0.2 expands into nonnegative-cone rows over auxiliary variables; the
    structured torch route differentiates through them, as the cone route does."""
    torch = pytest.importorskip("torch")
    from cvxprox.torch import CvxproxLayer  # noqa: PLC0415

    A = RNG.standard_normal((15, 6))
    b, lam = cp.Parameter(15), cp.Parameter(nonneg=True)
    z = cp.Variable(6)
    objective = cp.sum_squares(A @ z - b) + lam * cp.norm1(z) + cp.sum_squares(z)
    prob = cp.Problem(cp.Minimize(objective), [cp.abs(z[:3]) <= 0.2])
    b_value = RNG.standard_normal(15)
    results = []
    for structure in ("always", "never"):
        args = {"eps_abs": 1e-10, "eps_rel": 1e-10}
        layer = CvxproxLayer(prob, [b, lam], [z], structure=structure, solver_args=args)
        bt = torch.tensor(b_value, requires_grad=True)
        lt = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
        (out,) = layer(bt, lt)
        out.sum().backward()
        assert layer.info["route"].startswith("structured" if structure == "always" else "cones")
        results.append((out.detach().numpy(), bt.grad.numpy(), float(lt.grad)))
    (x1, gb1, gl1), (x2, gb2, gl2) = results
    np.testing.assert_allclose(x1, x2, atol=1e-8)
    np.testing.assert_allclose(gb1, gb2, atol=1e-6)
    assert gl1 == pytest.approx(gl2, abs=1e-6)


def test_torch_layer_differentiates_through_a_power_cone() -> None:
    """A PowCone3D term is differentiated on the structured torch route (its projection's
    Jacobian), batched (the cones of the batch's elements concatenated), as on the cone
    route."""
    torch = pytest.importorskip("torch")
    from cvxprox.torch import CvxproxLayer  # noqa: PLC0415

    A = RNG.standard_normal((15, 6))
    b = cp.Parameter(15)
    x = cp.Variable(6)
    power = cp.PowCone3D(x[:3] + 1, 1 - x[3:], 2 + x[:3] + x[3:], 0.4)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b) + 0.3 * cp.norm1(x)), [power])
    b_value = RNG.standard_normal((2, 15))
    b.value = b_value[0]
    prob.solve(solver="CLARABEL", **TIGHT)
    assert np.max(np.abs(power.dual_value)) > 1e-2  # the cone is active
    results = []
    for structure in ("always", "never"):
        args = {"eps_abs": 1e-10, "eps_rel": 1e-10}
        layer = CvxproxLayer(prob, [b], [x], structure=structure, solver_args=args)
        bt = torch.tensor(b_value, requires_grad=True)
        (out,) = layer(bt)
        (out * torch.arange(6.0, dtype=torch.float64)).sum().backward()
        assert layer.info["route"].startswith("structured" if structure == "always" else "cones")
        results.append((out.detach().numpy(), bt.grad.numpy()))
    (x1, g1), (x2, g2) = results
    np.testing.assert_allclose(x1, x2, atol=1e-8)
    np.testing.assert_allclose(g1, g2, atol=1e-6)
