"""cvxprox: differentiable proximal algorithms for every CVXPY problem.

Importing cvxprox registers the CVXPY solver ``"NABLAPROX"``::

    import cvxpy as cp
    import cvxprox

    prob.solve(solver="NABLAPROX")
    print(cvxprox.compile(prob))   # the IR terms, the algorithm and why

``cvxprox.atoms`` adds linear atoms for imaging (``conv2d``, ``fourier_sample``);
``cvxprox.torch`` (loaded on first use, needs torch) makes problems differentiable layers.
"""

import importlib
from typing import Any

from cvxprox import atoms
from cvxprox.interface.inspect import CompiledProblem, compile
from cvxprox.interface.options import SolverOptions
from cvxprox.interface.solver import NAME as NABLAPROX
from cvxprox.interface.solver import NablaProx, register

__version__ = "0.1.0"
__all__ = [
    "NABLAPROX",
    "CompiledProblem",
    "NablaProx",
    "SolverOptions",
    "__version__",
    "atoms",
    "compile",
    "register",
]

register()


def __getattr__(name: str) -> Any:
    """Load ``cvxprox.torch`` on first access, so that importing cvxprox never needs torch."""
    if name == "torch":
        return importlib.import_module("cvxprox.torch")
    raise AttributeError(f"module 'cvxprox' has no attribute {name!r}")
