"""cvxprox: differentiable proximal algorithms for every CVXPY problem.

Importing cvxprox registers the CVXPY solver ``"NABLAPROX"``::

    import cvxpy as cp
    import cvxprox

    prob.solve(solver="NABLAPROX")
"""

from cvxprox.options import SolverOptions
from cvxprox.solver import NAME as NABLAPROX
from cvxprox.solver import NablaProx, register

__version__ = "0.1.0"
__all__ = ["NABLAPROX", "NablaProx", "SolverOptions", "__version__", "register"]

register()
