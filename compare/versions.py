"""NABLAPROX in this checkout timed against another checkout of the repository.

Usage (from the repository root)::

    python -m compare.versions --base ../other-checkout                 # the zoo
    python -m compare.versions --base ../other-checkout --suite structured --rounds 2

"Not slower than before" is a ratio of two versions measured on one machine in one
session. Each round runs one fresh process per checkout, one after the other, the order
alternating between rounds so that a change in the machine's load falls on both. A
process is its checkout's own interpreter (``--python`` / ``--base-python``; default
``<checkout>/.venv/bin/python``), so that its ``import cvxprox`` is that checkout's code;
the models come from this checkout's ``compare/suites`` (built from the same seeds), so
both versions solve the same problems at default options.

In a process, each model is solved once to warm up (Numba kernels, caches), then
``--repeats`` more times while a solve takes under a second; its time is the fastest
solve, ``prob.solve(solver="NABLAPROX")`` as a user calls it, CVXPY's compile included.
A warm-up solve over ``_SLOW`` seconds is itself the measurement (the kernels are cached
on disk by then, so compilation is a small part of it). A model's time in a version is
its fastest over the rounds. The table gives both times, their ratio (this / base), the
iteration counts (noise-free) and the statuses; the summary line the geometric mean and
the median of the ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

# A warm-up solve longer than this (seconds) is the measurement.
_SLOW = 10.0
# Further solves are made only while a solve takes less than this (seconds).
_REPEAT_UNDER = 1.0


def _worker(root: str, suite: str, cases: list[str], repeats: int) -> None:
    """Run in a checkout's interpreter: time each model, print one JSON object."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    import cvxprox  # first: this interpreter's own checkout

    sys.path.append(root)  # after cvxprox is imported: the suites come from ``root``
    import importlib

    models = importlib.import_module(f"compare.suites.{suite}").MODELS
    out = {}
    for name in cases:
        start = time.perf_counter()
        problem = models[name]()
        problem.solve(solver="NABLAPROX")
        best = time.perf_counter() - start
        if best <= _SLOW:
            best = math.inf
            for _ in range(repeats):
                problem = models[name]()
                start = time.perf_counter()
                problem.solve(solver="NABLAPROX")
                best = min(best, time.perf_counter() - start)
                if best >= _REPEAT_UNDER:
                    break
        out[name] = {
            "seconds": best,
            "iterations": problem.solver_stats.num_iters,
            "status": problem.status,
        }
    print(json.dumps({"cvxprox": str(Path(cvxprox.__file__).parent), "models": out}))


def _run(python: Path, root: Path, suite: str, cases: list[str], repeats: int) -> dict:
    script = Path(__file__).resolve()
    args = [str(python), str(script), "--worker", str(root), suite, ",".join(cases), str(repeats)]
    # The working directory holds no ``cvxprox``: the interpreter imports its own install.
    done = subprocess.run(args, capture_output=True, text=True, cwd=script.parent, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{python} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(ours: dict, base: dict, cases: list[str]) -> str:
    lines = [
        "| model | this (s) | base (s) | ratio | iterations (this / base) | status (this / base) |",
        "|---|---|---|---|---|---|",
    ]
    ratios = []
    for name in cases:
        a, b = ours[name], base[name]
        ratio = a["seconds"] / b["seconds"]
        ratios.append(ratio)
        lines.append(
            f"| {name} | {a['seconds']:.4f} | {b['seconds']:.4f} | {ratio:.2f} | "
            f"{a['iterations']} / {b['iterations']} | {a['status']} / {b['status']} |"
        )
    gmean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    lines.append("")
    lines.append(
        f"geometric mean of the ratios {gmean:.3f}, median {statistics.median(ratios):.3f}, "
        f"{sum(r <= 1.0 for r in ratios)}/{len(ratios)} models not slower"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, run the rounds, print the table."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        _worker(argv[1], argv[2], argv[3].split(","), int(argv[4]))
        return
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(prog="python -m compare.versions", description=__doc__)
    parser.add_argument("--base", required=True, type=Path, help="the other checkout's root")
    parser.add_argument("--suite", default="zoo", choices=["zoo", "structured"])
    parser.add_argument("--cases", help="comma-separated model names (default: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python", type=Path, default=root / ".venv/bin/python")
    parser.add_argument("--base-python", type=Path)
    args = parser.parse_args(argv)
    base_root = args.base.resolve()
    base_python = args.base_python or base_root / ".venv/bin/python"
    for python in (args.python, base_python):
        if not python.exists():
            parser.error(f"no interpreter at {python} (give --python / --base-python)")
    sys.path.insert(0, str(root))
    from importlib import import_module

    known = list(import_module(f"compare.suites.{args.suite}").MODELS)
    cases = known if not args.cases else args.cases.split(",")
    unknown = sorted(set(cases) - set(known))
    if unknown:
        parser.error(f"unknown {args.suite} models {unknown}; known: {known}")
    best: dict[str, dict] = {"this": {}, "base": {}}
    versions = {"this": args.python, "base": base_python}
    packages = {}
    for r in range(args.rounds):
        order = ["this", "base"] if r % 2 == 0 else ["base", "this"]
        for version in order:
            run = _run(versions[version], root, args.suite, cases, args.repeats)
            packages[version] = run["cvxprox"]
            for name, record in run["models"].items():
                kept = best[version].get(name)
                if kept is None or record["seconds"] < kept["seconds"]:
                    best[version][name] = record
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"this: {packages['this']}\nbase: {packages['base']}")
    print(f"suite: {args.suite}, {args.rounds} rounds\n")
    print(_table(best["this"], best["base"], cases))


if __name__ == "__main__":
    main()
