"""Entry point of a solve's child process, started by :func:`compare.harness.run_in_child`.

Usage: ``python -m compare.child TASK RESULT MEMORY_GB [PRELOAD ...]``. The child caps
its address space at ``MEMORY_GB`` (0: no cap), imports the ``PRELOAD`` modules, then
unpickles the :class:`compare.solve.SolveTask` in ``TASK``, runs it and pickles the
:class:`compare.solve.Outcome` to ``RESULT``.

Only the standard library is imported at the top, so that the memory cap covers the
solver's imports and a preload runs before CVXPY: OR-Tools' PDLP must be imported before
CVXPY imports highspy (their bundled HiGHS symbols clash otherwise).
"""

from __future__ import annotations

import importlib
import pickle
import resource
import sys


def limit_memory(gigabytes: float) -> None:
    """Cap this process's address space (``RLIMIT_AS``) at ``gigabytes`` (0: no cap)."""
    if gigabytes > 0:
        limit = int(gigabytes * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv: list[str]) -> None:
    """Run the task file ``argv[0]``, write the outcome to ``argv[1]``."""
    task_path, result_path, memory_gb, *preload = argv
    limit_memory(float(memory_gb))
    for module in preload:
        importlib.import_module(module)
    solve = importlib.import_module("compare.solve")  # CVXPY, after the preloads
    with open(task_path, "rb") as f:
        task = pickle.load(f)
    outcome = solve.run_task(task)
    with open(result_path, "wb") as f:
        pickle.dump(outcome, f)


if __name__ == "__main__":
    main(sys.argv[1:])
