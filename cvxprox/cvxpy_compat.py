"""The private CVXPY APIs cvxprox relies on, each wrapped here once.

Written against CVXPY 1.9 (``cvxpy>=1.9``). Each function says which private name it
uses and why no public API serves; everything else in cvxprox uses CVXPY's public
classes and functions (``Reduction``, ``SolvingChain``, ``ConicSolver``, the solver maps
of ``cvxpy.reductions.solvers.defines``, ``resolve_and_build_chain`` of
``cvxpy.reductions.solvers.solving_chain``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def route_chain_builder(is_ours: Callable[[Any], bool], build_ours: Callable[..., Any]) -> None:
    """Have CVXPY build the chains of the solvers ``is_ours`` accepts with ``build_ours``.

    CVXPY has no plugin point for a solver's own reductions: ``Problem._construct_chain``
    calls the name ``resolve_and_build_chain`` of the module ``cvxpy.problems.problem``.
    That name is replaced by a function that calls
    ``build_ours(problem, solver, *args, build=<the replaced function>, **kwargs)`` when
    ``is_ours(solver)`` and the replaced function, unchanged, for every other solver.
    Idempotent.
    """
    import cvxpy.problems.problem as problem_module  # noqa: PLC0415

    build = problem_module.resolve_and_build_chain
    if getattr(build, "_cvxprox_wrapped", False):
        return

    def resolve_and_build_chain(problem: Any, solver: Any = None, *args: Any, **kwargs: Any) -> Any:
        if not is_ours(solver):
            return build(problem, solver, *args, **kwargs)
        return build_ours(problem, solver, *args, build=build, **kwargs)

    resolve_and_build_chain._cvxprox_wrapped = True  # type: ignore[attr-defined]
    problem_module.resolve_and_build_chain = resolve_and_build_chain


def assign_parameter_value(param: Any, value: np.ndarray) -> None:
    """Set a CVXPY Parameter's value without validation (``Parameter._value``).

    The public setter checks shape, sign attributes and finiteness, about a tenth of a
    millisecond per parameter; the torch layer assigns values for every element of a
    batch, which it has already checked once for the whole batch.
    """
    param._value = value


def pow_nd_to_3d(con: Any) -> tuple[Any, list]:
    """A ``PowConeND`` constraint as one ``PowCone3D`` constraint (over the constraint's
    arguments and auxiliary scalar variables), and no other constraints.

    CVXPY converts n-dimensional power cones for solvers without them in
    ``cvxpy.reductions.cone2cone.exact.PowNDConversion`` (a balanced binary tree of 3-D
    cones), a class of that module with no public entry point; its ``canonicalize`` is
    used here and the tree it records for the dual stays on the returned constraint
    (``pow_nd_dual``).
    """
    from cvxpy.reductions.cone2cone.exact import PowNDConversion  # noqa: PLC0415

    pow3d, _ = PowNDConversion.canonicalize(con, con.args)
    return pow3d, []


def pow_nd_dual(con: Any, pow3d: Any, dual: np.ndarray) -> np.ndarray:
    """The dual of ``PowConeND`` constraint ``con`` (shape (n + 1, k): W's duals over
    z's) from the dual of its ``pow_nd_to_3d`` constraint ``pow3d`` (the triples
    (x_i, y_i, z_i) in order), by ``PowNDConversion.recover_dual`` and the tree it
    reads."""
    from types import SimpleNamespace  # noqa: PLC0415

    from cvxpy.reductions.cone2cone.exact import PowNDConversion  # noqa: PLC0415

    inverse = SimpleNamespace()
    PowNDConversion.apply_hook(con, pow3d, [], inverse)
    triples = np.reshape(dual, (3, -1), order="F")
    return PowNDConversion.recover_dual(con, triples, inverse, None)
