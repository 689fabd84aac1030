"""The assembled view of a structured lowering (reductions/cone_form.py): l1, hinge, entropy
and least-squares models whose structure does not pay off are solved as cone programs
built from the lowering, with the same answers as Clarabel."""

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp

import cvxprox
from cvxprox.functions.prox import Box, Simplex, SumSquares
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import AssembledProgram, Program, Term
from cvxprox.operators.linops import Identity, MatrixOp
from cvxprox.reductions.cone_form import has_cone_form
from cvxprox.reductions.structure import StructureLowering
from cvxprox.solvers.select import solve_program

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
RNG = np.random.default_rng(7)
M = RNG.standard_normal((40, 12))
y = RNG.standard_normal(40)
labels = np.sign(RNG.standard_normal(40))
_G = RNG.standard_normal((12, 3))
SIGMA = _G @ _G.T / 10 + np.diag(RNG.uniform(0.01, 0.05, 12))
w = cp.Variable(12, name="w")
s = cp.Variable(name="s")


def _models() -> dict[str, cp.Problem]:
    F = RNG.standard_normal((5, 12))
    return {
        # Norm1 of a general operator + SumSquares on a selection of x (P on x).
        "l1_fit": cp.Problem(
            cp.Minimize(cp.norm1(M @ w - y) + 0.5 * cp.sum_squares(w)), [w >= -0.2, w <= 1]
        ),
        # Pos (hinge) + SumSquares of a general operator (an epigraph block r).
        "svm": cp.Problem(
            cp.Minimize(
                cp.sum(cp.pos(1 - cp.multiply(labels, M @ w + s))) / 40
                + 0.1 * cp.sum_squares(M[:8] @ w)
            )
        ),
        # NegEntropy with equality and inequality constraints.
        "entropy": cp.Problem(
            cp.Maximize(cp.sum(cp.entr(w))),
            [cp.sum(w) == 1, F @ w <= 0.1],
        ),
        # quad_form with a dense Q on the variable itself (P on x) and on an affine
        # expression (an epigraph block r with P_rr = 2Q).
        "portfolio": cp.Problem(
            cp.Maximize(RNG.normal(0.05, 0.03, 12) @ w - 2.0 * cp.quad_form(w, SIGMA)),
            [cp.sum(w) == 1, w >= 0],
        ),
        "quad_form_of_affine": cp.Problem(
            cp.Minimize(cp.quad_form(M[:6] @ w - 1, SIGMA[:6, :6]) + 0.1 * cp.norm1(w)),
            [w >= -0.5],
        ),
        # Elementwise weights on abs and a shifted least-squares term.
        "weighted": cp.Problem(
            cp.Minimize(
                cp.sum(cp.multiply(np.arange(1.0, 13.0), cp.abs(w - 0.3)))
                + cp.sum_squares(w[::2] - 1)
            ),
            [cp.sum(w) == 2],
        ),
    }


MODELS = _models()


@pytest.mark.parametrize("name", MODELS)
def test_cone_form_matches_clarabel(name: str) -> None:
    prob = MODELS[name]
    compiled = cvxprox.compile(prob)
    assert compiled.reduction.endswith("built from the structured lowering")
    assert compiled.program.solve_assembled
    assert isinstance(compiled.program.assemble(), AssembledProgram)
    prob.solve(solver="CLARABEL", **TIGHT)
    ref_value = prob.value
    ref_vars = [v.value.copy() for v in prob.variables()]
    ref_duals = [np.copy(c.dual_value) for c in prob.constraints]
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(ref_value, rel=1e-6, abs=1e-7)
    for var, ref in zip(prob.variables(), ref_vars, strict=True):
        np.testing.assert_allclose(var.value, ref, atol=2e-4)
    for con, ref in zip(prob.constraints, ref_duals, strict=True):
        np.testing.assert_allclose(con.dual_value, ref, atol=2e-4)


def test_cone_form_value_is_the_structured_objective() -> None:
    """At any x, the cone program with its epigraph variables at their tight values has
    the structured program's objective (constraints aside)."""
    prob = MODELS["l1_fit"]
    program = StructureLowering(prob).lower().program
    form = program.assemble()
    assert form.n_program == program.n and form is program.assemble()
    x = RNG.standard_normal(program.n)
    t = np.abs(M @ x - y)  # the Norm1 epigraph (the only auxiliary block)
    u = np.concatenate([x, t])
    cone = form
    value = cone.c @ u + 0.5 * u @ (cone.P @ u) + cone.offset
    smooth_and_l1 = [k for k, term in enumerate(program.terms) if form.term_rows[k] is None]
    expected = program.c @ x + program.offset
    expected += sum(program.terms[k].function(program.terms[k].residual(x)) for k in smooth_and_l1)
    assert value == pytest.approx(expected, rel=1e-12)


def test_parameters_rebuild_the_cone_form() -> None:
    lam = cp.Parameter(nonneg=True, value=0.5)
    b = cp.Parameter(40, value=y)
    prob = cp.Problem(cp.Minimize(cp.norm1(M @ w - b) + lam * cp.norm1(w)), [w >= -1])
    assert cvxprox.compile(prob).reduction.endswith("built from the structured lowering")
    for lam_value, shift in [(0.5, 0.0), (3.0, 0.7), (0.0, -0.3)]:
        lam.value, b.value = lam_value, y + shift
        prob.solve(solver="NABLAPROX")
        value = prob.value
        prob.solve(solver="CLARABEL", **TIGHT)
        assert value == pytest.approx(prob.value, rel=1e-6)


def test_infeasible_cone_form_is_certified() -> None:
    prob = cp.Problem(cp.Minimize(cp.norm1(M @ w - y)), [cp.sum(w) >= 1, w <= -1])
    assert cvxprox.compile(prob).reduction.endswith("built from the structured lowering")
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.INFEASIBLE


def test_sparse_quad_form_keeps_cvxpys_canonicalization() -> None:
    prob = cp.Problem(cp.Minimize(cp.quad_form(w, sp.csc_array(SIGMA))), [cp.sum(w) == 1])
    assert cvxprox.compile(prob).reduction == "cones: quad_form with a sparse matrix"


def _function_models() -> dict[str, cp.Problem]:
    """One model per prox function that is not a cone, each with a tight constraint."""
    c = RNG.uniform(0.5, 2.0, 12)
    box = [w >= -0.4, w <= 0.6]
    grid = cp.reshape(w, (3, 4), order="F")
    return {
        "Norm2": cp.Problem(cp.Minimize(cp.norm(M @ w - y, 2)), box),
        "GroupL2": cp.Problem(
            cp.Minimize(cp.sum_squares(M @ w - y) + 2.0 * cp.sum(cp.norm(grid, 2, axis=0))), box
        ),
        "NormInf": cp.Problem(cp.Minimize(cp.norm_inf(M @ w - y)), box),
        "TV1D": cp.Problem(cp.Minimize(cp.sum_squares(M @ w - y) + 3.0 * cp.tv(w)), box),
        "Huber": cp.Problem(cp.Minimize(cp.sum(cp.huber(M @ w - y, 0.5))), box),
        "Logistic": cp.Problem(
            cp.Minimize(cp.sum(cp.logistic(-cp.multiply(labels, M @ w))) / 40), box
        ),
        "KLDiv": cp.Problem(cp.Minimize(cp.sum(cp.kl_div(w, c)) - w @ c), [w <= 0.6 * c]),
        "L2Ball": cp.Problem(cp.Minimize(cp.norm1(M @ w - y)), [cp.norm(w, 2) <= 0.5]),
        "L1Ball": cp.Problem(cp.Minimize(cp.sum_squares(M @ w - y)), [cp.norm1(w) <= 0.5]),
        "LinfBall": cp.Problem(cp.Minimize(cp.norm1(M @ w - y)), [cp.norm_inf(w) <= 0.1]),
    }


FUNCTION_MODELS = _function_models()


@pytest.mark.parametrize("name", FUNCTION_MODELS)
def test_every_function_has_a_cone_form(name: str) -> None:
    """The assembled view of each prox function, solved by a cone method, gives Clarabel's
    optimum; a ball's y read back from its rows gives the constraint's dual."""
    prob = FUNCTION_MODELS[name]
    lowering = StructureLowering(prob)
    lowered = lowering.lower()
    program = lowered.program
    assert name in {type(t.function).__name__ for t in program.terms}
    assert has_cone_form(program)
    program.solve_assembled = True
    options = SolverOptions.from_kwargs({"eps_abs": 1e-9, "eps_rel": 1e-9})
    result = solve_program(program, options)
    assert result.status == "optimal"
    view = program.assemble()
    x = result.x[: view.n_program]
    value = program.c @ x + program.offset
    value += sum(t.function(t.residual(x)) for t in program.terms if not t.function.is_indicator)
    prob.solve(solver="CLARABEL", **TIGHT)
    assert value == pytest.approx(prob.value, rel=1e-6, abs=1e-7)
    np.testing.assert_allclose(x[:12], w.value, atol=1e-5)
    for con in lowered.constraints:
        rows = view.term_rows[con.term]
        if isinstance(rows, tuple):
            y_term = result.y[rows[0]] - result.y[rows[1]]
        else:
            y_term = result.y[rows]
        dual = con.dual(y_term)
        ref = next(c for c in prob.constraints if c.id == con.constraint_id).dual_value
        np.testing.assert_allclose(dual, ref, atol=1e-5 * max(1.0, np.max(np.abs(ref))))


def test_box_and_simplex_have_cone_forms() -> None:
    """A Program with Box and Simplex terms (built directly; the lowering makes neither)
    solved on its assembled view gives Clarabel's optimum."""
    A, b = RNG.standard_normal((5, 8)), RNG.standard_normal(5)
    lower = np.array([-0.2, -np.inf, -0.1, -0.3, -np.inf])
    upper = np.array([0.3, 0.2, np.inf, 0.1, np.inf])
    program = Program(
        RNG.standard_normal(8),
        [
            Term(SumSquares(8), Identity(8), np.zeros(8), "fit"),
            Term(Box(lower, upper), MatrixOp(A), b, "box"),
            Term(Simplex(3, 1.5), MatrixOp(A[:3] / 3), np.zeros(3), "simplex"),
        ],
    )
    program.solve_assembled = True
    result = solve_program(program, SolverOptions.from_kwargs({"eps_abs": 1e-9, "eps_rel": 1e-9}))
    x = cp.Variable(8)
    u = A @ x - b
    box = [u >= np.maximum(lower, -1e9), u <= np.minimum(upper, 1e9)]
    simplex = [A[:3] @ x / 3 >= 0, cp.sum(A[:3] @ x / 3) == 1.5]
    objective = program.c @ x + cp.sum_squares(x)
    ref = cp.Problem(cp.Minimize(objective), box + simplex)
    ref.solve(solver="CLARABEL", **TIGHT)
    assert result.status == "optimal"
    np.testing.assert_allclose(result.x[:8], x.value, atol=1e-5)
    view = program.assemble()
    plus, minus = view.term_rows[1]
    np.testing.assert_allclose(
        result.y[plus] - result.y[minus], box[1].dual_value - box[0].dual_value, atol=1e-5
    )
