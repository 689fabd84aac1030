"""The termination test on a Program's terms (``cvxprox/solvers/common/term_checks.py``):
``StructuredChecker.evaluate`` against the per-row test written out on whole vectors, the
shares a holder sums in its own layout (``TermSums``: the fused TV iterations' compiled
pass) against the checker's own, and a NaN anywhere failing the test."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import cvxpy as cp
import numpy as np
import pytest

import cvxprox
from cvxprox.backend import get_backend
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import Program
from cvxprox.solvers.common.term_checks import StructuredChecker
from cvxprox.solvers.common.terms import TermLayout
from cvxprox.solvers.dual_fista import DualFISTA, ProxTerms, split_terms, tv_term_sums

sys.path.insert(0, str(Path(__file__).parent))
from test_dual_tv import _iterations, _problem, _program  # noqa: E402

EPS = 1e-5


def _mixed_program() -> Program:
    """Norms, a sum of squares and constraints (indicator terms), no variable bounds."""
    rng = np.random.default_rng(0)
    x = cp.Variable(8)
    A, b = rng.standard_normal((5, 8)), rng.standard_normal(5)
    G, h = rng.standard_normal((3, 8)), rng.uniform(1.0, 2.0, 3)
    objective = cp.norm1(x) + cp.sum_squares(A @ x - b) + 2.0 * cp.norm(x[:4] - 1.0, 2)
    prob = cp.Problem(cp.Minimize(objective), [G @ x <= h, cp.sum(x) == 1.0])
    program = cvxprox.compile(prob, structure="always").program
    assert not program.has_bounds
    kinds = {term.function.is_indicator for term in program.terms}
    assert kinds == {True, False}
    return program


def _checker(program: Program) -> StructuredChecker:
    layout = TermLayout(program, get_backend("numpy", "cpu", "float64"))
    return StructuredChecker(layout, SolverOptions(eps_abs=EPS, eps_rel=EPS))


def test_evaluate_is_the_per_row_test() -> None:
    """The worst row, its tolerance and both objectives, against the module docstring's
    formulas on whole vectors: each constraint row relative to its own magnitude, each
    other term's rows to the largest over the term."""
    program = _mixed_program()
    checker = _checker(program)
    layout = checker.layout
    rng = np.random.default_rng(1)
    x, z, y = rng.standard_normal(program.n), *rng.standard_normal((2, layout.m))
    err = checker.evaluate(x, z, y)

    Ax, b = layout.matvec(x), layout.b
    magnitude = np.maximum(np.maximum(np.abs(Ax), np.abs(z)), np.abs(b))
    pobj, dobj = program.c @ x, -(y @ (z + b))
    for term, rows in zip(layout.terms, layout.slices, strict=True):
        if not term.function.is_indicator:
            magnitude[rows] = magnitude[rows].max()
            pobj += term.function(Ax[rows] - b[rows])
            dobj += term.function(z[rows])
    residual = np.abs(Ax - b - z)
    tol = EPS * checker.units.primal + EPS * magnitude
    worst = int(np.argmax(residual / tol))
    assert err.primal == residual[worst]
    assert err.primal_tol == pytest.approx(tol[worst], rel=1e-14)
    assert err.primal_objective == pytest.approx(pobj + program.offset, rel=1e-13)
    assert err.dual_objective == pytest.approx(dobj + program.offset, rel=1e-13)
    dual = np.abs(program.c + layout.rmatvec(y))
    dual_tol = EPS * checker.units.dual + EPS * np.maximum(
        np.abs(program.c), np.abs(layout.rmatvec(y))
    )
    assert err.dual / err.dual_tol == pytest.approx(np.max(dual / dual_tol), rel=1e-13)


def test_fitted_sums_take_a_term_whose_z_is_its_argument() -> None:
    """At z = A x - b, ``fitted_sums`` is the share ``evaluate`` computes from the rows
    (residual 0, f once); an indicator has no such share."""
    program = _mixed_program()
    checker = _checker(program)
    layout = checker.layout
    x = np.random.default_rng(2).standard_normal(program.n)
    Ax = layout.matvec(x)
    z = Ax - layout.b
    y = np.random.default_rng(3).standard_normal(layout.m)
    for k, term in enumerate(layout.terms):
        rows = layout.slices[k]
        if term.function.is_indicator:
            with pytest.raises(ValueError, match=f"term {k} is an indicator"):
                checker.fitted_sums(k, Ax[rows], z[rows], y[rows])
            continue
        fitted = checker.fitted_sums(k, Ax[rows], z[rows], y[rows])
        share, _ = checker._term_sums(k, Ax[rows], z[rows], y[rows])
        assert fitted == share


def test_a_nan_fails_the_test() -> None:
    """A NaN in any term's rows is the worst entry, whichever term holds it."""
    program = _mixed_program()
    checker = _checker(program)
    layout = checker.layout
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(program.n), rng.standard_normal(layout.m)
    for rows in layout.slices:
        z = layout.matvec(x) - layout.b
        z[rows.start] = math.nan
        err = checker.evaluate(x, z, y)
        assert math.isnan(err.primal)
        assert not err.converged


@pytest.mark.parametrize("form", ["isotropic", "anisotropic", "anisotropic_swapped"])
@pytest.mark.parametrize("bounded", [False, True])
def test_the_fused_sums_give_the_checker_s_error(form: str, bounded: bool) -> None:
    """The TV terms' shares from the compiled pass (``tv_term_sums``) in place of their
    rows give the error the checker computes from the whole point."""
    program = _program(_problem(form, bounded, rows=16, cols=21))
    steps = _iterations(program, fuse=True)
    steps.run(40)
    y_g, z_g, Kty = steps.probe()
    x = steps.clip(-(steps.q + Kty) * steps.H_inv)
    checker = _checker(program)
    layout = checker.layout
    prox_at = split_terms(program)[1]
    K = ProxTerms([layout.terms[k] for k in prox_at], program.n, layout.backend)
    stacked = tuple(np.zeros(layout.m) for _ in range(3))
    point, Ax, Aty = DualFISTA._point(layout, K, prox_at, x, z_g, y_g, Kty, stacked)
    whole = checker.evaluate(*point, Ax=Ax.copy(), Aty=Aty)
    # The quadratic terms' shares at z = A x - b (``fitted_sums``) give the same error.
    quadratic = {
        k: checker.fitted_sums(k, Ax[r], point[1][r], point[2][r])
        for k, r in enumerate(layout.slices)
        if k not in prox_at and program.terms[k].size
    }
    assert quadratic
    alone = checker.evaluate(*point, Ax=Ax.copy(), Aty=Aty, sums=quadratic)
    for name in ("primal", "primal_tol", "primal_objective", "dual_objective", "gap_tol"):
        assert getattr(alone, name) == pytest.approx(getattr(whole, name), rel=1e-12), name
    sums = tv_term_sums(steps.grid, steps.term_sums(x), prox_at)
    assert set(sums) == set(prox_at)
    Ax[:] = math.nan  # the summed terms' rows are not read
    for k, term in enumerate(program.terms):
        if k not in sums:
            Ax[layout.slices[k]] = term.op.matvec(x) if term.size else 0.0
    parts = checker.evaluate(*point, Ax=Ax, Aty=Aty, sums=sums)
    assert parts.primal / parts.primal_tol == pytest.approx(
        whole.primal / whole.primal_tol, rel=1e-12
    )
    for name in ("primal_objective", "dual_objective", "gap_tol", "dual"):
        assert getattr(parts, name) == pytest.approx(getattr(whole, name), rel=1e-12), name
