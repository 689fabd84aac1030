"""Maros-Meszaros QP benchmark at qpbenchmark's "low accuracy" setting.

Usage (from the repository root)::

    python compare/maros_meszaros.py [--solvers NABLAPROX,SCS,OSQP] [--time-limit 10]
                                     [--subset N] [--problems HS21,QAFIRO]

The setting reproduces qpbenchmark (``qpbenchmark/test_set.py``, ``solver_settings.py``,
``results.py``; residuals as in ``qpsolvers.Solution``):

- solvers get ``eps_abs = 1e-3`` and ``eps_rel = 0`` (the matching options for Clarabel
  and HiGHS) plus the time limit, other options at their CVXPY defaults;
- a solve is "found" when the status is ``optimal`` (qpsolvers counts only a fully
  solved status, not an inaccurate one);
- it is a success when found and primal residual, dual residual and duality gap are all
  ``< 1e-3`` (absolute), computed here from the returned ``x`` and constraint duals:

  - primal: ``max(0, max(Gx - h), max |A_eq x - b|, max(lb - x), max(x - ub))``, i.e.
    ``|| max(Ax - u, 0) + max(l - Ax, 0) ||_inf`` in the OSQP form;
  - dual: ``|| Px + q + A'y ||_inf`` with ``y = y_u - y_l`` (CVXPY duals of ``<= u``
    and ``>= l`` are both ``>= 0``; equality duals are signed);
  - gap: ``| x'Px + q'x + b'y_eq + u'y_u - l'y_l + lb'min(z, 0) + ub'max(z, 0) |`` over
    finite bounds, where ``z`` is the combined dual of the variable bounds;

- the runtime's shifted geometric mean (shift 10) charges the time limit when not found.

qpbenchmark's own time limit for this set is 1000 s; the default here is 10 s, and the
runtime includes CVXPY's compilation. Writes ``compare/results/maros_meszaros.{csv,md}``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `compare` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from functools import lru_cache  # noqa: E402
from typing import Any  # noqa: E402

import cvxpy as cp  # noqa: E402
import numpy as np  # noqa: E402

from compare import common  # noqa: E402
from compare.datasets import (  # noqa: E402
    ConstraintBlock,
    maros_meszaros_blocks,
    maros_meszaros_problem,
    maros_meszaros_problems,
    read_maros_meszaros,
)

#: Solver tolerance of the low-accuracy setting (eps_rel = 0).
EPS_ABS = 1e-3

#: Success thresholds on primal residual, dual residual and duality gap (strict <).
PRIMAL_TOL = DUAL_TOL = GAP_TOL = 1e-3

#: qpbenchmark's runtime limit for the Maros-Meszaros set (seconds).
QPBENCHMARK_TIME_LIMIT = 1000.0


def low_accuracy_options(solver: str) -> dict[str, float]:
    """Solver options of qpbenchmark's low-accuracy setting, in CVXPY's option names."""
    if solver in ("SCS", "OSQP", common.NABLAPROX):
        return {"eps_abs": EPS_ABS, "eps_rel": 0.0}
    if solver == "CLARABEL":
        return {"tol_feas": EPS_ABS, "tol_gap_abs": EPS_ABS, "tol_gap_rel": 0.0}
    if solver == "HIGHS":
        return {"primal_feasibility_tolerance": EPS_ABS, "dual_feasibility_tolerance": EPS_ABS}
    return {}


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
    """Data of the last problem read (the worker solves it once per solver)."""
    return read_maros_meszaros(name)


def solve_maros_meszaros(name: str, solver: str, time_limit: float) -> dict[str, Any]:
    """Worker task: build the QP afresh, solve it at low accuracy, compute residuals."""
    data = _read(name)
    prob = maros_meszaros_problem(data)
    options = {**low_accuracy_options(solver), **common.time_limit_options(solver, time_limit)}
    result = common.timed_solve(prob, solver, options)
    found = result["status"] == cp.OPTIMAL
    x = prob.variables()[0].value
    primal = dual = gap = np.inf
    if found and x is not None:
        duals = [c.dual_value for c in prob.constraints]
        primal, dual, gap = qpbenchmark_residuals(data, maros_meszaros_blocks(data), x, duals)
    result.update(
        n=data["n"],
        m=data["A"].shape[0] - data["n"],
        found=found,
        primal_residual=primal,
        dual_residual=dual,
        duality_gap=gap,
    )
    return result


def run(
    names: list[str], solvers: list[str], time_limit: float, results_dir: Path
) -> list[dict[str, Any]]:
    """Solve every problem with every solver; one record per solve."""
    records = []
    timeout = 2 * time_limit + 30
    with common.SolveWorker() as worker:
        for i, name in enumerate(names, 1):
            for solver in solvers:
                res = worker.run(solve_maros_meszaros, (name, solver, time_limit), timeout)
                primal = res.get("primal_residual", np.inf)
                dual = res.get("dual_residual", np.inf)
                gap = res.get("duality_gap", np.inf)
                found = res.get("found", False)
                success = found and primal < PRIMAL_TOL and dual < DUAL_TOL and gap < GAP_TOL
                records.append(
                    {
                        "problem": name,
                        "n": res.get("n", ""),
                        "m": res.get("m", ""),
                        "solver": solver,
                        "status": res["status"],
                        "objective": res.get("objective", np.nan),
                        "time": res.get("time", np.nan),
                        "found": found,
                        "primal_residual": primal,
                        "dual_residual": dual,
                        "duality_gap": gap,
                        "success": success,
                    }
                )
                common.log(
                    f"[{i}/{len(names)}] {name:10s} {solver:10s} {res['status']:22s} "
                    f"{'success' if success else 'fail':7s} p={common.fmt(primal)} "
                    f"d={common.fmt(dual)} gap={common.fmt(gap)} "
                    f"time={common.fmt(res.get('time'), '.3f')}s"
                )
            common.save_progress(results_dir, "maros_meszaros", records)
    return records


def report(
    records: list[dict[str, Any]], solvers: list[str], time_limit: float, header: list[str]
) -> str:
    """Markdown report: settings, success rate per solver, per-problem table."""
    lines = ["# Maros-Meszaros QP benchmark (qpbenchmark low-accuracy setting)", ""]
    lines += header + [
        f"- **Time limit: {time_limit:g} s** per solve (solver option; hard kill at "
        f"{2 * time_limit + 30:g} s). qpbenchmark itself allows "
        f"{QPBENCHMARK_TIME_LIMIT:g} s on this set, so rates here are lower bounds.",
        f"- Solver options: eps_abs = {EPS_ABS:g}, eps_rel = 0 (Clarabel: tol_feas, "
        "tol_gap_abs, tol_gap_rel = 0; HiGHS: primal/dual feasibility tolerance), CVXPY "
        "defaults otherwise.",
        f"- Success: status `optimal` and primal residual < {PRIMAL_TOL:g}, dual residual "
        f"< {DUAL_TOL:g}, duality gap < {GAP_TOL:g}, recomputed from x and the duals.",
        "- Time: wall time of `prob.solve` on a fresh problem (CVXPY compile included); "
        "shifted geometric mean with shift 10 s, the time limit charged when not found.",
        "",
        "## Summary",
        "",
    ]
    rows, means = [], {}
    for solver in solvers:
        mine = [r for r in records if r["solver"] == solver]
        means[solver] = common.shifted_geometric_mean(
            r["time"] if r["found"] else time_limit for r in mine
        )
        successes = sum(r["success"] for r in mine)
        rows.append(
            [
                solver,
                f"{100.0 * successes / len(mine):.1f}",
                f"{successes}/{len(mine)}",
                f"{sum(r['found'] for r in mine)}/{len(mine)}",
                common.fmt(means[solver], ".3f"),
            ]
        )
    best = min(means.values())
    for row, solver in zip(rows, solvers, strict=True):
        row.append(common.fmt(means[solver] / best, ".2f") if best > 0 else "-")
    headers = ["Solver", "success rate (%)", "successes", "found", "time sgm (s)", "sgm / best"]
    lines += [common.markdown_table(headers, rows), "", "## Problems", ""]

    names = list(dict.fromkeys(r["problem"] for r in records))
    by_key = {(r["problem"], r["solver"]): r for r in records}
    headers = ["Problem", "n", "m"]
    for solver in solvers:
        headers += [f"{solver} status", f"{solver} time (s)", f"{solver} primal / dual / gap"]
    table = []
    for name in names:
        sized = [r for r in records if r["problem"] == name and r["n"] != ""]
        row = [name, sized[0]["n"] if sized else "?", sized[0]["m"] if sized else "?"]
        for solver in solvers:
            r = by_key[(name, solver)]
            residuals = " / ".join(
                common.fmt(r[k], ".1e") for k in ("primal_residual", "dual_residual", "duality_gap")
            )
            row += [
                ("✓ " if r["success"] else "") + r["status"],
                common.fmt(r["time"], ".3f"),
                residuals,
            ]
        table.append(row)
    lines += [common.markdown_table(headers, table)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--solvers", default="NABLAPROX,SCS,OSQP", help="comma-separated")
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per solve")
    parser.add_argument("--subset", type=int, help="only the N smallest problems")
    parser.add_argument("--problems", help="comma-separated problem names to keep")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    args = parser.parse_args(argv)
    solvers = common.parse_solvers(args.solvers)

    names = maros_meszaros_problems()
    if args.problems:
        keep = set(args.problems.split(","))
        names = [n for n in names if n in keep]
    names = names[: args.subset]
    if not names:
        sys.exit("error: no problem selected")

    records = run(names, solvers, args.time_limit, args.results_dir)
    markdown = report(records, solvers, args.time_limit, common.environment_lines(solvers))
    print(markdown)
    common.write_results(args.results_dir, "maros_meszaros", records, markdown)


if __name__ == "__main__":
    main()
