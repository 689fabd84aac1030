"""Shared machinery of the benchmark scripts.

Every solve runs in a child process (:class:`SolveWorker`) with a hard wall-clock limit,
so a hanging or crashing solver is recorded as ``"timeout"`` or ``"error: ..."`` instead
of stopping the run. Solve times are measured in the child around ``prob.solve`` on a
freshly built problem, so they include CVXPY's compilation.
"""

from __future__ import annotations

import csv
import importlib.metadata
import multiprocessing
import multiprocessing.connection
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cvxpy as cp
import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: The solver this project provides (registered with CVXPY by ``import cvxprox``).
NABLAPROX = "NABLAPROX"

#: Name of each solver's wall-clock limit option (seconds), as CVXPY passes it on.
TIME_LIMIT_OPTION = {
    NABLAPROX: "time_limit",
    "SCS": "time_limit_secs",
    "HIGHS": "time_limit",
    "OSQP": "time_limit",
    "CLARABEL": "time_limit",
}

#: Statuses that come with a primal solution.
SOLVED = (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)

#: Python distributions whose versions go into the report headers.
_DISTRIBUTIONS = {
    NABLAPROX: "cvxprox",
    "SCS": "scs",
    "HIGHS": "highspy",
    "OSQP": "osqp",
    "CLARABEL": "clarabel",
    "ECOS": "ecos",
}


def register_solver(solver: str) -> None:
    """Make ``solver`` usable through CVXPY (imports ``cvxprox`` for NABLAPROX)."""
    if solver == NABLAPROX:
        import cvxprox  # noqa: F401  (registers the solver with CVXPY)


def parse_solvers(text: str) -> list[str]:
    """Parse a comma-separated solver list and check each one is usable.

    Exits with a clear message when a solver is unknown to CVXPY, or when NABLAPROX is
    requested but ``cvxprox`` cannot be imported.
    """
    solvers = [s.strip().upper() for s in text.split(",") if s.strip()]
    if not solvers:
        sys.exit("error: --solvers is empty")
    for solver in solvers:
        try:
            register_solver(solver)
        except Exception as exc:  # any import-time failure of the package under test
            sys.exit(
                f"error: solver {solver} requested but `import cvxprox` failed "
                f"({type(exc).__name__}: {exc}); install the package (pip install -e .) "
                "or drop NABLAPROX from --solvers"
            )
        if solver not in cp.installed_solvers():
            sys.exit(
                f"error: solver {solver} is not installed for CVXPY "
                f"(installed: {', '.join(cp.installed_solvers())})"
            )
    return solvers


def time_limit_options(solver: str, seconds: float) -> dict[str, float]:
    """Solver options that set a wall-clock limit, or ``{}`` if the solver has none."""
    name = TIME_LIMIT_OPTION.get(solver)
    return {name: seconds} if name else {}


_warmed_up: set[str] = set()


def warm_up(solver: str) -> None:
    """Solve a tiny LP once per process, so that one-off costs (imports, GPU context
    creation) are not charged to the first benchmark problem."""
    if solver in _warmed_up:
        return
    register_solver(solver)
    x = cp.Variable(2)
    try:
        cp.Problem(cp.Minimize(cp.sum(x)), [x >= 1]).solve(solver=solver)
    except Exception:
        pass  # a broken solver is reported by the timed solve that follows
    _warmed_up.add(solver)


def timed_solve(prob: cp.Problem, solver: str, options: dict[str, Any]) -> dict[str, Any]:
    """Solve ``prob`` and time it; runs in the worker.

    Returns ``status`` (CVXPY status, or ``"error: <message>"``), ``objective`` (NaN
    unless the status is optimal or optimal_inaccurate) and ``time`` (seconds, CVXPY
    compile included). The solver is warmed up first (see ``warm_up``).
    """
    warm_up(solver)
    start = time.perf_counter()
    try:
        prob.solve(solver=solver, **options)
    except Exception as exc:
        return {"status": error_status(exc), "objective": np.nan, "time": _since(start)}
    seconds = _since(start)
    solved = prob.status in SOLVED and prob.value is not None
    return {
        "status": prob.status,
        "objective": float(prob.value) if solved else np.nan,
        "time": seconds,
    }


def _since(start: float) -> float:
    return time.perf_counter() - start


def error_status(exc: BaseException) -> str:
    """One-line ``"error: <type>: <message>"`` status for an exception."""
    message = " ".join(str(exc).split())
    if len(message) > 120:
        message = message[:117] + "..."
    return f"error: {type(exc).__name__}: {message}"


def _worker_loop(conn: multiprocessing.connection.Connection) -> None:
    """Child process: run ``(function, args)`` requests until the pipe closes."""
    while True:
        try:
            function, args = conn.recv()
        except EOFError:
            return
        try:
            result = function(*args)
        except Exception as exc:  # a failure outside the solver (e.g. loading data)
            result = {"status": error_status(exc)}
        conn.send(result)


class SolveWorker:
    """A persistent child process that runs tasks under a hard wall-clock limit.

    Tasks are module-level functions returning a picklable dict. On timeout the child
    is killed (and restarted for the next task); ``{"status": "timeout"}`` is returned.
    If the child dies, ``{"status": "error: worker died ..."}`` is returned. The child
    is started with "spawn", so no solver or GPU state is shared with the parent.
    """

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: multiprocessing.connection.Connection | None = None

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_worker_loop, args=(child,), daemon=True)
        self._process.start()
        child.close()
        self._conn = parent

    def stop(self) -> None:
        """Kill the child process, if any."""
        if self._process is not None:
            self._process.kill()
            self._process.join()
            self._conn.close()
        self._process = self._conn = None

    def run(self, function: Callable[..., dict], args: tuple, timeout: float) -> dict:
        """Run ``function(*args)`` in the child; give up after ``timeout`` seconds."""
        if self._process is None or not self._process.is_alive():
            self.stop()
            self._start()
        try:
            self._conn.send((function, args))
            if not self._conn.poll(timeout):
                self.stop()
                return {"status": "timeout"}
            return self._conn.recv()
        except (EOFError, OSError):  # the child died (crash, out of memory, ...)
            self._process.join(timeout=5)
            exitcode = self._process.exitcode
            self.stop()
            return {"status": f"error: worker died (exit code {exitcode})"}

    def __enter__(self) -> SolveWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def shifted_geometric_mean(values: Iterable[float], shift: float = 10.0) -> float:
    """Shifted geometric mean ``exp(mean(log(v + shift))) - shift`` (NaN if empty)."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return float("nan")
    return float(np.exp(np.mean(np.log(v + shift))) - shift)


def relative_error(value: float, reference: float) -> float:
    """``|value - reference| / max(1, |reference|)`` (NaN if either is not finite)."""
    if not (np.isfinite(value) and np.isfinite(reference)):
        return float("nan")
    return abs(value - reference) / max(1.0, abs(reference))


def fmt(value: float, spec: str = ".2e") -> str:
    """Format a number for a table; NaN becomes ``-``."""
    return "-" if value is None or not np.isfinite(value) else format(value, spec)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells is escaped)."""

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    out = [line(headers), "|" + "|".join("---" for _ in headers) + "|"]
    out += [line(row) for row in rows]
    return "\n".join(out)


def environment_lines(solvers: Sequence[str]) -> list[str]:
    """Markdown bullet lines: date, machine and package versions."""
    versions = [f"cvxpy {cp.__version__}"]
    for solver in solvers:
        dist = _DISTRIBUTIONS.get(solver)
        if dist:
            try:
                versions.append(f"{dist} {importlib.metadata.version(dist)}")
            except importlib.metadata.PackageNotFoundError:
                versions.append(f"{dist} (version unknown)")
    return [
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- Packages: {', '.join(versions)}",
    ]


def write_csv(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Write records (dicts with the same keys) as CSV, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]) if records else [])
        writer.writeheader()
        writer.writerows(records)


def write_results(
    results_dir: Path, stem: str, records: Sequence[dict[str, Any]], markdown: str
) -> None:
    """Write ``<stem>.csv`` and ``<stem>.md``, remove the progress file, print paths."""
    write_csv(results_dir / f"{stem}.csv", records)
    (results_dir / f"{stem}.md").write_text(markdown + "\n")
    (results_dir / f"{stem}.csv.tmp").unlink(missing_ok=True)
    print(f"\nwrote {results_dir / stem}.csv and {results_dir / stem}.md", file=sys.stderr)


def save_progress(results_dir: Path, stem: str, records: Sequence[dict[str, Any]]) -> None:
    """Write the records so far to ``<stem>.csv.tmp`` (git-ignored) during a long run."""
    write_csv(results_dir / f"{stem}.csv.tmp", records)


def log(message: str) -> None:
    """Progress line on stderr (stdout carries the Markdown report)."""
    print(message, file=sys.stderr, flush=True)
