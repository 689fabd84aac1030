"""The one IR (cvxprox/ir.py): a Program of terms f_i(A_i x - b_i), and its assembled view."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cvxprox.compile import solve_program
from cvxprox.cones import NonnegCone, SecondOrderCone, ZeroCone
from cvxprox.ir import AssembledProgram, Program, Term
from cvxprox.linops import Identity, MatrixOp
from cvxprox.options import SolverOptions
from cvxprox.prox import Huber, Norm1

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


def test_bad_programs_are_named() -> None:
    with pytest.raises(ValueError, match="term 'x': operator has 3 rows"):
        Term(Norm1(4), Identity(3), np.zeros(3), "x")
    with pytest.raises(ValueError, match="acts on 3 variables, the program has 4"):
        Program(np.zeros(4), [Term(Norm1(3), Identity(3), np.zeros(3), "y")])
    huber = Program(np.zeros(3), [Term(Huber(3), Identity(3), np.zeros(3), "loss")])
    with pytest.raises(ValueError, match="'loss': huber.* has no cone form"):
        huber.assemble()
    with pytest.raises(TypeError):
        Program(np.zeros(3), [], None)  # P, offset are keyword-only
