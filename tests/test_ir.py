"""The one IR (cvxprox/ir/program.py): a Program of terms f_i(A_i x - b_i), and its assembled
view."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cvxprox.functions.cones import NonnegCone, SecondOrderCone, ZeroCone
from cvxprox.functions.prox import (
    TV1D,
    BlockSum,
    KLDiv,
    Logistic,
    NegEntropy,
    Norm1,
    NormInf,
    ProxFunction,
)
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.batch import StackedStructuredProgram, weight_entries
from cvxprox.ir.program import AssembledProgram, Program, Term
from cvxprox.operators.linops import Identity, MatrixOp
from cvxprox.solvers.select import solve_program

RNG = np.random.default_rng(5)


def _rows_program() -> tuple[Program, sp.csc_array]:
    n = 5
    A = sp.csc_array(RNG.standard_normal((7, n)))
    b = A @ RNG.standard_normal(n) - np.r_[0.0, 0.5, 0.2, 3.0, 0.1, -0.2, 0.4]
    c = RNG.standard_normal(n)
    P = sp.csc_array(np.eye(n))
    cones = [ZeroCone(1), NonnegCone(3), SecondOrderCone([3])]
    return Program.from_rows(c, A, b, cones, P, 1.5), A


def test_from_rows_terms_are_row_blocks_of_the_view() -> None:
    program, A = _rows_program()
    view = program.assemble()
    assert program.solve_assembled and view.A is A and program.assemble() is view
    assert [t.size for t in program.terms] == [1, 3, 3] and program.m == view.m == 7
    x = RNG.standard_normal(program.n)
    dense = A.toarray()
    for k, (term, rows) in enumerate(zip(program.terms, view.term_rows, strict=True)):
        assert term.function is view.terms[k].function and rows == view.terms[k].rows
        np.testing.assert_allclose(term.op.matvec(x), dense[rows] @ x, rtol=1e-14)
        np.testing.assert_allclose(term.b, view.b[rows])


def test_solving_a_rows_program_runs_on_its_view() -> None:
    program, _ = _rows_program()
    result = solve_program(program, SolverOptions.from_kwargs({"eps_abs": 1e-9, "eps_rel": 1e-9}))
    view = program.assemble()
    assert result.status == "optimal" and result.x.shape == (view.n,)
    z = view.A @ result.x - view.b
    np.testing.assert_allclose(view.cone.project(z), z, atol=1e-7)
    x = result.x
    objective = program.c @ x + 0.5 * x @ (program.P @ x) + program.offset
    assert result.kkt.primal_objective == pytest.approx(objective, rel=1e-12)


def test_a_structured_program_is_assembled_once_with_epigraphs() -> None:
    n = 4
    M = RNG.standard_normal((6, n))
    program = Program(
        RNG.standard_normal(n),
        [
            Term(Norm1(6, 0.5), MatrixOp(M), RNG.standard_normal(6), "fit"),
            Term(NonnegCone(n), Identity(n), np.zeros(n), "x >= 0"),
        ],
    )
    view = program.assemble()
    assert isinstance(view, AssembledProgram) and program.assemble() is view
    assert view.n_program == n and view.n == n + 6  # one epigraph variable per |.|
    assert view.term_rows[0] is None and view.term_rows[1] is not None
    assert not program.solve_assembled


class _Quartic(ProxFunction):
    """sum v^4: a function of the user's, which ``assemble`` has no cone form for."""

    size = 3

    def __call__(self, v: np.ndarray) -> float:
        return float(np.sum(v**4))

    def prox(self, v: np.ndarray, t: float) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        return "quartic"


def test_bad_programs_are_named() -> None:
    with pytest.raises(ValueError, match="term 'x': operator has 3 rows"):
        Term(Norm1(4), Identity(3), np.zeros(3), "x")
    with pytest.raises(ValueError, match="acts on 3 variables, the program has 4"):
        Program(np.zeros(4), [Term(Norm1(3), Identity(3), np.zeros(3), "y")])
    quartic = Program(np.zeros(3), [Term(_Quartic(), Identity(3), np.zeros(3), "loss")])
    with pytest.raises(ValueError, match="'loss': quartic has no cone form"):
        quartic.assemble()
    with pytest.raises(TypeError):
        Program(np.zeros(3), [], None)  # P, offset are keyword-only


def test_bounds_are_validated_and_named() -> None:
    with pytest.raises(ValueError, match=r"2.0 <= x\[1\] <= 1.0 admit no value"):
        Program(np.zeros(3), [], l=np.array([0.0, 2.0, -np.inf]), u=np.array([1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"lower bound has shape \(2,\), expected \(3,\)"):
        Program(np.zeros(3), [], l=np.zeros(2))
    with pytest.raises(ValueError, match=r"upper bound of x\[0\] is nan"):
        Program(np.zeros(3), [], u=np.array([np.nan, 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"lower bound of x\[2\] is inf"):
        Program(np.zeros(3), [], l=np.array([0.0, 0.0, np.inf]))
    with pytest.raises(ValueError, match="admit no value"):
        Program.from_rows(
            np.zeros(1), sp.csc_array((0, 1)), np.zeros(0), [], l=np.ones(1), u=np.zeros(1)
        )
    free = Program(np.zeros(2), [], l=np.full(2, -np.inf), u=np.full(2, np.inf))
    assert not free.has_bounds and free.assemble().bound_rows is None


def test_bounds_are_rows_of_the_view_after_the_terms() -> None:
    """min 0.5 |M x - g|_1 + c'x, x >= 0 (a term), -0.3 <= x <= 0.4 (bounds; x[2] free
    above): the view's last block is x - l >= 0 then u - x >= 0, and its solution is
    Clarabel's."""
    import cvxpy as cp  # noqa: PLC0415

    n = 4
    M, g, c = RNG.standard_normal((6, n)), RNG.standard_normal(6), RNG.standard_normal(n)
    l, u = np.full(n, -0.3), np.array([0.4, 0.4, np.inf, 0.4])
    program = Program(
        c,
        [
            Term(Norm1(6, 0.5), MatrixOp(M), g, "fit"),
            Term(NonnegCone(2), MatrixOp(np.eye(n)[:2]), np.zeros(2), "x[:2] >= 0"),
        ],
        l=l,
        u=u,
    )
    assert program.has_bounds and "bounds l <= x <= u" in program.describe()
    assert program.objective(np.full(n, 0.5)) == np.inf
    view = program.assemble()
    rows = view.bound_rows
    assert rows == view.terms[-1].rows and rows.stop == view.m and rows.start - rows.stop == -7
    assert isinstance(view.terms[-1].function, NonnegCone)
    x = RNG.standard_normal(view.n)
    np.testing.assert_allclose(
        view.A[rows] @ x - view.b[rows], np.r_[x[:n] - l, (u - x[:n])[[0, 1, 3]]], rtol=1e-14
    )
    program.solve_assembled = True
    options = SolverOptions.from_kwargs({"eps_abs": 1e-9, "eps_rel": 1e-9})
    result = solve_program(program, options)
    xv = cp.Variable(n)
    reference = cp.Problem(
        cp.Minimize(0.5 * cp.norm1(M @ xv - g) + c @ xv),
        [xv[:2] >= 0, xv >= l, xv[[0, 1, 3]] <= 0.4],
    )
    reference.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    assert result.status == "optimal"
    np.testing.assert_allclose(result.x[:n], xv.value, atol=1e-6)
    assert program.objective(result.x[:n]) == pytest.approx(reference.value, abs=1e-6)


def test_the_bounds_attribute_is_the_programs_bounds() -> None:
    """CVXPY's ``bounds=`` reaches the cone route's Program as l, u (no term), its view as
    rows after the cones; the constraint's dual keeps its position and value."""
    import cvxpy as cp  # noqa: PLC0415

    x = cp.Variable(3, bounds=[np.array([-1.0, 0.0, -np.inf]), 2.0])
    con = cp.sum(x) <= 1.5
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - np.array([3.0, -1.0, 0.5]))), [con])
    program = problem.get_problem_data("NABLAPROX")[0]["prox_program"]
    n = program.n
    assert program.has_bounds and program.l.shape == (n,) and program.u.shape == (n,)
    view = program.assemble()
    assert view.bound_rows is not None and view.bound_rows.stop == view.m
    assert program.m == view.bound_rows.start  # the terms hold the cone rows only
    problem.solve(solver="NABLAPROX", eps_abs=1e-9, eps_rel=1e-9)
    # x0 = 2 and x1 = 0 at their bounds, x2 = 1.5 - 2 by the constraint, whose
    # multiplier is 2 (x2 - 0.5) = -2 with the sign flipped: 2.
    assert problem.status == "optimal"
    np.testing.assert_allclose(x.value, [2.0, 0.0, -0.5], atol=1e-6)
    np.testing.assert_allclose(con.dual_value, 2.0, atol=1e-6)


def test_a_batch_stacks_entrywise_weights_and_holds_other_functions_as_block_sums() -> None:
    """Logistic, entropy and KL terms merge into one function of the concatenated
    arguments (weights and KL's c concatenated); 1-D TV and norm_inf, which do not merge
    entrywise, become a BlockSum of the elements' functions. Either way the merged prox is
    the elements' proxes side by side, and the weights are one entry per weight."""
    rng = np.random.default_rng(0)
    n = 5

    def element(scale: float) -> Program:
        terms = [
            Term(Logistic(n, weight=scale), Identity(n), np.zeros(n)),
            Term(NegEntropy(n, weight=scale * np.ones(n)), Identity(n), np.zeros(n)),
            Term(KLDiv(n, c=scale + np.arange(n), weight=1.0), Identity(n), np.zeros(n)),
            Term(TV1D(n, weight=scale), Identity(n), np.zeros(n)),
            Term(NormInf(n, weight=scale), MatrixOp(rng.standard_normal((n, n))), np.zeros(n)),
        ]
        return Program(c=np.zeros(n), terms=terms)

    programs = [element(0.5), element(2.0)]
    stack = StackedStructuredProgram(programs).program
    kinds = [type(t.function) for t in stack.terms]
    assert kinds == [Logistic, NegEntropy, KLDiv, BlockSum, BlockSum]
    assert isinstance(stack.terms[3].op, Identity)
    for k, term in enumerate(stack.terms):
        v = rng.standard_normal(2 * n)
        parts = [
            p.terms[k].function.prox(v[b * n : (b + 1) * n], 0.7) for b, p in enumerate(programs)
        ]
        np.testing.assert_allclose(term.function.prox(v, 0.7), np.concatenate(parts), atol=1e-14)
    assert weight_entries(stack.terms[3].function).tolist() == [0.5, 2.0]
    assert weight_entries(stack.terms[0].function).shape == (2 * n,)
