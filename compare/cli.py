"""Command line of the benchmark harness: ``python -m compare --suite zoo,netlib ...``.

For each suite: pick the solvers (by default every installed one that applies to the
suite's problem classes), run every case in child processes (see
:mod:`compare.harness`), and write ``<out>/<suite>.{md,csv}`` and
``<out>/<suite>_profile.png``. A ``<suite>.csv.tmp`` holds the records so far while it
runs.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compare.harness import RESULTS_DIR, RunConfig, Suite, iter_suite
from compare.report import RunInfo, peer_ratio_lines, summary_table, write_csv, write_report
from compare.solvers import SOLVERS, unavailable_reason
from compare.suites import SIZED_SUITES, SUITES, make_suite


def _names(text: str | None) -> list[str]:
    """Comma-separated names -> list (empty for None)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _eps(text: str) -> float | str:
    """``--eps``: a positive number, or ``default``."""
    if text == "default":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'default', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"eps must be positive, got {text}")
    return value


def _option(text: str) -> tuple[str, Any]:
    """``--nablaprox-option NAME=VALUE`` -> (name, value), the value a literal if it is one."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    return name.strip(), parsed


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (old script option names are accepted as aliases)."""
    parser = argparse.ArgumentParser(
        prog="python -m compare", description="Benchmark NABLAPROX against other solvers."
    )
    parser.add_argument("--suite", required=True, help=f"comma-separated: {', '.join(SUITES)}")
    parser.add_argument(
        "--solvers",
        help=f"comma-separated, of {', '.join(SOLVERS)} (default: every installed solver "
        "that applies to the suite's problem classes)",
    )
    parser.add_argument(
        "--eps",
        type=_eps,
        help="eps_abs = eps_rel asked of every solver, or 'default' for each solver's own "
        "tolerances (default: the suite's own: solver defaults; maros-meszaros: eps_abs = "
        "1e-3, eps_rel = 0; structured: 1e-4)",
    )
    parser.add_argument(
        "--tol",
        type=float,
        help="success tolerance (default: the suite's own (structured 1e-3), else "
        "max(eps_abs, eps_rel, 1e-4))",
    )
    parser.add_argument(
        "--timeout",
        "--time-limit",
        type=float,
        help="seconds per solve (default: the suite's own; netlib 10, energy 300, "
        "structured 1200, else 60)",
    )
    parser.add_argument(
        "--memory-gb", type=float, default=8.0, help="GB per solve (8; 0: no limit)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="solves per case and solver, fastest kept (only while a solve takes < 1 s)",
    )
    parser.add_argument("--device", default="cpu", help="NABLAPROX's device option (cpu)")
    parser.add_argument(
        "--nablaprox-option",
        action="append",
        type=_option,
        default=[],
        metavar="NAME=VALUE",
        help="a further NABLAPROX option (repeatable), e.g. algorithm=pdhg; the value is read "
        "as a Python literal when it is one (1e-4, False), else as a string",
    )
    parser.add_argument("--subset", type=int, help="only the first N cases (of each group)")
    parser.add_argument(
        "--cases", "--models", "--problems", help="comma-separated case names (one suite)"
    )
    parser.add_argument(
        "--sizes",
        help="energy suite: comma-separated NODESxHOURS; structured suite: comma-separated "
        "MODEL=SIZE (image side, signal length, lasso features), e.g. tv_denoising=64",
    )
    parser.add_argument(
        "--out", "--results-dir", type=Path, default=RESULTS_DIR, help="(compare/results)"
    )
    return parser


def choose_solvers(requested: Sequence[str], suite: Suite) -> tuple[list[str], dict[str, str]]:
    """The solvers to run on ``suite`` and the unavailable ones with the reason.

    ``requested`` empty means the suite's own set, or every default solver that applies
    to the suite's classes.
    """
    candidates = (
        list(requested)
        or list(suite.solvers)
        or [name for name, spec in SOLVERS.items() if spec.default and spec.classes & suite.classes]
    )
    unavailable = {name: unavailable_reason(name) for name in candidates}
    chosen = [name for name in candidates if unavailable[name] is None]
    return chosen, {name: why for name, why in unavailable.items() if why is not None}


def run(suite: Suite, solvers: Sequence[str], config: RunConfig, info: RunInfo) -> list[Path]:
    """Run one suite, saving progress to ``<suite>.csv.tmp``; write and return its reports."""
    progress = config.out / f"{suite.stem}.csv.tmp"
    records = []
    for record in iter_suite(suite, solvers, config):
        records.append(record)
        write_csv(progress, records)
    paths = write_report(records, info)
    progress.unlink(missing_ok=True)
    print(f"\n## {suite.title}\n\n{summary_table(records, solvers, config.timeout)}\n")
    if suite.peer_ratio is not None:
        print("\n".join(peer_ratio_lines(records, suite.peer_ratio, solvers)))
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = build_parser()
    args = parser.parse_args(argv)
    suite_names, requested, cases = _names(args.suite), _names(args.solvers), _names(args.cases)
    requested = [name.upper() for name in requested]
    unknown = [name for name in requested if name not in SOLVERS]
    if unknown:
        parser.error(f"unknown solver(s) {', '.join(unknown)}; known: {', '.join(SOLVERS)}")
    if cases and len(suite_names) != 1:
        parser.error("--cases needs exactly one suite")
    if args.sizes and not set(suite_names) & set(SIZED_SUITES):
        parser.error(f"--sizes applies to the {', '.join(SIZED_SUITES)} suite only")
    for name in suite_names:
        sizes = _names(args.sizes) if name in SIZED_SUITES else None
        try:
            suite = make_suite(name, sizes).select(cases, args.subset)
        except (ValueError, OSError) as exc:
            parser.error(str(exc))
        solvers, unavailable = choose_solvers(requested, suite)
        for solver, why in unavailable.items():
            print(f"{suite.name}: {solver} unavailable ({why})", file=sys.stderr)
        eps_abs, eps_rel = {None: (suite.eps_abs, suite.eps_rel), "default": (None, None)}.get(
            args.eps, (args.eps, args.eps)
        )
        config = RunConfig(
            eps_abs=eps_abs,
            eps_rel=eps_rel,
            timeout=args.timeout or suite.timeout,
            memory_gb=args.memory_gb,
            device=args.device,
            nablaprox_options=tuple(args.nablaprox_option),
            tol=args.tol if args.tol is not None else suite.tol,
            repeats=args.repeats,
            out=args.out,
        )
        paths = run(suite, solvers, config, RunInfo(suite, config, solvers, unavailable))
        print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
