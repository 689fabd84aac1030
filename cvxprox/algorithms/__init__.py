"""First-order splitting algorithms for the proximal-splitting IR."""

from cvxprox.algorithms.admm import ADMM
from cvxprox.algorithms.base import KKTError, SolveResult
from cvxprox.algorithms.pdhg import PDHG

__all__ = ["ADMM", "PDHG", "KKTError", "SolveResult"]
