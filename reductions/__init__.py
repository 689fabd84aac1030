"""CVXPY reductions into the proximal-splitting IR (installed as ``cvxprox.reductions``)."""

from cvxprox.reductions.cone2prox import ConeProgToProx, ParamProxProgram
from cvxprox.reductions.validate import ValidateData

__all__ = ["ConeProgToProx", "ParamProxProgram", "ValidateData"]
