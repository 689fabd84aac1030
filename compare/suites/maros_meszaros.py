"""Maros-Meszaros QPs at qpbenchmark's "low accuracy" setting.

The setting reproduces qpbenchmark (``qpbenchmark/test_set.py``, ``solver_settings.py``,
``results.py``; residuals as in ``qpsolvers.Solution``):

- solvers get ``eps_abs = 1e-3`` and ``eps_rel = 0`` (the suite's default accuracy,
  mapped to each solver's options like any other) plus the time limit;
- a solve is "found" when the status is ``optimal`` (qpsolvers counts only a fully
  solved status, not an inaccurate one);
- it is a success when found and primal residual, dual residual and duality gap are all
  ``< 1e-3`` (absolute), computed from the returned ``x`` and constraint duals:

  - primal: ``max(0, max(Gx - h), max |A_eq x - b|, max(lb - x), max(x - ub))``, i.e.
    ``|| max(Ax - u, 0) + max(l - Ax, 0) ||_inf`` in the OSQP form;
  - dual: ``|| Px + q + A'y ||_inf`` with ``y = y_u - y_l`` (CVXPY duals of ``<= u``
    and ``>= l`` are both ``>= 0``; equality duals are signed);
  - gap: ``| x'Px + q'x + b'y_eq + u'y_u - l'y_l + lb'min(z, 0) + ub'max(z, 0) |`` over
    finite bounds, where ``z`` is the combined dual of the variable bounds.

qpbenchmark's own time limit for this set is 1000 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache, partial
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.io as sio

from compare.datasets import (
    ConstraintBlock,
    maros_meszaros_blocks,
    maros_meszaros_path,
    maros_meszaros_problem,
    maros_meszaros_problems,
    read_maros_meszaros,
)
from compare.harness import Case, Suite
from compare.solve import Verdict

#: Solver tolerance of the low-accuracy setting (eps_rel = 0).
EPS_ABS = 1e-3

#: Success thresholds on primal residual, dual residual and duality gap (strict <).
PRIMAL_TOL = DUAL_TOL = GAP_TOL = 1e-3

#: qpbenchmark's runtime limit for the Maros-Meszaros set (seconds).
QPBENCHMARK_TIME_LIMIT = 1000.0


def qpbenchmark_residuals(
    data: dict[str, Any],
    blocks: Sequence[ConstraintBlock],
    x: np.ndarray,
    duals: Sequence[np.ndarray | None],
) -> tuple[float, float, float]:
    """Primal residual, dual residual and duality gap of ``(x, duals)``.

    ``duals`` are the CVXPY dual values of the model's constraints, aligned with
    ``blocks`` (see ``datasets.maros_meszaros_blocks``). Without duals, the dual
    residual and the gap are infinite (as in qpsolvers).
    """
    P, q, A, l, u, n = (data[k] for k in ("P", "q", "A", "l", "u", "n"))
    m_c = A.shape[0] - n
    Ax = A @ x
    primal = float(np.max(np.maximum(Ax - u, 0.0) + np.maximum(l - Ax, 0.0), initial=0.0))
    if any(d is None for d in duals):
        return primal, np.inf, np.inf

    y = np.zeros(A.shape[0])  # y = y_u - y_l, per row of A
    gap = float(x @ (P @ x) + q @ x)
    for block, dual in zip(blocks, duals, strict=True):
        d = np.ravel(dual)
        sign, rhs = (-1.0, l) if block.kind == "lower" else (1.0, u)
        y[block.rows] += sign * d
        if not block.bound:
            gap += sign * float(rhs[block.rows] @ d)
    z, lb, ub = y[m_c:], l[m_c:], u[m_c:]  # bounds: combined dual, as qpsolvers' z_box
    finite = np.isfinite(lb)
    gap += float(lb[finite] @ np.minimum(z[finite], 0.0))
    finite = np.isfinite(ub)
    gap += float(ub[finite] @ np.maximum(z[finite], 0.0))
    dual = float(np.linalg.norm(P @ x + q + A.T @ y, np.inf))
    return primal, dual, abs(gap)


@lru_cache(maxsize=1)
def _read(name: str) -> dict[str, Any]:
    """Data of the problem being solved (read once for building and assessing)."""
    return read_maros_meszaros(name)


def build_maros_meszaros(name: str) -> cp.Problem:
    """The CVXPY model of one Maros-Meszaros QP."""
    return maros_meszaros_problem(_read(name))


def assess(name: str, prob: cp.Problem) -> Verdict:
    """qpbenchmark's success test of a solved Maros-Meszaros QP."""
    x = prob.variables()[0].value
    if prob.status != cp.OPTIMAL or x is None:
        return Verdict(False, "not found (status is not optimal)")
    data = _read(name)
    duals = [c.dual_value for c in prob.constraints]
    primal, dual, gap = qpbenchmark_residuals(data, maros_meszaros_blocks(data), x, duals)
    passed = primal < PRIMAL_TOL and dual < DUAL_TOL and gap < GAP_TOL
    return Verdict(passed, f"primal {primal:.1e}, dual {dual:.1e}, gap {gap:.1e}")


def _case(name: str) -> Case:
    """A Maros-Meszaros case; reads only ``n`` from its file."""
    n = sio.loadmat(str(maros_meszaros_path(name)), variable_names=["n"])["n"]
    return Case(
        name=name,
        problem_class="QP",
        size=int(np.asarray(n).ravel()[0]),
        build=partial(build_maros_meszaros, name),
        assess=partial(assess, name),
    )


def suite() -> Suite:
    """The Maros-Meszaros suite, smallest file first, at eps_abs = 1e-3, eps_rel = 0."""
    return Suite(
        name="maros-meszaros",
        title="Maros-Meszaros QP benchmark (qpbenchmark low-accuracy setting)",
        cases=tuple(_case(name) for name in maros_meszaros_problems()),
        notes=(
            "Success (qpbenchmark): status `optimal` and primal residual, dual residual and "
            f"duality gap all < {PRIMAL_TOL:g}, recomputed from x and the duals; the "
            "objective test does not apply (no reference).",
            f"qpbenchmark allows {QPBENCHMARK_TIME_LIMIT:g} s per problem on this set; with "
            "a shorter time limit the success rates here are lower bounds.",
        ),
        eps_abs=EPS_ABS,
        eps_rel=0.0,
    )
