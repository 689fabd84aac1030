"""A ladder of energy-system capacity-expansion LPs, from ~1e3 to ~1e6 variables.

The model is ``examples/energy_planning.py`` (``generate_system``,
``build_capacity_expansion``, ``problem_size``), loaded by path since ``examples/`` is
not a package. Each size ``NODESxHOURS`` is a case; the reference is HiGHS' interior
point method at tight tolerances, cached. The report says at which size each solver
stopped being usable.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Sequence
from functools import cache, partial
from pathlib import Path
from types import ModuleType

import cvxpy as cp

from compare.harness import Case, ReferenceSolver, Suite

#: The model's module.
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "energy_planning.py"

#: Seed of the generated systems.
SEED = 0

#: Node counts of the default ladder, one per target size (variables).
LADDER = ((4, 1e3), (8, 1e4), (16, 1e5), (32, 1e6))

#: Options of the HiGHS reference solve: interior point (with crossover), tight. HiGHS'
#: own "solver" option must go through CVXPY's ``highs_options``.
REFERENCE_OPTIONS = {
    "highs_options": {
        "solver": "ipm",
        "primal_feasibility_tolerance": 1e-9,
        "dual_feasibility_tolerance": 1e-9,
        "ipm_optimality_tolerance": 1e-10,
    }
}


@cache
def load_example(path: Path) -> ModuleType:
    """Import the model's module from ``path`` (registered as ``energy_planning``)."""
    spec = importlib.util.spec_from_file_location("energy_planning", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import the energy model from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while executing it
    spec.loader.exec_module(module)
    return module


def parse_size(text: str) -> tuple[int, int]:
    """``"NODESxHOURS"`` -> ``(nodes, hours)``; raises ValueError on other text."""
    try:
        nodes, hours = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r} is not NODESxHOURS, e.g. 8x168") from None
    if nodes < 2 or hours < 1:
        raise ValueError(f"size {text!r}: at least 2 nodes and 1 hour")
    return nodes, hours


def default_sizes(path: Path = EXAMPLE) -> list[str]:
    """The default ladder: per :data:`LADDER` entry, the hours (a multiple of 24) whose
    problem size is closest to the target in ratio."""
    size_of = load_example(path).problem_size
    sizes = []
    for nodes, target in LADDER:
        hours = min(range(24, 8761, 24), key=lambda h: abs(math.log(size_of(nodes, h) / target)))
        sizes.append(f"{nodes}x{hours}")
    return sizes


def build_energy(path: Path, nodes: int, hours: int) -> cp.Problem:
    """The capacity-expansion LP of the system with ``nodes`` and ``hours``."""
    model = load_example(path)
    problem, _ = model.build_capacity_expansion(model.generate_system(nodes, hours, seed=SEED))
    return problem


def suite(sizes: Sequence[str] | None = None, example: Path = EXAMPLE) -> Suite:
    """The energy ladder at ``sizes`` (``NODESxHOURS``; default :func:`default_sizes`)."""
    module = load_example(example)
    cases = []
    for text in sizes or default_sizes(example):
        nodes, hours = parse_size(text)
        cases.append(
            Case(
                name=f"{nodes}x{hours}",
                problem_class="LP",
                size=module.problem_size(nodes, hours),
                build=partial(build_energy, example, nodes, hours),
            )
        )
    return Suite(
        name="energy",
        title="Energy capacity-expansion LP ladder",
        cases=tuple(sorted(cases, key=lambda case: case.size)),
        notes=(f"Model: `{example.name}`, seed {SEED}; cases are NODESxHOURS.",),
        reference_solver=ReferenceSolver(
            "HIGHS",
            REFERENCE_OPTIONS,
            "HiGHS interior point (crossover on), feasibility 1e-9, optimality 1e-10",
        ),
        ladder=True,
        solvers=(
            "NABLAPROX",
            "HIGHS_IPM",
            "HIGHS_SIMPLEX",
            "GUROBI",
            "CLARABEL",
            "SCS",
            "PDLP",
        ),
        timeout=300.0,
    )
