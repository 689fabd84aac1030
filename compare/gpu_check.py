"""PDHG on a CUDA GPU against the CPU: LPs solved with CuPy (float64, float32) and NumPy.

Usage (from the repository root, on a machine with a CUDA GPU and CuPy)::

    python -m compare.gpu_check [--sizes 10x168,20x720,50x2436] [--netlib AFIRO,...]
                                [--eps 1e-4] [--time-limit 25] [--cpu-time-limit 15]
                                [--torch] [--data DIR]

Solves (a) a few Netlib LPs (``compare.datasets``; skipped with a message when the data
directory, ``--data`` or ``$CVXPROX_DATA``, has none) and (b) the capacity-expansion LP
of ``examples/energy_planning.py`` at the sizes ``NODESxHOURS`` of ``--sizes`` (about
14e3, 1.2e5 and 1.0e6 variables by default), each with ``algorithm="pdhg"`` at
``eps_abs = eps_rel = --eps`` on

- ``cpu``: the NumPy backend (SciPy sparse products) on the CPU, limited to
  ``--cpu-time-limit`` seconds,
- ``cuda f64`` and ``cuda f32``: the CuPy backend on the GPU in float64 and float32,
  limited to ``--time-limit`` seconds,
- with ``--torch`` also ``torch f64``: the torch backend on the GPU,

and prints one table row per solve: problem, variables, rows and nonzeros, run, status,
objective, iterations, solve time (the solver's ``solve_time``: scaling, transfers and
iterations) and the relative objective difference ``|obj - obj_cpu| / max(1, |obj_cpu|)``
to the CPU run. A tiny LP is solved with every run first so that the table holds no CUDA
start-up or kernel-compilation time. Without CUDA or CuPy the script exits at once with
a message saying what is missing. The default run takes about three minutes on an H200
with 16 cores.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cvxpy as cp
import numpy as np

import cvxprox  # noqa: F401  (registers NABLAPROX)
from compare.suites.energy import EXAMPLE, load_example, parse_size
from cvxprox.backend import get_backend

DEFAULT_SIZES = "10x168,20x720,50x2436"
DEFAULT_NETLIB = "AFIRO,ADLITTLE,BLEND,SC205"


@dataclass(frozen=True)
class Run:
    """One column of the comparison: a label and the NABLAPROX options it adds."""

    label: str
    options: dict


@dataclass
class Row:
    problem: str
    shape: str
    run: str
    status: str
    objective: float
    iterations: int
    seconds: float

    def format(self, cpu_objective: float | None) -> str:
        diff = "-"
        if cpu_objective is not None and math.isfinite(self.objective) and self.run != "cpu":
            diff = f"{abs(self.objective - cpu_objective) / max(1.0, abs(cpu_objective)):.1e}"
        return (
            f"| {self.problem} | {self.shape} | {self.run} | {self.status} | "
            f"{self.objective:.10g} | {self.iterations} | {self.seconds:.2f} | {diff} |"
        )


HEADER = (
    "| problem | variables / rows / nnz(A) | run | status | objective | iterations | "
    "solve s | rel. diff to cpu |\n| --- | --- | --- | --- | ---: | ---: | ---: | ---: |"
)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"10x168,20x720"`` -> ``[(10, 168), (20, 720)]``; ValueError on other text."""
    return [parse_size(part) for part in filter(None, (p.strip() for p in text.split(",")))]


def check_cuda() -> str:
    """A one-line description of the GPU; SystemExit with the reason when there is none."""
    try:
        backend = get_backend("cupy", "cuda")
    except ValueError as exc:
        raise SystemExit(f"gpu_check: no GPU run possible: {exc}") from None
    import cupy  # noqa: PLC0415  (get_backend has imported it)

    props = cupy.cuda.runtime.getDeviceProperties(backend.device.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    memory = props["totalGlobalMem"] / 2**30
    return f"{name}, {memory:.0f} GiB, CuPy {cupy.__version__}"


def runs(with_torch: bool, time_limit: float, cpu_time_limit: float) -> list[Run]:
    out = [
        Run("cpu", {"backend": "numpy", "time_limit": cpu_time_limit}),
        Run("cuda f64", {"device": "cuda", "time_limit": time_limit}),
        Run("cuda f32", {"device": "cuda", "dtype": "float32", "time_limit": time_limit}),
    ]
    if with_torch:
        torch_options = {"backend": "torch", "device": "cuda", "time_limit": time_limit}
        out.append(Run("torch f64", torch_options))
    return out


def shape_of(problem: cp.Problem) -> str:
    """``variables / rows / nnz(A)`` of the program NABLAPROX solves."""
    from cvxprox.interface.solver import PROGRAM  # noqa: PLC0415

    program = problem.get_problem_data("NABLAPROX")[0][PROGRAM]
    A = getattr(program, "A", None)  # a structured program has operators, not one A
    return f"{program.n} / {program.m} / {'-' if A is None else A.nnz}"


def solve(problem: cp.Problem, name: str, shape: str, run: Run, eps: float) -> Row:
    """One PDHG solve of ``problem``; an exception becomes a row with status ``error``."""
    options = {"algorithm": "pdhg", "eps_abs": eps, "eps_rel": eps, "warm_start": False}
    try:
        problem.solve(solver="NABLAPROX", **options, **run.options)
    except Exception as exc:  # noqa: BLE001  (one failed run must not stop the table)
        traceback.print_exc(file=sys.stderr)
        return Row(name, shape, run.label, f"error: {type(exc).__name__}", math.nan, 0, math.nan)
    stats = problem.solver_stats
    value = math.nan if problem.value is None else float(problem.value)
    return Row(name, shape, run.label, problem.status, value, stats.num_iters, stats.solve_time)


def compare_problem(
    name: str, build: Callable[[], cp.Problem], plan: list[Run], eps: float
) -> list[Row]:
    """Build the problem once and solve it with every run; prints the rows as they come."""
    t0 = time.perf_counter()
    problem = build()
    shape = shape_of(problem)
    print(f"  ({name}: built and compiled in {time.perf_counter() - t0:.1f} s)", flush=True)
    rows = [solve(problem, name, shape, run, eps) for run in plan]
    cpu = next((r.objective for r in rows if r.run == "cpu" and math.isfinite(r.objective)), None)
    for row in rows:
        print(row.format(cpu), flush=True)
    return rows


def warm_up(plan: list[Run]) -> float:
    """Solve a tiny LP with every run (CUDA context, cuSPARSE handles, CuPy's kernel
    compilation, Numba's kernels of the termination tests); returns the seconds it took."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((20, 10))
    x = cp.Variable(10)
    problem = cp.Problem(cp.Minimize(rng.standard_normal(10) @ x), [A @ x <= 1, cp.abs(x) <= 1])
    t0 = time.perf_counter()
    for run in plan:
        solve(problem, "warm-up", "", run, 1e-4)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default=DEFAULT_SIZES, help=f"energy LPs NODESxHOURS (default {DEFAULT_SIZES})"
    )
    parser.add_argument(
        "--netlib", default=DEFAULT_NETLIB, help=f"Netlib LPs, '' for none ({DEFAULT_NETLIB})"
    )
    parser.add_argument("--eps", type=float, default=1e-4, help="eps_abs = eps_rel (1e-4)")
    parser.add_argument("--time-limit", type=float, default=25.0, help="seconds per GPU solve (25)")
    parser.add_argument(
        "--cpu-time-limit", type=float, default=15.0, help="seconds per CPU solve (15)"
    )
    parser.add_argument("--torch", action="store_true", help="also run torch on the GPU")
    parser.add_argument("--data", type=Path, help="data directory (default $CVXPROX_DATA)")
    args = parser.parse_args(argv)
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as exc:
        parser.error(str(exc))
    if args.data is not None:
        os.environ["CVXPROX_DATA"] = str(args.data)

    print(f"GPU: {check_cuda()}; CPU: {os.cpu_count()} cores", flush=True)
    plan = runs(args.torch, args.time_limit, args.cpu_time_limit)
    print(f"warm-up on the GPU: {warm_up(plan):.1f} s", flush=True)
    print(f"\nPDHG at eps {args.eps:g}\n\n{HEADER}", flush=True)
    t_start = time.perf_counter()

    names = [n.strip() for n in args.netlib.split(",") if n.strip()]
    if names:
        from compare.datasets import load_netlib, netlib_path  # noqa: PLC0415

        missing = [n for n in names if not netlib_path(n).exists()]
        if missing:
            print(f"  (Netlib skipped: no {netlib_path(missing[0])}; pass --data)", flush=True)
        else:
            for name in names:
                compare_problem(name, lambda name=name: load_netlib(name)[0], plan, args.eps)

    model = load_example(EXAMPLE)
    for nodes, hours in sizes:

        def build(nodes: int = nodes, hours: int = hours) -> cp.Problem:
            return model.build_capacity_expansion(model.generate_system(nodes, hours))[0]

        compare_problem(f"energy {nodes}x{hours}", build, plan, args.eps)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
