"""The structure-preserving reduction: affine lowering, atom recognition, fallbacks."""

from __future__ import annotations

import re

import cvxpy as cp
import numpy as np
import pytest

import cvxprox
from cvxprox.atoms import conv2d, fourier_sample
from cvxprox.operators.linops import Conv2D, Convolve1D, FiniteDiff, FourierSample
from cvxprox.reductions.affine import AffineLowering, NotStructured, VariableLayout
from cvxprox.reductions.structure import StructureLowering

RNG = np.random.default_rng(0)
x = cp.Variable(6, name="x")
X = cp.Variable((4, 5), name="X")
A = RNG.standard_normal((3, 6))
K = RNG.standard_normal((3, 2))
MASK = RNG.random((4, 5)) < 0.5
MASK[0, 0] = True
P = cp.Parameter((3, 6), value=RNG.standard_normal((3, 6)))

AFFINE = {
    "x": x,
    "2x+1": 2 * x + 1,
    "-x": -x,
    "A@x": A @ x,
    "P@x": P @ x,
    "w*x": cp.multiply(np.arange(6.0), x),
    "x/3": x / 3,
    "slice": x[1:5:2],
    "fancy index": x[[0, 3, 3, 5]],
    "diff": cp.diff(x),
    "diff2": cp.diff(x, 2),
    "Xdiff0": cp.diff(X, axis=0),
    "Xdiff1": cp.diff(X, axis=1),
    "transpose": X.T,
    "reshape C": cp.reshape(X, (5, 4), order="C"),
    "vec": cp.vec(X, order="F"),
    "hstack": cp.hstack([x, x[:2], np.ones(2)]),
    "vstack": cp.vstack([X, X[1:2, :]]),
    "sum": cp.sum(x),
    "sum axis": cp.sum(X, axis=0),
    "cumsum": cp.cumsum(x),
    "convolve": cp.convolve(np.array([1.0, -2.0, 0.5]), x),
    "conv2d full": conv2d(K, X),
    "conv2d same": conv2d(K, X, mode="same"),
    "conv2d circ": conv2d(K, X, mode="circular"),
    "fourier": fourier_sample(X, MASK),
    "X@B": X @ RNG.standard_normal((5, 2)),
    "trace": cp.trace(X[:, :4]),
    "scalar+vec": cp.sum(x) + x,
}


def _set_random() -> np.ndarray:
    layout = VariableLayout([x, X])
    values = RNG.standard_normal(layout.n)
    for var, val in layout.split(values).items():
        next(v for v in (x, X) if v.id == var).value = val
    return values


@pytest.mark.parametrize("name", list(AFFINE))
def test_affine_lowering_matches_cvxpy(name: str) -> None:
    expr = AFFINE[name]
    layout = VariableLayout([x, X])
    part = AffineLowering(layout).lower(expr)
    values = _set_random()
    expected = np.asarray(expr.value, dtype=float).flatten(order="F")
    np.testing.assert_allclose(part.evaluate(values), expected, rtol=1e-10, atol=1e-10)
    if part.op is not None:
        y = RNG.standard_normal(part.size)
        v = RNG.standard_normal(layout.n)
        assert np.isclose(part.op.matvec(v) @ y, v @ part.op.rmatvec(y), rtol=1e-10)


def test_operators_keep_their_structure() -> None:
    layout = VariableLayout([X])
    lower = AffineLowering(layout).lower
    assert isinstance(lower(conv2d(K, X, mode="circular")).op, Conv2D)
    assert isinstance(lower(fourier_sample(X, MASK)).op, FourierSample)
    assert isinstance(lower(cp.diff(X, axis=1)).op, FiniteDiff)
    y = cp.Variable(50)
    assert isinstance(
        AffineLowering(VariableLayout([y])).lower(cp.convolve(np.ones(3), y)).op, Convolve1D
    )


OBJECTIVES = {
    "norm1": cp.norm1(A @ x - 1),
    "abs sum weighted": cp.sum(cp.multiply(np.arange(1.0, 7.0), cp.abs(x))),
    "sum_squares": cp.sum_squares(A @ x) + 3 * cp.sum(x),
    "quad_over_lin": cp.quad_over_lin(x, 4.0),
    "square sum": cp.sum(cp.square(x - 2)),
    "norm2": 2 * cp.norm(x, 2),
    "fro": cp.norm(X, "fro"),
    "norm_inf": cp.norm_inf(x),
    "huber": cp.sum(cp.huber(x, 0.5)),
    "pos": cp.sum(cp.pos(x)) + np.arange(6.0) @ cp.maximum(x, 1),
    "hinge": cp.sum(cp.pos(1 - cp.multiply(np.sign(A[0]), x))),
    "group cols": cp.sum(cp.norm(X, 2, axis=0)),
    "group rows": cp.sum(cp.norm(X, 2, axis=1)),
    "mixed_norm": cp.mixed_norm(X, 2, 1),
    "tv 1d": cp.tv(x),
    "tv 2d": cp.tv(X),
    "logistic": cp.sum(cp.logistic(A @ x)),
    "neg entropy": -cp.sum(cp.entr(x + 3)),
    "kl_div": cp.sum(cp.kl_div(x + 3, 2.0)),
    "param scale": cp.Parameter(nonneg=True, value=2.5) * cp.norm1(x),
    "sum of many": cp.norm1(x) + cp.sum_squares(X) / 2 - 4 + cp.tv(X) * 0.1,
}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objective_terms_reproduce_the_objective(name: str) -> None:
    expr = OBJECTIVES[name]
    prob = cp.Problem(cp.Minimize(expr))
    lowering = StructureLowering(prob)
    lowered = lowering.lower()
    values = RNG.standard_normal(lowered.layout.n)
    if name in ("neg entropy", "kl_div"):
        values = np.abs(values)
    for var_id, val in lowered.layout.split(values).items():
        next(v for v in prob.variables() if v.id == var_id).value = val
    assert lowered.program.objective(values) == pytest.approx(prob.objective.value, rel=1e-10)
    assert all(not t.function.is_indicator for t in lowered.program.terms)


def test_constraint_terms_and_attributes() -> None:
    u = cp.Variable(4, nonneg=True)
    v = cp.Variable(3, bounds=[-1, np.array([1.0, np.inf, 2.0])])
    cons = [A[:2, :4] @ u == 1, u[:3] <= v, cp.sum(v) >= -2]
    prob = cp.Problem(cp.Minimize(cp.norm1(u) + cp.norm1(v)), cons)
    lowered = StructureLowering(prob).lower()
    labels = [t.label for t in lowered.program.terms]
    assert sum("constraint" in label for label in labels) == 3
    # The attributes are the program's bounds, not terms.
    assert len(labels) == 5
    np.testing.assert_array_equal(lowered.program.l, [0, 0, 0, 0, -1, -1, -1])
    np.testing.assert_array_equal(lowered.program.u, [np.inf] * 4 + [1.0, np.inf, 2.0])
    # Feasible point: every indicator term is satisfied.
    uval, vval = np.array([0.2, 0.1, 0.0, 0.3]), np.array([0.5, 0.5, 0.5])
    uval = np.linalg.lstsq(A[:2, :4], np.ones(2), rcond=None)[0]
    for term in lowered.program.terms:
        assert term.size == term.op.shape[0]
    assert [c.term for c in lowered.constraints] == [2, 3, 4]
    del uval, vval


@pytest.mark.parametrize(
    "prob, reason",
    [
        (cp.Problem(cp.Minimize(cp.trace(cp.Variable((2, 2), PSD=True)))), "PSD"),
        (cp.Problem(cp.Minimize(cp.norm1(x)), [cp.Variable((2, 2), symmetric=True) >> 0]), "sym"),
    ],
)
def test_unrecognized_parts_are_named(prob: cp.Problem, reason: str) -> None:
    with pytest.raises(NotStructured, match=reason):
        StructureLowering(prob).lower()


@pytest.mark.parametrize(
    "prob, expanded",
    [
        (cp.Problem(cp.Minimize(-cp.geo_mean(x + 10))), "GeoMean"),
        (cp.Problem(cp.Minimize(cp.norm1(x)), [cp.norm(x) <= cp.sum(x)]), "of Pnorm"),
        (cp.Problem(cp.Minimize(cp.norm(x, 3))), "p=3"),
        (cp.Problem(cp.Minimize(cp.norm1(x) + cp.log_sum_exp(x))), "log_sum_exp"),
    ],
)
def test_parts_without_a_prox_are_expanded(prob: cp.Problem, expanded: str) -> None:
    """Only the part without a prox form becomes cone terms (labelled as expanded, over
    auxiliary variables appended to x); a norm1 term stays a prox term."""
    lowered = StructureLowering(prob).lower()
    assert len(lowered.expanded) == 1 and expanded in lowered.expanded[0]
    labels = [t.label for t in lowered.program.terms]
    assert any(label.startswith("expanded") for label in labels)
    assert lowered.program.n > x.size
    if "norm1" in str(prob.objective):
        assert "norm1" in labels


def test_expansions_name_atoms_and_keep_the_other_terms() -> None:
    # An expanded constraint is reported by its atoms, not by printing its data; the
    # objective's terms keep their prox form.
    big = np.arange(6000.0).reshape(1000, 6)
    prob = cp.Problem(
        cp.Minimize(cp.sum_squares(big @ x) + cp.norm1(x)),
        [cp.abs(x) <= 1, cp.sum(big @ x) + cp.norm(x) <= 5],
    )
    lowered = StructureLowering(prob).lower()
    assert [t.label for t in lowered.program.terms[:2]] == ["sumsquares", "norm1"]
    assert re.fullmatch(r"constraint \d+ \(of abs\)", lowered.expanded[0])
    assert "Pnorm" in lowered.expanded[1] and "5999" not in lowered.expanded[1]


def test_auto_keeps_structure_where_it_pays_off() -> None:
    rng = np.random.default_rng(2)
    M, y = rng.standard_normal((30, 10)), rng.standard_normal(30)
    w = cp.Variable(10)
    lasso = cp.Problem(cp.Minimize(cp.sum_squares(M @ w - y) + cp.norm1(w)))
    l1_fit = cp.Problem(cp.Minimize(cp.norm1(M @ w - y)), [w >= 0])
    huber = cp.Problem(cp.Minimize(cp.sum(cp.huber(M @ w - y))), [w >= 0])
    assert cvxprox.compile(lasso).algorithm == "fista"
    assert cvxprox.compile(l1_fit).reduction.startswith("cones")
    assert cvxprox.compile(l1_fit, structure="always").reduction.startswith("structure")
    assert cvxprox.compile(huber).reduction.startswith("structure")
    assert cvxprox.compile(huber, structure="never").reduction.startswith("cones")


def test_structure_option_is_fixed_at_the_first_solve() -> None:
    rng = np.random.default_rng(2)
    w = cp.Variable(5)
    prob = cp.Problem(cp.Minimize(cp.sum(cp.huber(rng.standard_normal((8, 5)) @ w - 1))))
    prob.solve(solver="NABLAPROX")
    with pytest.raises(ValueError, match="structure"):
        prob.solve(solver="NABLAPROX", structure="never")
    with pytest.raises(ValueError, match="structure"):
        cp.Problem(cp.Minimize(cp.norm1(w))).solve(solver="NABLAPROX", structure="sometimes")


def test_compile_reports_terms_and_algorithm() -> None:
    y = RNG.standard_normal((8, 8))
    Z = cp.Variable((8, 8))
    prob = cp.Problem(cp.Minimize(cp.sum_squares(Z - y) + 0.1 * cp.tv(Z)))
    compiled = cvxprox.compile(prob)
    text = repr(compiled)
    assert "structure kept" in text
    assert "group_l2" in text and "sumsquares" in text.lower()
    assert compiled.algorithm in ("admm", "pdhg", "fista", "dual_fista")
    lp = cp.Problem(cp.Minimize(cp.sum(x)), [x >= 0])
    assert "cones" in repr(cvxprox.compile(lp))
    mixed = cp.Problem(cp.Maximize(cp.geo_mean(x) - cp.norm1(x)), [x <= 1])
    assert "expanded into cones: GeoMean" in cvxprox.compile(mixed).reduction
    assert "no norm" in cvxprox.compile(cp.Problem(cp.Maximize(cp.geo_mean(x)), [x <= 1])).reduction


@pytest.mark.parametrize("p", [1, 2, "inf"])
def test_norm_ball_constraint_and_its_dual(p: object) -> None:
    rng = np.random.default_rng(3)
    M, y = rng.standard_normal((20, 8)), rng.standard_normal(20)
    w = cp.Variable(8)
    ball = cp.norm(w - 0.1, p) <= 0.3
    prob = cp.Problem(cp.Minimize(cp.norm1(M @ w - y)), [ball])
    assert "norm <= 0.3" in repr(cvxprox.compile(prob, structure="always"))
    prob.solve(solver="NABLAPROX", structure="always", eps_abs=1e-8, eps_rel=1e-8)
    value, dual, w_value = prob.value, ball.dual_value, w.value
    prob.solve(solver="CLARABEL")
    assert value == pytest.approx(prob.value, rel=1e-5)
    assert dual == pytest.approx(ball.dual_value, rel=1e-3, abs=1e-5)
    np.testing.assert_allclose(w_value, w.value, atol=1e-4)


def _huber_model(rng: np.random.Generator) -> tuple[cp.Problem, cp.Variable, cp.Parameter]:
    M = rng.standard_normal((40, 12))
    target = cp.Parameter(40, value=rng.standard_normal(40))
    w = cp.Variable(12)
    cons = [cp.sum(w) == 1, w <= 0.4, M[:3] @ w >= -2]
    prob = cp.Problem(cp.Minimize(cp.sum(cp.huber(M @ w - target, 0.5)) + 0.1 * cp.tv(w)), cons)
    return prob, w, target


def test_structured_solution_and_duals_match_clarabel() -> None:
    prob, w, _ = _huber_model(np.random.default_rng(5))
    prob.solve(solver="NABLAPROX", eps_abs=1e-8, eps_rel=1e-8)
    assert prob.solver_stats.extra_stats["algorithm"] in ("admm", "pdhg", "fista", "dual_fista")
    value, w_value = prob.value, w.value
    duals = [np.atleast_1d(c.dual_value).copy() for c in prob.constraints]
    prob.solve(solver="CLARABEL")
    assert value == pytest.approx(prob.value, rel=1e-6)
    np.testing.assert_allclose(w_value, w.value, atol=1e-5)
    for ours, con in zip(duals, prob.constraints, strict=True):
        np.testing.assert_allclose(ours, np.atleast_1d(con.dual_value), atol=1e-4)


def test_structured_parameter_resolve_skips_the_chain_and_warm_starts() -> None:
    rng = np.random.default_rng(6)
    prob, w, target = _huber_model(rng)
    prob.solve(solver="NABLAPROX")
    cold = prob.solver_stats.num_iters
    target.value = target.value + 1e-3 * rng.standard_normal(40)
    chain = prob._cache.solving_chain
    prob.solve(solver="NABLAPROX", warm_start=True)
    assert prob._cache.solving_chain is chain
    warm = prob.solver_stats.num_iters
    value = prob.value
    prob.solve(solver="CLARABEL")
    assert value == pytest.approx(prob.value, rel=1e-5)
    assert warm < cold


def test_structured_infeasible_and_bad_data() -> None:
    w = cp.Variable(4)
    infeasible = cp.Problem(cp.Minimize(cp.sum(cp.huber(w))), [w >= 1, cp.sum(w) <= 2])
    infeasible.solve(solver="NABLAPROX")
    assert infeasible.status == cp.INFEASIBLE
    p = cp.Parameter(4)
    p.value = np.ones(4)
    bad = cp.Problem(cp.Minimize(cp.sum(cp.huber(w - p))))
    p._value = np.array([1.0, np.nan, 0.0, 0.0])  # CVXPY's setter refuses NaN
    with pytest.raises(ValueError, match="NaN"):
        bad.solve(solver="NABLAPROX")
    with pytest.raises(ValueError, match="unknown NABLAPROX option"):
        cp.Problem(cp.Minimize(cp.sum(cp.huber(w)))).solve(solver="NABLAPROX", rhoo=1)


def test_maximize_concave_entropy_structured() -> None:
    x = cp.Variable(6)
    prob = cp.Problem(cp.Maximize(cp.sum(cp.entr(x)) - cp.norm(x, 2)), [cp.sum(x) == 2])
    assert cvxprox.compile(prob).reduction.startswith("structure")
    prob.solve(solver="NABLAPROX", eps_abs=1e-8, eps_rel=1e-8)
    value = prob.value
    prob.solve(solver="CLARABEL")
    assert value == pytest.approx(prob.value, rel=1e-6)


@pytest.mark.parametrize(
    ("build", "direct"),
    [
        (lambda X, noisy: cp.tv(X), True),
        (lambda X, noisy: cp.tv(2 * X - noisy), True),
        (lambda X, noisy: cp.tv(X[1:, 2:]), True),
        (lambda X, noisy: cp.tv(X.T), True),
        (lambda X, noisy: cp.tv(X[:2, :2]), True),
        (lambda X, noisy: cp.tv(X, X - noisy), False),
    ],
    ids=["image", "affine", "slice", "transpose", "2x2", "two images"],
)
def test_tv_stack_lowers_to_the_tv_operator(
    build: object, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cp.tv``'s stack of differences of one image lowers to ``TVDifferences`` (its
    matrix ``tv_matrix``) applied to the image, the same map as the generic selections
    (two images take those)."""
    from cvxprox.operators.linops import tv_matrix
    from cvxprox.reductions import affine

    rng = np.random.default_rng(0)
    X = cp.Variable((7, 9))
    noisy = rng.random((7, 9))
    stack = build(X, noisy).args[0].args[0]
    lowering = AffineLowering(VariableLayout([X]))
    assert (lowering._tv_differences(stack) is not None) == direct
    fast = lowering.lower(stack)
    monkeypatch.setattr(affine.AffineLowering, "_tv_differences", lambda self, expr: None)
    generic = lowering.lower(stack)
    for _ in range(3):
        x = rng.standard_normal(X.size)
        assert np.allclose(fast.evaluate(x), generic.evaluate(x), rtol=0, atol=1e-12)
    image = rng.standard_normal((3, 4))
    ahead = [image[:-1, 1:] - image[:-1, :-1], image[1:, :-1] - image[:-1, :-1]]
    interleaved = np.stack([d.ravel(order="F") for d in ahead]).ravel(order="F")
    assert np.array_equal(tv_matrix(3, 4) @ image.ravel(order="F"), interleaved)
    with pytest.raises(ValueError, match="at least 2 x 2"):
        tv_matrix(1, 4)
