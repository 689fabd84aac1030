"""Tests of cvxprox.diff: prox Jacobians against finite differences of the prox map, and
the adjoint against finite differences of the solution map (solved by Clarabel)."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp

from cvxprox.diff import ImplicitAdjoint, ResidualMap, prox_jacobian, prox_map
from cvxprox.functions.cones import (
    ExpCone,
    NonnegCone,
    PowCone3D,
    PSDCone,
    SecondOrderCone,
    ZeroCone,
)
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
    Quadratic,
    Simplex,
    SumSquares,
)
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import Program, Term
from cvxprox.operators.linops import Identity, MatrixOp
from cvxprox.solvers.select import solve_program

# Clarabel reaches 1e-12 on the cone programs; 1e-10 on the group-norm programs.
CLARABEL_CONES = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12}
CLARABEL_NORMS = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}


def _finite_difference_jacobian(p, v: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of p at v, column by column."""
    columns = []
    for j in range(v.size):
        e = np.zeros(v.size)
        e[j] = h
        columns.append((p(v + e) - p(v - e)) / (2 * h))
    return np.column_stack(columns)


CONES = [
    ZeroCone(4),
    NonnegCone(6),
    SecondOrderCone([3, 4]),
    ExpCone(2),
    PowCone3D([0.3, 0.7]),
    PSDCone([3]),
]


@pytest.mark.parametrize("cone", CONES, ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("seed", range(3))
def test_cone_jacobian_matches_finite_differences(cone, seed):
    v = np.random.default_rng(seed).standard_normal(cone.dim)
    jac = prox_jacobian(cone, v)
    expected = _finite_difference_jacobian(lambda w: prox_map(cone, w), v)
    np.testing.assert_allclose(jac.D.toarray(), expected, atol=1e-5)
    assert jac.structured == isinstance(cone, (ZeroCone, NonnegCone))


def _functions(rng: np.random.Generator) -> list:
    m = 8
    w = rng.uniform(0.3, 1.0, m)
    return [
        Norm1(m, weight=w),
        SumSquares(m, weight=w),
        Huber(m, M=0.5, weight=w),
        Pos(m, weight=w),
        ZeroCone(m),
        NonnegCone(m),
        GroupL2(m, 2, weight=rng.uniform(0.5, 1.5, m // 2)),
        Norm2(m, weight=1.5),
    ]


@pytest.mark.parametrize("index", range(8))
@pytest.mark.parametrize("seed", range(3))
def test_prox_jacobian_matches_finite_differences(index, seed):
    rng = np.random.default_rng(seed)
    function = _functions(rng)[index]
    v = 2.0 * rng.standard_normal(function.size)
    jac = prox_jacobian(function, v)
    D = jac.D.toarray()
    np.testing.assert_allclose(
        D, _finite_difference_jacobian(lambda w: prox_map(function, w), v), atol=1e-6
    )
    # hard rows: D = 0; soft rows: D = (I + H)^{-1}; the others: D = I.
    assert jac.structured
    rebuilt = np.eye(v.size)
    rebuilt[jac.hard] = 0.0
    H = jac.H.toarray() if sp.issparse(jac.H) else np.diag(jac.H)
    rebuilt[np.ix_(jac.soft, jac.soft)] = np.linalg.inv(np.eye(jac.soft.size) + H)
    np.testing.assert_allclose(D, rebuilt, atol=1e-12)


@pytest.mark.parametrize("index", [0, 1, 2, 3, 6, 7])
def test_weight_derivative_matches_finite_differences(index):
    rng = np.random.default_rng(5)
    function = _functions(rng)[index]
    v = 2.0 * rng.standard_normal(function.size)
    r = rng.standard_normal(function.size)
    scalar = np.ndim(function.weight) == 0
    weights = np.atleast_1d(np.asarray(function.weight, dtype=np.float64)).copy()

    def loss(w: np.ndarray) -> float:
        function.weight = float(w[0]) if scalar else w
        return float(r @ prox_map(function, v))

    expected = []
    for k in range(weights.size):
        step = np.zeros(weights.size)
        step[k] = 1e-6
        expected.append((loss(weights + step) - loss(weights - step)) / 2e-6)
    loss(weights)
    got = prox_jacobian(function, v).weight_gradient(r)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def _more_functions(rng: np.random.Generator) -> list:
    """The functions whose D is general (not diagonal) or whose prox solves an equation."""
    m = 8
    w = rng.uniform(0.3, 2.0, m)
    Q = rng.standard_normal((m, m))
    return [
        NormInf(m, weight=1.5),
        TV1D(m, weight=0.6),
        Logistic(m, weight=w),
        NegEntropy(m, weight=w),
        KLDiv(m, c=rng.uniform(0.5, 2.0, m), weight=w),
        Quadratic(Q @ Q.T, weight=0.7),
        Box(-0.5, np.linspace(0.0, 2.0, m)),
        LinfBall(m, 1.0),
        L1Ball(m, 2.0),
        L2Ball(m, 1.5),
        Simplex(m, 4.0),
        BlockSum([TV1D(3, weight=0.3), TV1D(5, weight=0.8)]),
        BlockSum([NormInf(4, weight=0.5), NormInf(4, weight=1.0)]),
        BlockSum([Norm1(4, weight=w[4:]), Norm1(4, weight=w[:4])]),
    ]


#: Functions whose D is a projection onto a subspace not spanned by coordinates, at the
#: points of the test below (a segment of TV, several clipped entries of norm_inf, ...):
#: its null space has hard directions.
_DIRECTIONS = (NormInf, TV1D, L1Ball, Simplex, L2Ball)


@pytest.mark.parametrize("index", range(14))
@pytest.mark.parametrize("seed", range(3))
def test_more_prox_jacobians_match_finite_differences(index, seed):
    """D against central differences of the prox, symmetric with its spectrum in [0, 1],
    and its hard/soft/flat structure."""
    rng = np.random.default_rng(seed)
    function = _more_functions(rng)[index]
    v = 2.0 * rng.standard_normal(function.size)
    jac = prox_jacobian(function, v)
    D = jac.D.toarray()
    np.testing.assert_allclose(
        D, _finite_difference_jacobian(lambda u: prox_map(function, u), v), atol=1e-6
    )
    np.testing.assert_array_equal(D, D.T)
    spectrum = np.linalg.eigvalsh(D)
    assert spectrum.min() >= -1e-12 and spectrum.max() <= 1.0 + 1e-12
    if isinstance(function, _DIRECTIONS) and seed == 0:
        assert jac.directions.shape[0] and np.count_nonzero(D - np.diag(np.diag(D)))
    assert jac.structured
    if jac.structured:
        # hard rows: D = 0; soft rows: D = (I + H)^{-1}; hard directions E: D E' = 0; the
        # rest: D = I.
        rebuilt = np.eye(v.size)
        rebuilt[jac.hard] = 0.0
        H = jac.H.toarray() if sp.issparse(jac.H) else np.diag(jac.H)
        rebuilt[np.ix_(jac.soft, jac.soft)] = np.linalg.inv(np.eye(jac.soft.size) + H)
        if jac.directions is not None:
            E = jac.directions.toarray()
            rebuilt -= E.T @ np.linalg.solve(E @ E.T, E)
        np.testing.assert_allclose(D, rebuilt, atol=1e-12)


def test_tv1d_jacobian_averages_over_the_segments_of_the_prox():
    """D = 11'/k on each run of k equal entries of p (Clarabel's prox as the reference)."""
    v = np.array([0.0, 0.2, -0.1, 3.0, 3.3, 2.9, 3.1, -1.0, -1.2, 0.5])
    p = prox_map(TV1D(v.size, weight=0.3), v)
    u = cp.Variable(v.size)
    objective = 0.5 * cp.sum_squares(u - v) + 0.3 * cp.norm1(cp.diff(u))
    cp.Problem(cp.Minimize(objective)).solve(solver=cp.CLARABEL, **CLARABEL_CONES)
    np.testing.assert_allclose(p, u.value, atol=1e-8)
    D = prox_jacobian(TV1D(v.size, weight=0.3), v).D.toarray()
    segments = [[0, 1, 2], [3, 4, 5, 6], [7, 8], [9]]
    expected = np.zeros((v.size, v.size))
    for seg in segments:
        expected[np.ix_(seg, seg)] = 1.0 / len(seg)
    np.testing.assert_allclose(D, expected, atol=1e-15)


def _weight_setters(function) -> list:
    """(get, set) of each weight of a function (of each block of a BlockSum)."""
    parts = function.functions if isinstance(function, BlockSum) else [function]
    out = []
    for part in parts:
        if np.ndim(part.weight) == 0:
            out.append((part, None))
        else:
            out.extend((part, k) for k in range(part.weight.size))
    return out


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4, 5, 11, 12, 13])
def test_more_weight_derivatives_match_finite_differences(index):
    rng = np.random.default_rng(6)
    function = _more_functions(rng)[index]
    v = 2.0 * rng.standard_normal(function.size)
    r = rng.standard_normal(function.size)
    expected = []
    for part, k in _weight_setters(function):
        base = part.weight
        values = []
        for step in (1e-6, -1e-6):
            if k is None:
                part.weight = base + step
            else:
                part.weight = base.copy()
                part.weight[k] += step
            values.append(float(r @ prox_map(function, v)))
        part.weight = base
        expected.append((values[0] - values[1]) / 2e-6)
    got = prox_jacobian(function, v).weight_gradient(r)
    np.testing.assert_allclose(got, expected, atol=1e-6)


# -- the adjoint against finite differences of the solution map ------------------------


def _cone_program(rng: np.random.Generator, soc: bool) -> Program:
    """min c'x + 1/2 x'Px s.t. A x - b in {0}^1 x R_+^3 (x SOC(3)), strictly feasible."""
    n = 4
    cones = [ZeroCone(1), NonnegCone(3)] + ([SecondOrderCone([3])] if soc else [])
    m = sum(cone.dim for cone in cones)
    A = rng.standard_normal((m, n))
    slack = np.concatenate([[0.0], rng.uniform(0.1, 1.0, 3)] + ([[2.0, 0.3, -0.4]] if soc else []))
    b = A @ rng.standard_normal(n) - slack
    M = rng.standard_normal((n, n))
    return Program.from_rows(
        5.0 * rng.standard_normal(n),
        sp.csc_array(A),
        b,
        cones,
        sp.csc_array(M.T @ M + 0.1 * np.eye(n)),
    )


def _clarabel_cone_x(c, P, A, b, soc: bool) -> np.ndarray:
    x = cp.Variable(c.size)
    r = A @ x - b
    constraints = [r[:1] == 0, r[1:4] >= 0] + ([cp.SOC(r[4], r[5:7])] if soc else [])
    objective = c @ x + 0.5 * cp.quad_form(x, cp.psd_wrap(P))
    cp.Problem(cp.Minimize(objective), constraints).solve(solver=cp.CLARABEL, **CLARABEL_CONES)
    return x.value


def _tight(program):
    return solve_program(program, SolverOptions.from_kwargs({"eps_abs": 1e-11, "eps_rel": 1e-11}))


@pytest.mark.parametrize(
    ("soc", "method"), [(False, "reduced"), (False, "lu"), (True, "lu"), (True, "lsmr")]
)
def test_cone_program_gradient_matches_finite_differences(soc, method):
    rng = np.random.default_rng(1)
    original = _cone_program(rng, soc)
    program = original.assemble()
    A, P = program.A.toarray(), program.P.toarray()
    result = _tight(original)
    np.testing.assert_allclose(
        result.x, _clarabel_cone_x(program.c, P, A, program.b, soc), atol=1e-6
    )
    adjoint = ImplicitAdjoint(program, x=result.x, y=result.y, z=result.z, method=method)
    # The solution zeroes the residual map.
    assert np.linalg.norm(adjoint.residual(result.x, result.z + result.y)) < 1e-7
    w = rng.standard_normal(program.n)
    grad = adjoint.data_gradient(w)
    dc, db = rng.standard_normal(program.n), rng.standard_normal(program.m)
    dA, dP = rng.standard_normal(A.shape), rng.standard_normal(P.shape)
    dP = dP + dP.T
    predicted = (
        grad.c @ dc
        + grad.b @ db
        + grad.A_data @ sp.csc_array(dA).data
        + grad.P_data @ sp.csc_array(dP).data
    )
    h = 1e-4
    losses = [
        w
        @ _clarabel_cone_x(
            program.c + s * h * dc, P + s * h * dP, A + s * h * dA, program.b + s * h * db, soc
        )
        for s in (1.0, -1.0)
    ]
    np.testing.assert_allclose(predicted, (losses[0] - losses[1]) / (2 * h), rtol=1e-4, atol=1e-6)


def test_reduced_and_lu_agree_on_a_dual_free_loss_and_reduced_refuses_a_dual_loss():
    original = _cone_program(np.random.default_rng(2), soc=False)
    program = original.assemble()
    result = _tight(original)
    g = np.random.default_rng(3).standard_normal(program.n)
    solutions = [
        ImplicitAdjoint(program, x=result.x, y=result.y, z=result.z, method=method).solve(g)
        for method in ("reduced", "lu")
    ]
    np.testing.assert_allclose(solutions[0][0], solutions[1][0], atol=1e-9)
    np.testing.assert_allclose(solutions[0][1], solutions[1][1], atol=1e-9)
    reduced = ImplicitAdjoint(program, x=result.x, y=result.y, z=result.z, method="reduced")
    with pytest.raises(ValueError, match="no gradient with respect to y"):
        reduced.solve(g, np.ones(program.m))
    with pytest.raises(ValueError, match="second-order"):
        soc = _cone_program(np.random.default_rng(2), soc=True)
        ImplicitAdjoint(soc, x=np.zeros(4), y=np.zeros(soc.m), z=np.zeros(soc.m), method="reduced")


def _structured_program(A, b, c, lam, k) -> Program:
    """min c'x + ||A x - b||^2 + lam sum_g ||x_g|| (groups of k) s.t. x + 0.2 >= 0."""
    m, n = A.shape
    return Program(
        c=c,
        terms=[
            Term(SumSquares(m), MatrixOp(A), b),
            Term(
                GroupL2(n, k, weight=lam) if k > 1 else Norm1(n, weight=lam),
                Identity(n),
                np.zeros(n),
            ),
            Term(NonnegCone(n), Identity(n), np.full(n, -0.2)),
        ],
    )


def _clarabel_structured_x(A, b, c, lam, k) -> np.ndarray:
    n = A.shape[1]
    x = cp.Variable(n)
    groups = cp.reshape(x, (k, n // k), order="F")
    penalty = cp.sum(cp.norm(groups, 2, axis=0)) if k > 1 else cp.norm1(x)
    objective = c @ x + cp.sum_squares(A @ x - b) + lam * penalty
    cp.Problem(cp.Minimize(objective), [x >= -0.2]).solve(solver=cp.CLARABEL, **CLARABEL_NORMS)
    return x.value


@pytest.mark.parametrize(("k", "method"), [(1, "auto"), (2, "auto"), (2, "lu")])
def test_structured_program_gradient_matches_finite_differences(k, method):
    rng = np.random.default_rng(4)
    m, n = 10, 8
    A = rng.standard_normal((m, n))
    x_true = np.where(rng.random(n) < 0.5, rng.standard_normal(n), 0.0)
    b, c, lam = A @ x_true + 0.1 * rng.standard_normal(m), 0.3 * rng.standard_normal(n), 8.0
    program = _structured_program(A, b, c, lam, k)
    result = _tight(program)
    np.testing.assert_allclose(result.x, _clarabel_structured_x(A, b, c, lam, k), atol=1e-6)
    # Some entries or groups sit at the norm's kink (hard rows), and the bound is active.
    jacobians = ResidualMap.from_program(program).jacobians(result.z + result.y)
    assert jacobians[1].hard.size and jacobians[2].hard.size
    adjoint = ImplicitAdjoint(program, x=result.x, y=result.y, z=result.z, method=method)
    w = rng.standard_normal(n)
    u_x, u_v = adjoint.solve(w)
    u_fit = adjoint.residual.split(u_v)[0]
    y_fit = adjoint.residual.split(result.y)[0]
    q = adjoint.weight_gradients(u_x, u_v)[1]
    dc, db, dA, dlam = (
        rng.standard_normal(n),
        rng.standard_normal(m),
        rng.standard_normal((m, n)),
        1.0,
    )
    # dL/dc = -u_x, dL/db = u_v, dL/dA = -(y u_x' + u_v x'), dL/dw = (dp/dw)'(A u_x + u_v).
    predicted = (
        -u_x @ dc
        + u_fit @ db
        - np.sum((np.outer(y_fit, u_x) + np.outer(u_fit, result.x)) * dA)
        + q.sum() * dlam
    )
    h = 1e-4
    losses = [
        w
        @ _clarabel_structured_x(
            A + s * h * dA, b + s * h * db, c + s * h * dc, lam + s * h * dlam, k
        )
        for s in (1.0, -1.0)
    ]
    np.testing.assert_allclose(predicted, (losses[0] - losses[1]) / (2 * h), rtol=1e-4, atol=1e-6)


def test_residual_map_of_a_structured_program_matches_its_jacobian():
    rng = np.random.default_rng(6)
    A = rng.standard_normal((5, 4))
    program = _structured_program(A, rng.standard_normal(5), rng.standard_normal(4), 0.7, 2)
    residual = ResidualMap.from_program(program)
    x, v = rng.standard_normal(residual.n), 2.0 * rng.standard_normal(residual.m)
    J = residual.jacobian_transpose(residual.jacobians(v)).toarray().T
    point = np.concatenate([x, v])
    expected = _finite_difference_jacobian(
        lambda p: residual(p[: residual.n], p[residual.n :]), point
    )
    np.testing.assert_allclose(J, expected, atol=1e-6)


def test_reduced_and_lu_agree_with_a_quadratic_form_and_a_logistic_loss():
    """D = (I + 2w Q)^{-1} is eliminated as a soft block with H = 2w Q (Quadratic), next
    to a diagonal soft block (Logistic) and the hard rows of norm1's kinks."""
    rng = np.random.default_rng(7)
    m, n = 6, 5
    F = rng.standard_normal((m, m))
    program = Program(
        c=rng.standard_normal(n),
        terms=[
            Term(Quadratic(F @ F.T, weight=0.5), MatrixOp(rng.standard_normal((m, n))), np.ones(m)),
            Term(Logistic(m, weight=1.5), MatrixOp(rng.standard_normal((m, n))), np.zeros(m)),
            Term(Norm1(n, weight=1.0), Identity(n), np.zeros(n)),
        ],
    )
    result = _tight(program)
    jacobians = ResidualMap.from_program(program).jacobians(result.z + result.y)
    assert all(jac.structured for jac in jacobians) and jacobians[2].hard.size
    g = rng.standard_normal(n)
    solutions = [
        ImplicitAdjoint(program, x=result.x, y=result.y, z=result.z, method=method).solve(g)
        for method in ("reduced", "lu")
    ]
    np.testing.assert_allclose(solutions[0][0], solutions[1][0], atol=1e-9)
    np.testing.assert_allclose(solutions[0][1], solutions[1][1], atol=1e-9)


@pytest.mark.parametrize(
    "make",
    [
        lambda n: TV1D(n, weight=2.0),
        lambda n: NormInf(n, weight=6.0),
        lambda n: L1Ball(n, 4.0),
        lambda n: Simplex(n, 3.0),
        lambda n: L2Ball(n, 1.0),
    ],
    ids=["tv1d", "norm_inf", "l1_ball", "simplex", "l2_ball"],
)
def test_reduced_and_lu_agree_with_hard_directions(make):
    """The hard directions of 1-D TV, norm_inf, the l1 and l2 balls and the simplex (on x
    and on A x) become rows E A of the saddle-point system; the reduced solve agrees with
    LU."""
    rng = np.random.default_rng(8)
    m, n = 12, 8
    A = rng.standard_normal((m, n))
    b = A @ np.repeat([1.0, -1.0], n // 2) + 0.1 * rng.standard_normal(m)
    for op in (Identity(n), MatrixOp(rng.standard_normal((n, n)))):
        program = Program(
            c=0.1 * rng.standard_normal(n),
            terms=[Term(SumSquares(m), MatrixOp(A), b), Term(make(n), op, np.zeros(n))],
        )
        result = _tight(program)
        jac = ResidualMap.from_program(program).jacobians(result.z + result.y)[1]
        assert jac.structured and jac.directions.shape[0]
        g = rng.standard_normal(n)
        adjoints = [
            ImplicitAdjoint(program, x=result.x, y=result.y, z=result.z, method=method)
            for method in ("auto", "lu")
        ]
        solutions = [adjoint.solve(g) for adjoint in adjoints]
        np.testing.assert_allclose(solutions[0][0], solutions[1][0], atol=1e-8)
        np.testing.assert_allclose(solutions[0][1], solutions[1][1], atol=1e-8)
        if isinstance(program.terms[1].function, TV1D):
            # "auto" took the reduced system, which never formed TV's D (k^2 entries per
            # segment of length k); LU did.
            assert callable(adjoints[0].jacobians[1].blocks)
            assert not callable(adjoints[1].jacobians[1].blocks)
