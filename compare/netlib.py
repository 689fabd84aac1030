"""Netlib LP benchmark: 92 feasible LPs with known optima, 28 infeasible LPs.

Usage (from the repository root)::

    python compare/netlib.py [--solvers NABLAPROX,SCS,HIGHS] [--time-limit 60]
                             [--subset N] [--infeasible-only] [--problems AFIRO,KB2]

Each solver runs with its default options plus the time limit, on a freshly built
CVXPY problem; the time includes CVXPY's compilation. A feasible LP counts as solved
when the status is optimal or optimal_inaccurate and ``|obj - known| / max(1, |known|)
<= 1e-4``; an infeasible LP counts when the status is ``infeasible``. The shifted
geometric mean of the time (shift 10 s) charges the time limit to every unsolved LP.

Writes ``compare/results/netlib.{csv,md}`` and prints the Markdown report.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `compare` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
from functools import lru_cache  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from compare import common  # noqa: E402
from compare.datasets import (  # noqa: E402
    NetlibData,
    data_dir,
    netlib_problem,
    netlib_problems,
    read_netlib,
)

#: Relative objective tolerance for a feasible LP to count as solved.
TOLERANCE = 1e-4

#: Problems whose known value (from the Netlib readme) is off by more than ``TOLERANCE``
#: on these data files: HiGHS, simplex and IPM alike, finds points that are feasible to
#: 1e-7 with the objective below (PILOT: Clarabel at 1e-10 tolerances agrees to 1e-6).
SUSPECT_REFERENCES = {
    "GREENBEA": -7.2555248130e07,
    "PILOT": -5.5748972929e02,
}

#: Infeasible LPs that are also dual infeasible (a ray ``d`` with ``c'd < 0`` exists), so
#: an ``unbounded`` certificate is valid too; only ``infeasible`` counts, as specified.
ALSO_DUAL_INFEASIBLE = {"cplex1"}


@lru_cache(maxsize=1)
def _read(name: str, infeasible: bool) -> NetlibData:
    """Data of the last problem read (the worker solves it once per solver)."""
    return read_netlib(name, infeasible)


def known_optimum(name: str) -> float:
    """Known optimal value of a feasible LP (reads only ``obj`` from its file)."""
    with np.load(data_dir() / "netlib" / f"{name}.npz", allow_pickle=True) as f:
        return float(f["obj"])


def solve_netlib(name: str, infeasible: bool, solver: str, time_limit: float) -> dict[str, Any]:
    """Worker task: build the LP afresh and solve it; adds its size to the result."""
    data = _read(name, infeasible)
    result = common.timed_solve(
        netlib_problem(data), solver, common.time_limit_options(solver, time_limit)
    )
    result["rows"] = data.A_ub.shape[0] + data.A_eq.shape[0]
    result["cols"] = data.c.size
    return result


def run(
    problems: list[tuple[str, bool]], solvers: list[str], time_limit: float, results_dir: Path
) -> list[dict[str, Any]]:
    """Solve every (problem, infeasible) pair with every solver; one record per solve."""
    records = []
    timeout = 2 * time_limit + 30
    with common.SolveWorker() as worker:
        for i, (name, infeasible) in enumerate(problems, 1):
            known = np.nan if infeasible else known_optimum(name)
            for solver in solvers:
                res = worker.run(solve_netlib, (name, infeasible, solver, time_limit), timeout)
                objective = res.get("objective", np.nan)
                rel_err = common.relative_error(objective, known)  # NaN if infeasible
                status = res["status"]
                if infeasible:
                    success = status == "infeasible"
                else:
                    success = status in common.SOLVED and rel_err <= TOLERANCE
                records.append(
                    {
                        "set": "infeasible" if infeasible else "feasible",
                        "problem": name,
                        "rows": res.get("rows", ""),
                        "cols": res.get("cols", ""),
                        "solver": solver,
                        "status": status,
                        "objective": objective,
                        "known": known,
                        "rel_err": rel_err,
                        "time": res.get("time", np.nan),
                        "success": success,
                    }
                )
                common.log(
                    f"[{i}/{len(problems)}] {name:10s} {solver:10s} {status:22s} "
                    f"rel_err={common.fmt(rel_err)} time={common.fmt(res.get('time'), '.3f')}s"
                )
            common.save_progress(results_dir, "netlib", records)
    return records


def report(
    records: list[dict[str, Any]], solvers: list[str], time_limit: float, header: list[str]
) -> str:
    """Markdown report: settings, summary per solver, per-problem tables."""
    lines = ["# Netlib LP benchmark", ""] + header + [""]
    lines += [
        f"- Time limit: {time_limit:g} s per solve (solver option; hard kill at "
        f"{2 * time_limit + 30:g} s); default solver options otherwise.",
        f"- Feasible LPs: solved if status optimal/optimal_inaccurate and relative error "
        f"|obj - known| / max(1, |known|) <= {TOLERANCE:g}.",
        "- Infeasible LPs: solved if status is `infeasible` (a certificate).",
        "- Time: wall time of `prob.solve` on a fresh problem (CVXPY compile included); "
        "shifted geometric mean with shift 10 s, unsolved LPs charged the time limit.",
        "",
        "## Summary",
        "",
    ]
    sets = [s for s in ("feasible", "infeasible") if any(r["set"] == s for r in records)]
    headers = ["Solver"]
    for s in sets:
        headers += [f"{s} solved", f"{s} time (sgm, s)"]
    rows = []
    for solver in solvers:
        row = [solver]
        for s in sets:
            mine = [r for r in records if r["set"] == s and r["solver"] == solver]
            solved = sum(r["success"] for r in mine)
            sgm = common.shifted_geometric_mean(
                r["time"] if r["success"] else time_limit for r in mine
            )
            row += [f"{solved}/{len(mine)}", common.fmt(sgm, ".3g")]
        rows.append(row)
    lines += [common.markdown_table(headers, rows), ""]
    for s in sets:
        lines += _problem_table(records, solvers, s)
    return "\n".join(lines)


def _problem_table(records: list[dict[str, Any]], solvers: list[str], which: str) -> list[str]:
    """Per-problem Markdown table of one set (feasible or infeasible)."""
    mine = [r for r in records if r["set"] == which]
    names = list(dict.fromkeys(r["problem"] for r in mine))
    by_key = {(r["problem"], r["solver"]): r for r in mine}
    headers = ["Problem", "rows x cols"] + (["known"] if which == "feasible" else [])
    for solver in solvers:
        headers += [f"{solver} status"]
        headers += [f"{solver} rel err"] if which == "feasible" else []
        headers += [f"{solver} time (s)"]
    rows = []
    for name in names:
        sized = [r for r in mine if r["problem"] == name and r["rows"] != ""]
        size = f"{sized[0]['rows']} x {sized[0]['cols']}" if sized else "?"
        label = name
        if name in SUSPECT_REFERENCES and which == "feasible":
            label += " †"
        if name in ALSO_DUAL_INFEASIBLE and which == "infeasible":
            label += " ‡"
        row = [label, size]
        row += [f"{by_key[(name, solvers[0])]['known']:.10g}"] if which == "feasible" else []
        for solver in solvers:
            r = by_key[(name, solver)]
            row += [("✓ " if r["success"] else "") + r["status"]]
            row += [common.fmt(r["rel_err"])] if which == "feasible" else []
            row += [common.fmt(r["time"], ".3f")]
        rows.append(row)
    lines = [f"## {which.capitalize()} LPs", "", common.markdown_table(headers, rows), ""]
    if which == "feasible" and any(n in SUSPECT_REFERENCES for n in names):
        lines += [
            "† The known value is off by more than the tolerance on this data file: "
            "HiGHS finds feasible points (to 1e-7) with objective "
            + ", ".join(f"{n}: {v:.10g}" for n, v in SUSPECT_REFERENCES.items() if n in names)
            + ".",
            "",
        ]
    if which == "infeasible" and any(n in ALSO_DUAL_INFEASIBLE for n in names):
        lines += [
            "‡ Also dual infeasible (HiGHS finds a ray d with c'd < 0 in the recession "
            "cone), so an `unbounded` status carries a valid certificate too; only "
            "`infeasible` is counted.",
            "",
        ]
    return lines


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--solvers", default="NABLAPROX,SCS,HIGHS", help="comma-separated")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per solve")
    parser.add_argument("--subset", type=int, help="only the N smallest LPs of each set")
    parser.add_argument("--infeasible-only", action="store_true", help="only the 28 infeasible")
    parser.add_argument("--problems", help="comma-separated problem names to keep")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    args = parser.parse_args(argv)
    solvers = common.parse_solvers(args.solvers)

    sets = [True] if args.infeasible_only else [False, True]
    problems = []
    for infeasible in sets:
        names = netlib_problems(infeasible)
        if args.problems:
            keep = set(args.problems.split(","))
            names = [n for n in names if n in keep]
        problems += [(name, infeasible) for name in names[: args.subset]]
    if not problems:
        sys.exit("error: no problem selected")

    records = run(problems, solvers, args.time_limit, args.results_dir)
    markdown = report(records, solvers, args.time_limit, common.environment_lines(solvers))
    print(markdown)
    common.write_results(args.results_dir, "netlib", records, markdown)


if __name__ == "__main__":
    main()
