"""The cost of the first solve after installing: Numba compiling cvxprox's kernels.

Usage (from the repository root)::

    python -m compare.first_solve            # empty kernel cache (the first solve after install)
    python -m compare.first_solve --warm     # kernels already compiled and cached on disk

cvxprox's kernels (``cvxprox/backend/jit/``) are compiled by Numba on their first call and cached on
disk. This script points ``NUMBA_CACHE_DIR`` at a new temporary directory, so the cache starts
empty and nothing outside that directory is read, written or deleted. For each model it runs a
fresh ``python -m compare.first_solve --child MODEL`` process, which times

* ``import cvxprox`` (after ``import cvxpy``),
* the first ``prob.solve(solver="NABLAPROX")`` in the process (wall and CPU time: the CPUs
  may be shared with other processes),
* the second, on a freshly built copy of the model (so that both include CVXPY's compile and
  the difference is the one-time cost),
* Clarabel's first solve of another fresh copy, in the same process,

and lists the algorithm and the kernels the process compiled or loaded (the Numba dispatchers of
``cvxprox.backend.jit`` with a signature). Each model gets its own empty cache directory; with
``--warm`` a first child fills it and a second one is measured. The table is printed and
written to ``compare/results/first_solve.md`` (``first_solve_warm.md`` with ``--warm``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

if __name__ == "__main__" and not __package__:  # ``python compare/first_solve.py``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- models


def _lp(seed: int = 0):  # noqa: ANN202
    """min c'x s.t. A x <= b, 0 <= x <= 1 (20 variables, 15 rows)."""
    import cvxpy as cp
    import numpy as np

    rng = np.random.default_rng(seed)
    A = rng.standard_normal((15, 20))
    b = A @ rng.uniform(0, 1, 20) + 0.1
    x = cp.Variable(20)
    return cp.Problem(cp.Minimize(rng.standard_normal(20) @ x), [A @ x <= b, x >= 0, x <= 1])


def _qp(seed: int = 0):  # noqa: ANN202
    """min ||A x - b||^2 + q'x s.t. sum(x) == 1, x >= 0 (20 variables)."""
    import cvxpy as cp
    import numpy as np

    rng = np.random.default_rng(seed)
    A, b, q = rng.standard_normal((30, 20)), rng.standard_normal(30), rng.standard_normal(20)
    x = cp.Variable(20)
    objective = cp.Minimize(cp.sum_squares(A @ x - b) + q @ x)
    return cp.Problem(objective, [cp.sum(x) == 1, x >= 0])


def _socp(seed: int = 0):  # noqa: ANN202
    """min c'x s.t. ||A_i x + b_i||_2 <= 1 for three blocks, -1 <= x <= 1 (10 variables)."""
    import cvxpy as cp
    import numpy as np

    rng = np.random.default_rng(seed)
    x = cp.Variable(10)
    cons = [cp.norm(rng.standard_normal((5, 10)) @ x + 0.1 * rng.standard_normal(5)) <= 1]
    cons += [cp.norm(rng.standard_normal((4, 10)) @ x) <= 2 for _ in range(2)]
    return cp.Problem(cp.Minimize(rng.standard_normal(10) @ x), cons + [x >= -1, x <= 1])


def _exp_cone(seed: int = 0):  # noqa: ANN202
    """min log_sum_exp(A x) + ||x||^2 / 10 s.t. sum(x) == 1 (10 variables, 20 exp cones)."""
    import cvxpy as cp
    import numpy as np

    rng = np.random.default_rng(seed)
    A = rng.standard_normal((20, 10))
    x = cp.Variable(10)
    objective = cp.Minimize(cp.log_sum_exp(A @ x) + 0.1 * cp.sum_squares(x))
    return cp.Problem(objective, [cp.sum(x) == 1])


def _lasso(seed: int = 0):  # noqa: ANN202
    """min 1/2 ||A x - b||^2 + 0.1 ||x||_1 (100 x 200), the structured route."""
    import cvxpy as cp
    import numpy as np

    rng = np.random.default_rng(seed)
    A = rng.standard_normal((100, 200)) / 10
    b = A @ (rng.standard_normal(200) * (rng.uniform(size=200) < 0.1)) + 0.01 * rng.standard_normal(
        100
    )
    x = cp.Variable(200)
    return cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A @ x - b) + 0.1 * cp.norm1(x)))


def _portfolio(seed: int = 0):  # noqa: ANN202
    """The README demo, ``examples/portfolio.py`` (500 assets, 20 factors)."""
    examples = str(REPO_ROOT / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    from portfolio import build

    return build(seed=seed)[0]


#: Model name -> (builder, what it is).
MODELS: dict[str, Callable] = {
    "LP": _lp,
    "QP": _qp,
    "SOCP": _socp,
    "exp cone": _exp_cone,
    "lasso": _lasso,
    "portfolio": _portfolio,
}


# --------------------------------------------------------------------------- child


def compiled_kernels() -> list[str]:
    """``module.name`` of every Numba dispatcher in ``cvxprox.backend.jit`` that has a compiled (or
    cache-loaded) signature in this process."""
    import importlib
    import pkgutil

    from numba.core.registry import CPUDispatcher

    import cvxprox.backend.jit

    names = []
    for info in pkgutil.iter_modules(cvxprox.backend.jit.__path__, "cvxprox.backend.jit."):
        module = sys.modules.get(info.name)
        if module is None:  # never imported: nothing of it ran
            continue
        module = importlib.import_module(info.name)
        for attr, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.__module__ == info.name:
                if value.signatures:
                    names.append(f"{info.name.rsplit('.', 1)[1]}.{attr}")
    return sorted(names)


def child(model: str) -> dict:
    """Time import, first and second NABLAPROX solve and Clarabel's first solve of ``model``."""
    import cvxpy as cp  # noqa: F401  (not part of cvxprox's import time)

    start = time.perf_counter()
    import cvxprox

    import_time = time.perf_counter() - start
    build = MODELS[model]
    times, cpu, values, statuses = [], [], [], []
    for _ in range(2):
        prob = build()
        start, start_cpu = time.perf_counter(), time.process_time()
        prob.solve(solver="NABLAPROX")
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        values.append(prob.value)
        statuses.append(prob.status)
    prob = build()
    start = time.perf_counter()
    prob.solve(solver="CLARABEL")
    clarabel = time.perf_counter() - start
    return {
        "algorithm": cvxprox.compile(build()).algorithm,
        "import": import_time,
        "first": times[0],
        "first_cpu": cpu[0],
        "second": times[1],
        "clarabel": clarabel,
        "status": statuses[0],
        "objective": values[0],
        "clarabel_objective": prob.value,
        "kernels": compiled_kernels(),
    }


def run_child(model: str, cache_dir: str) -> dict:
    """Run :func:`child` in a fresh process whose Numba cache is ``cache_dir``."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    proc = subprocess.run(
        [sys.executable, "-m", "compare.first_solve", "--child", model],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child for {model!r} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report


def _table(rows: dict[str, dict]) -> list[str]:
    head = (
        "| model | algorithm | import cvxprox (s) | first solve (s) | its CPU time (s) "
        "| second solve (s) | Clarabel first (s) | status | kernels |"
    )
    lines = [head, "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for model, r in rows.items():
        kernels = ", ".join(r["kernels"]) or "none"
        lines.append(
            f"| {model} | {r['algorithm']} | {r['import']:.3f} | {r['first']:.3f} "
            f"| {r['first_cpu']:.3f} | {r['second']:.3f} "
            f"| {r['clarabel']:.3f} | {r['status']} | {len(r['kernels'])}: {kernels} |"
        )
    return lines


def report(rows: dict[str, dict], warm: bool, load: tuple[float, float]) -> str:
    """The Markdown report of a run; ``load`` is the 1-minute load average at its start
    and end."""
    import numba

    import cvxprox

    cache = "warm (filled by a previous process)" if warm else "empty"
    lines = [
        "# First solve in a fresh process" + (", kernel cache warm" if warm else ""),
        "",
        f"`python -m compare.first_solve{' --warm' if warm else ''}`, "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, Numba {numba.__version__}, "
        f"cvxprox {getattr(cvxprox, '__version__', '?')}; load average {load[0]:.1f} at the "
        f"start, {load[1]:.1f} at the end (other processes share the CPUs: the CPU time of the "
        "first solve is the steadier number).",
        "",
        f"Numba kernel cache: {cache} (a temporary `NUMBA_CACHE_DIR` per model). Each model "
        "runs in a fresh process: `import cvxprox` after `import cvxpy`; the first and second "
        '`prob.solve(solver="NABLAPROX")` on two fresh copies of the model (CVXPY compile '
        "included); Clarabel's first solve of a third copy in the same process. *kernels*: the "
        "`cvxprox.backend.jit` kernels the process compiled or loaded (a kernel loaded from the "
        "cache brings the kernels it calls inside its own code: with a warm cache only the kernels "
        "called from Python are listed).",
        "",
        *_table(rows),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm", action="store_true", help="measure with the cache filled")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only, write no report")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return
    rows = {}
    load_start = os.getloadavg()[0]
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="cvxprox-numba-cache-") as cache_dir:
            if args.warm:
                run_child(model, cache_dir)
            rows[model] = run_child(model, cache_dir)
        print("\n".join(_table({model: rows[model]})[2:]), flush=True)
    text = report(rows, args.warm, (load_start, os.getloadavg()[0]))
    print(text)
    if not args.no_write:
        RESULTS_DIR.mkdir(exist_ok=True)
        name = "first_solve_warm.md" if args.warm else "first_solve.md"
        (RESULTS_DIR / name).write_text(text)


if __name__ == "__main__":
    main()
