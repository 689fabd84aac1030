"""2-D TV denoising at scale: one solver per child process, wall time and peak memory.

Usage (from the repository root)::

    python -m compare.tv_scale [--size 1024] [--solvers NABLAPROX,SCS,CLARABEL]
                               [--timeout 1800] [--memory-gb 20] [--eps 1e-4]

The model is the structured suite's ``tv_denoising`` (1/2 ||X - noisy||^2 + 0.1 tv(X) on
a ``size x size`` phantom, :func:`compare.suites.structured.build_tv_denoising`). Each
solver runs in a fresh ``python -m compare.child`` process (the harness's child: address
space capped with ``RLIMIT_AS``, a warm-up solve of a tiny SOCP, then the measured
``prob.solve``) under ``/usr/bin/time -v``, whose "Maximum resident set size" is the peak
memory reported (without ``/usr/bin/time``: the child's own ``getrusage`` peak). The
solver's own time limit is ``--timeout``; the child is killed after ``1.2 * timeout + 30``
seconds. For each solver the script prints status, objective, relative difference
``|obj - base| / max(1, |base|)`` to Clarabel's objective (if Clarabel finished with
status optimal) or else NABLAPROX's, the time of ``prob.solve`` (compile + solve), the
process's wall time and the peak RSS, or the failure (timeout, out of memory, crash), and
writes the table to ``compare/results/tv_scale.md``.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

if __name__ == "__main__" and not __package__:  # ``python compare/tv_scale.py``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compare.harness import RESULTS_DIR, _child_environment, _dead_child_outcome, relative_error
from compare.report import fmt, markdown_table
from compare.solve import SOLVED, TIMEOUT, Outcome, SolveTask
from compare.solvers import NABLAPROX, SOLVERS, SolveSettings, unavailable_reason, version
from compare.suites.structured import EPS, build_tv_denoising

#: ``/usr/bin/time``, whose ``-v`` report gives the peak resident memory.
GNU_TIME = "/usr/bin/time"

#: The solvers compared by default, in the order they run.
DEFAULT_SOLVERS = (NABLAPROX, "SCS", "CLARABEL")

#: The child is killed after ``KILL_FACTOR * timeout + KILL_GRACE`` seconds.
KILL_FACTOR, KILL_GRACE = 1.2, 30.0


@dataclass
class ScaleRun:
    """One solver's run: what its child measured, its wall time and peak memory."""

    solver: str
    outcome: Outcome
    wall: float
    peak_rss_mb: float
    rss_source: str

    @property
    def solve_wall(self) -> float:
        """Wall time of ``prob.solve`` (compile + solve; NaN if not measured)."""
        return self.outcome.compile_time + self.outcome.solve_time

    @property
    def finished(self) -> bool:
        """Whether the solver returned a solution."""
        return self.outcome.status in SOLVED and math.isfinite(self.outcome.objective)


def time_available() -> bool:
    """Whether ``/usr/bin/time`` can be run."""
    return os.path.isfile(GNU_TIME) and os.access(GNU_TIME, os.X_OK)


def parse_time_report(stderr: str) -> tuple[float, int | None]:
    """Peak RSS (MB) and the signal that ended the command (or None) from the report of
    ``/usr/bin/time -v``; NaN when the report is missing."""
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    sig = re.search(r"Command terminated by signal (\d+)", stderr)
    return (
        int(rss.group(1)) / 1024.0 if rss else math.nan,
        int(sig.group(1)) if sig else None,
    )


def strip_time_report(stderr: str) -> str:
    """``stderr`` without what ``/usr/bin/time -v`` added (its report, its exit line)."""
    stderr = stderr.split("\tCommand being timed:")[0]
    return "\n".join(
        line
        for line in stderr.splitlines()
        if not line.startswith(("Command terminated by signal", "Command exited with"))
    )


def run_solver(
    solver: str, size: int, timeout: float, memory_gb: float, eps: float, device: str = "cpu"
) -> ScaleRun:
    """Solve the ``size x size`` TV denoising problem with ``solver`` in a child."""
    settings = SolveSettings(eps, eps, timeout, device)
    task = SolveTask(partial(build_tv_denoising, size=size), "SOCP", solver, settings)
    on_gpu = SOLVERS[solver].gpu or (solver == NABLAPROX and device != "cpu")
    cap = 0.0 if on_gpu else memory_gb  # CUDA reserves far more address space than it uses
    preload = [SOLVERS[solver].preload] if SOLVERS[solver].preload else []
    timed = time_available()
    with tempfile.TemporaryDirectory(prefix="tv-scale-") as tmp:
        task_path, result_path = Path(tmp, "task.pkl"), Path(tmp, "result.pkl")
        stderr_path = Path(tmp, "stderr.txt")
        task_path.write_bytes(pickle.dumps(task))
        argv = [sys.executable, "-m", "compare.child", str(task_path), str(result_path)]
        argv += [str(cap), *preload]
        if timed:
            argv = [GNU_TIME, "-v", *argv]
        start = time.perf_counter()
        with stderr_path.open("wb") as stderr:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=_child_environment(),
                start_new_session=True,
            )
            hard_limit = KILL_FACTOR * timeout + KILL_GRACE
            try:
                child.wait(timeout=hard_limit)
            except subprocess.TimeoutExpired:
                pass
            finally:
                killed = child.poll() is None
                if killed:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
        wall = time.perf_counter() - start
        stderr_text = stderr_path.read_bytes()[-20000:].decode(errors="replace")
        rss, sig = parse_time_report(stderr_text) if timed else (math.nan, None)
        if killed:
            outcome = Outcome(status=TIMEOUT, note=f"killed after {hard_limit:g} s")
        elif result_path.exists():
            outcome = pickle.loads(result_path.read_bytes())
        else:
            code = -sig if sig is not None else child.returncode
            outcome = _dead_child_outcome(code, strip_time_report(stderr_text))
    if not math.isfinite(rss) and math.isfinite(outcome.memory_mb):
        return ScaleRun(solver, outcome, wall, outcome.memory_mb, "getrusage")
    return ScaleRun(solver, outcome, wall, rss, "time -v" if timed else "-")


def baseline(runs: Sequence[ScaleRun]) -> ScaleRun | None:
    """Clarabel's run if it finished with status optimal, else NABLAPROX's if it
    finished, else None."""
    by_name = {run.solver: run for run in runs}
    clarabel = by_name.get("CLARABEL")
    if clarabel is not None and clarabel.outcome.status == "optimal":
        return clarabel
    nablaprox = by_name.get(NABLAPROX)
    return nablaprox if nablaprox is not None and nablaprox.finished else None


def result_table(runs: Sequence[ScaleRun]) -> str:
    """The Markdown table of the runs."""
    base = baseline(runs)
    headers = ["solver", "status", "objective", "rel. diff", "prob.solve (s)", "compile (s)"]
    headers += ["process wall (s)", "peak RSS (MB)", "iterations", "note"]
    rows = []
    for run in runs:
        o = run.outcome
        if base is None or not run.finished:
            diff = "-"
        elif run is base:
            diff = "(base)"
        else:
            diff = fmt(relative_error(o.objective, base.outcome.objective))
        rows.append(
            [
                run.solver,
                o.status,
                fmt(o.objective, ".8g"),
                diff,
                fmt(run.solve_wall, ".2f"),
                fmt(o.compile_time, ".2f"),
                fmt(run.wall, ".1f"),
                fmt(run.peak_rss_mb, ".0f"),
                fmt(o.iterations, ".0f"),
                o.note,
            ]
        )
    return markdown_table(headers, rows)


def machine_memory_gb() -> float:
    """Total memory of this machine, GB (NaN if unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return math.nan


def render(runs: Sequence[ScaleRun], args: argparse.Namespace, skipped: dict[str, str]) -> str:
    """The Markdown report."""
    base = baseline(runs)
    packages = ", ".join(version(run.solver) for run in runs)
    rss = (
        "`/usr/bin/time -v` (maximum resident set size of the child)"
        if time_available()
        else "the child's own `getrusage` peak (no `/usr/bin/time` on this machine)"
    )
    lines = [
        f"# 2-D TV denoising at {args.size} x {args.size}",
        "",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {fmt(machine_memory_gb(), '.1f')} GB memory, "
        f"Python {platform.python_version()}",
        f"- Packages: {packages}",
        f"- Model: minimize 1/2 ||X - noisy||^2 + 0.1 tv(X), {args.size**2:,} variables "
        "(`compare/suites/structured.py`, `build_tv_denoising`).",
        f"- Accuracy asked: eps_abs = eps_rel = {args.eps:g} (each solver's options as in "
        "the harness); time limit "
        f"{args.timeout:g} s (solver option; the process is killed after "
        f"{KILL_FACTOR * args.timeout + KILL_GRACE:g} s); address space capped at "
        f"{args.memory_gb:g} GB (RLIMIT_AS; none on a GPU); NABLAPROX device: {args.device}.",
        "- One solver per fresh process, after a warm-up solve of a tiny SOCP; prob.solve = "
        "CVXPY compile + solve; process wall = the whole child (imports, build, warm-up, "
        f"solve); peak RSS from {rss}.",
        "- rel. diff = |obj - base| / max(1, |base|), base = "
        + (f"{base.solver}'s objective." if base is not None else "none (no solver finished)."),
    ]
    lines += [f"- {name} not run: {why}." for name, why in skipped.items()]
    return "\n".join([*lines, "", result_table(runs), ""])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m compare.tv_scale",
        description="2-D TV denoising at one size, one solver per child process.",
    )
    parser.add_argument("--size", type=int, default=1024, help="image side (1024)")
    parser.add_argument(
        "--solvers",
        default=",".join(DEFAULT_SOLVERS),
        help=f"comma-separated ({','.join(DEFAULT_SOLVERS)})",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per solver (1800)")
    parser.add_argument(
        "--memory-gb", type=float, default=20.0, help="address-space cap per solve, GB (20)"
    )
    parser.add_argument("--eps", type=float, default=EPS, help=f"eps_abs = eps_rel ({EPS:g})")
    parser.add_argument("--device", default="cpu", help="NABLAPROX's device option (cpu)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR / "tv_scale.md", help="(compare/results/...)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> list[ScaleRun]:
    """Command-line entry point; returns the runs."""
    parser = build_parser()
    args = parser.parse_args(argv)
    solvers = [name.strip().upper() for name in args.solvers.split(",") if name.strip()]
    unknown = [name for name in solvers if name not in SOLVERS]
    if unknown:
        parser.error(f"unknown solver(s) {', '.join(unknown)}; known: {', '.join(SOLVERS)}")
    if args.size < 2:
        parser.error("--size must be at least 2")
    if not time_available():
        print(f"{GNU_TIME} not found: peak RSS from getrusage", file=sys.stderr)
    skipped = {name: why for name in solvers if (why := unavailable_reason(name)) is not None}
    runs = []
    for solver in solvers:
        if solver in skipped:
            print(f"{solver}: not run ({skipped[solver]})", file=sys.stderr)
            continue
        print(f"{solver}: solving {args.size} x {args.size} ...", file=sys.stderr, flush=True)
        run = run_solver(solver, args.size, args.timeout, args.memory_gb, args.eps, args.device)
        o = run.outcome
        print(
            f"{solver}: {o.status}, objective {fmt(o.objective, '.8g')}, prob.solve "
            f"{fmt(run.solve_wall, '.2f')} s, wall {run.wall:.1f} s, peak RSS "
            f"{fmt(run.peak_rss_mb, '.0f')} MB" + (f" ({o.note})" if o.note else ""),
            file=sys.stderr,
            flush=True,
        )
        runs.append(run)
    text = render(runs, args, skipped)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return runs


if __name__ == "__main__":
    main()
