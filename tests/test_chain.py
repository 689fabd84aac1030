"""NABLAPROX's solving chain: every lowering is a CVXPY Reduction that inverts its own
mapping, the solver sees and returns IR values only, and DPP re-solves run no reduction."""

import cvxpy as cp
import cvxpy.settings as s
import numpy as np
import pytest
from cvxpy.reductions.reduction import Reduction

import cvxprox
from cvxprox.interface.solver import PROGRAM
from cvxprox.ir.program import Program
from cvxprox.reductions.cone2prox import ParamProxProgram
from cvxprox.reductions.cone_form import ParamConeForm
from cvxprox.reductions.dispatch import ParamStructuredProgram, ProxOrCone
from cvxprox.reductions.solver_io import ProgramSolution

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
EPS = {"eps_abs": 1e-9, "eps_rel": 1e-9}


def _portfolio() -> tuple[cp.Problem, cp.Parameter]:
    rng = np.random.default_rng(0)
    n = 15
    F = rng.standard_normal((n, 3))
    mu = cp.Parameter(n, value=rng.random(n))
    w = cp.Variable(n)
    risk = cp.sum_squares(F.T @ w) + 0.1 * cp.sum_squares(w)
    objective = cp.Maximize(mu @ w - risk)
    return cp.Problem(objective, [cp.sum(w) == 1, w >= 0, w <= 0.3]), mu


def _huber_tv() -> tuple[cp.Problem, cp.Parameter]:
    rng = np.random.default_rng(6)
    M = rng.standard_normal((30, 10))
    target = cp.Parameter(30, value=rng.standard_normal(30))
    w = cp.Variable(10)
    objective = cp.Minimize(cp.sum(cp.huber(M @ w - target, 0.5)) + 0.1 * cp.tv(w))
    return cp.Problem(objective, [cp.sum(w) == 1, w <= 0.4, M[:3] @ w >= -2]), target


def _l1_scaled() -> tuple[cp.Problem, cp.Parameter]:
    """Solved as the cone form of its structured lowering; the value of ``p`` decides
    whether sum_squares(p x) needs epigraph rows (p != 1), which moves the rows of the
    constraints in the cone program."""
    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((8, 5)), rng.standard_normal(8)
    p = cp.Parameter(nonneg=True, value=1.0)
    x = cp.Variable(5)
    objective = cp.Minimize(cp.norm1(A @ x - b) + cp.sum_squares(p * x))
    return cp.Problem(objective, [x >= -0.3, cp.sum(x) == 0.2]), p


MODELS = {
    "cones": (_portfolio, ParamProxProgram),
    "structured": (_huber_tv, ParamStructuredProgram),
    "cone_form": (_l1_scaled, ParamConeForm),
}


def _reference(prob: cp.Problem) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    ref = cp.Problem(prob.objective, prob.constraints)
    ref.solve(solver="CLARABEL", **TIGHT)
    values = [np.atleast_1d(v.value).copy() for v in ref.variables()]
    duals = [np.atleast_1d(c.dual_value).copy() for c in ref.constraints]
    return ref.value, values, duals


def _assert_matches(prob: cp.Problem, reference: tuple) -> None:
    value, values, duals = reference
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(value, rel=1e-6, abs=1e-7)
    for var, ref in zip(prob.variables(), values, strict=True):
        np.testing.assert_allclose(np.atleast_1d(var.value), ref, atol=1e-5)
    for con, ref in zip(prob.constraints, duals, strict=True):
        np.testing.assert_allclose(np.atleast_1d(con.dual_value), ref, atol=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_every_step_is_a_reduction_and_the_solver_returns_ir_values(model: str) -> None:
    make, param_kind = MODELS[model]
    prob, _ = make()
    data, chain, inverse = prob.get_problem_data("NABLAPROX")
    assert isinstance(data[s.PARAM_PROB], param_kind)
    program = data[PROGRAM]
    assert isinstance(program, Program)
    # The solver solves the program's terms, or its assembled view (whose x and rows the
    # solution then has: the cone-form step maps them back).
    assert program.solve_assembled == (model != "structured")
    solved = program.assemble() if program.solve_assembled else program
    steps = list(chain.reductions)
    for step in chain.reductions:
        if isinstance(step, ProxOrCone):
            steps += [*step.cone_reductions, step.cone_form]
    assert any(isinstance(step, ProxOrCone) for step in steps)
    for step in steps:
        assert isinstance(step, Reduction)
        assert type(step).invert is not Reduction.invert, type(step).__name__

    raw = chain.solve_via_data(prob, data, solver_opts=EPS)
    solution = chain.solver.invert(raw, inverse[-1])
    assert isinstance(solution, ProgramSolution)
    assert set(solution.primal_vars) == {ProgramSolution.X}
    assert set(solution.dual_vars) == {ProgramSolution.Y}
    assert solution.x.shape == (solved.n,)
    assert solution.y.shape == (solved.m,)

    prob.unpack_results(raw, chain, inverse)
    _assert_matches(prob, _reference(prob))


@pytest.mark.parametrize("model", MODELS)
def test_parameter_resolves_run_no_reduction(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make, _ = MODELS[model]
    prob, param = make()
    prob.solve(solver="NABLAPROX", **EPS)
    param_prog = prob.get_problem_data("NABLAPROX")[0][s.PARAM_PROB]

    def refuse(self, problem):  # noqa: ANN001, ANN202
        raise AssertionError(f"{type(self).__name__}.apply ran on a re-solve")

    monkeypatch.setattr(ProxOrCone, "apply", refuse)
    rng = np.random.default_rng(1)
    for k in range(2):
        if model == "cone_form":
            param.value = 2.0 - k  # 2 adds epigraph rows, 1 removes them again
        else:
            param.value = param.value + 0.1 * rng.standard_normal(param.shape)
        prob.solve(solver="NABLAPROX", warm_start=True, **EPS)
        assert prob.get_problem_data("NABLAPROX")[0][s.PARAM_PROB] is param_prog
        _assert_matches(prob, _reference(prob))


def test_other_solvers_chains_have_no_cvxprox_step() -> None:
    for make, solver in ((_huber_tv, "CLARABEL"), (_huber_tv, "SCS"), (_portfolio, "OSQP")):
        prob, _ = make()
        _, chain, _ = prob.get_problem_data(solver)
        modules = [type(r).__module__ for r in chain.reductions]
        assert all(m.startswith("cvxpy.") for m in modules), modules
        assert chain.solver.name() == solver


def test_solver_refuses_a_cvxpy_cone_program() -> None:
    prob, _ = _portfolio()
    data, _, _ = prob.get_problem_data("CLARABEL")
    with pytest.raises(TypeError, match="parametric programs of its own chain"):
        cvxprox.NablaProx().apply(data[s.PARAM_PROB])


def test_structured_lowering_names_parameters_without_values() -> None:
    target = cp.Parameter(6, name="target")
    w = cp.Variable(6)
    prob = cp.Problem(cp.Minimize(cp.sum(cp.huber(w - target)) + cp.tv(w)))
    with pytest.raises(cp.error.ParameterError, match="target"):
        prob.get_problem_data("NABLAPROX")
    cones = cp.Problem(prob.objective)
    data, _, _ = cones.get_problem_data("NABLAPROX", solver_opts={"structure": "never"})
    assert data[PROGRAM] is None
    with pytest.raises(cp.error.ParameterError, match="target"):
        cones.solve(solver="NABLAPROX", structure="never")
