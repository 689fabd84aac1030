"""NABLAPROX's ADMM (``algorithm="admm"``, or ``"hsde"``: on the homogeneous self-dual
embedding, as SCS) next to SCS, iteration by iteration.

Usage (from the repository root)::

    CVXPROX_DATA=/work/shared/data python -m compare.admm_anchor [--max-nnz 5000]
        [--suites netlib,maros-meszaros,zoo] [--cases A,B] [--max-iters 20000]
        [--time-limit 30] [--algorithm admm] [--out results.csv] [--scs-from earlier.csv]

The set: every Netlib LP (feasible and infeasible) and Maros-Meszaros QP with at most
``--max-nnz`` nonzeros in its constraint matrix (and P), and the zoo's LP and QP models.
Both solvers get the suite's accuracy (Netlib and the zoo: ``eps_abs = eps_rel = 1e-4``;
Maros-Meszaros: qpbenchmark's ``eps_abs = 1e-3, eps_rel = 0``), the same iteration cap
and time limit, and are judged by the suite's own success test (``harness.judge``: the
known optimum of a Netlib LP, status ``infeasible`` for an infeasible one, qpbenchmark's
residuals, Clarabel at 1e-10 for the zoo). Solves run in this process, one after the
other (iterations are what is compared; times are only reported).

The summary gives the successes of each solver and the median, over the cases both
solve, of the ratio of NABLAPROX's iterations to SCS's. ``--scs-from`` takes SCS's
columns from the CSV of an earlier run with the same settings instead of solving again.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import cvxpy as cp
import numpy as np
import scipy.io as sio

from compare.datasets import netlib_path
from compare.harness import Case, RunConfig, judge
from compare.solve import SolveTask, _measure
from compare.suites import maros_meszaros, netlib, zoo

#: The suites' accuracies (eps_abs, eps_rel).
ACCURACY = {"netlib": (1e-4, 1e-4), "maros-meszaros": (1e-3, 0.0), "zoo": (1e-4, 1e-4)}


class ScsOutcome(NamedTuple):
    """SCS's part of a row."""

    status: str
    iterations: float
    time: float
    success: bool
    note: str


@dataclass
class Row:
    """One case solved by both solvers."""

    suite: str
    case: str
    group: str
    nnz: int
    admm_status: str
    admm_iters: float
    admm_time: float
    admm_success: bool
    scs_status: str
    scs_iters: float
    scs_time: float
    scs_success: bool
    note: str


def _netlib_nnz(name: str, infeasible: bool) -> int:
    with np.load(netlib_path(name, infeasible), allow_pickle=True) as f:
        return int(np.count_nonzero(f["A_ub"]) + np.count_nonzero(f["A_eq"]))


def _mm_nnz(name: str) -> int:
    mat = sio.loadmat(str(maros_meszaros.maros_meszaros_path(name)), variable_names=["A", "P"])
    return int(mat["A"].nnz + mat["P"].nnz)


def select_cases(suites: list[str], max_nnz: int) -> Iterator[tuple[str, Case, int]]:
    """(suite, case, nnz) of the benchmark set, smallest first within each suite."""
    if "netlib" in suites:
        for case in netlib.suite().cases:
            nnz = _netlib_nnz(case.name, case.group == "infeasible")
            if nnz <= max_nnz:
                yield "netlib", case, nnz
    if "maros-meszaros" in suites:
        for case in maros_meszaros.suite().cases:
            nnz = _mm_nnz(case.name)
            if nnz <= max_nnz:
                yield "maros-meszaros", case, nnz
    if "zoo" in suites:
        for case in zoo.suite().cases:
            if case.problem_class in ("LP", "QP"):
                yield "zoo", case, 0


def _reference(suite: str, case: Case) -> float:
    if case.reference is not None or case.expect != cp.OPTIMAL or suite != "zoo":
        return math.nan if case.reference is None else case.reference
    prob = case.build()
    prob.solve(solver="CLARABEL", **zoo.REFERENCE_OPTIONS)
    return float(prob.value)


def _solve(case: Case, solver: str, options: dict, reference: float, config: RunConfig):
    import cvxprox  # noqa: F401  (registers NABLAPROX)

    task = SolveTask(case.build, case.problem_class, solver, config.settings, assess=case.assess)
    outcome = _measure(case.build(), task, options)
    success, why = judge(case, outcome, reference, config)
    return outcome, success, "; ".join(n for n in (outcome.note, why) if n)


def _earlier_scs(path: Path | None) -> dict[tuple[str, str], ScsOutcome]:
    """SCS's (status, iterations, time, success) per (suite, case) of an earlier CSV."""
    if path is None:
        return {}
    with path.open() as f:
        return {
            (r["suite"], r["case"]): ScsOutcome(
                r["scs_status"],
                float(r["scs_iters"]),
                float(r["scs_time"]),
                r["scs_success"] == "True",
                r["note"].partition(" | scs: ")[2],
            )
            for r in csv.DictReader(f)
        }


def run(args: argparse.Namespace) -> list[Row]:
    """Solve the set with both solvers; print one line per case."""
    rows = []
    earlier = _earlier_scs(args.scs_from)
    names = set(args.cases.split(",")) if args.cases else None
    for suite, case, nnz in select_cases(args.suites.split(","), args.max_nnz):
        if names is not None and case.name not in names:
            continue
        eps_abs, eps_rel = ACCURACY[suite]
        config = RunConfig(eps_abs, eps_rel, timeout=args.time_limit)
        reference = _reference(suite, case)
        common = {"eps_abs": eps_abs, "eps_rel": eps_rel}
        ours = {**common, "algorithm": args.algorithm, "max_iters": args.max_iters}
        ours["time_limit"] = args.time_limit
        scs = {**common, "max_iters": args.max_iters, "time_limit_secs": args.time_limit}
        a, a_ok, a_note = _solve(case, "NABLAPROX", ours, reference, config)
        if (suite, case.name) in earlier:
            s = earlier[suite, case.name]
            s_ok, s_note = s.success, s.note
        else:
            outcome, s_ok, s_note = _solve(case, "SCS", scs, reference, config)
            s = ScsOutcome(outcome.status, outcome.iterations, outcome.solve_time, s_ok, s_note)
        row = Row(
            suite,
            case.name,
            case.group,
            nnz,
            a.status,
            a.iterations,
            a.solve_time,
            a_ok,
            s.status,
            s.iterations,
            s.time,
            s_ok,
            f"admm: {a_note} | scs: {s_note}",
        )
        rows.append(row)
        print(
            f"{suite:15s} {case.name:12s} nnz={nnz:6d} "
            f"admm {a.status:20s} {a.iterations:8.0f} {a.solve_time:6.2f}s {'ok' if a_ok else '--'}"
            f"  scs {s.status:20s} {s.iterations:8.0f} {s.time:6.2f}s {'ok' if s_ok else '--'}",
            flush=True,
        )
    return rows


def summary(rows: list[Row]) -> str:
    """Successes per suite and solver, and the median iteration ratio ADMM / SCS."""
    lines = []
    for suite in dict.fromkeys(r.suite for r in rows):
        part = [r for r in rows if r.suite == suite]
        both = [r for r in part if r.admm_success and r.scs_success]
        ratios = [r.admm_iters / max(r.scs_iters, 1.0) for r in both]
        median = float(np.median(ratios)) if ratios else math.nan
        lines.append(
            f"{suite}: {len(part)} cases; ADMM {sum(r.admm_success for r in part)}, "
            f"SCS {sum(r.scs_success for r in part)}; median iteration ratio "
            f"{median:.2f} over {len(both)} solved by both"
        )
    both = [r for r in rows if r.admm_success and r.scs_success]
    ratios = [r.admm_iters / max(r.scs_iters, 1.0) for r in both]
    lines.append(
        f"all: {len(rows)} cases; ADMM {sum(r.admm_success for r in rows)}, "
        f"SCS {sum(r.scs_success for r in rows)}; median iteration ratio "
        f"{float(np.median(ratios)) if ratios else math.nan:.2f} over {len(both)}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default="netlib,maros-meszaros,zoo")
    parser.add_argument("--max-nnz", type=int, default=5000)
    parser.add_argument("--cases", default="", help="comma-separated case names")
    parser.add_argument("--max-iters", type=int, default=20_000)
    parser.add_argument("--time-limit", type=float, default=30.0)
    parser.add_argument("--algorithm", choices=("admm", "hsde"), default="admm")
    parser.add_argument("--out", type=Path, default=None, help="CSV of the rows")
    parser.add_argument("--scs-from", type=Path, default=None, help="CSV of an earlier run")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = run(args)
    print(summary(rows))
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.out is not None:
        with args.out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)


if __name__ == "__main__":
    main(sys.argv[1:])
