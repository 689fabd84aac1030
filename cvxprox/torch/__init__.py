"""Differentiable solves in torch (needs the ``torch`` extra: ``pip install cvxprox[torch]``).

- ``CvxproxLayer``: a DPP CVXPY problem as a ``torch.nn.Module``; gradients by implicit
  differentiation of the optimality conditions, or by unrolling.
- ``PlugAndPlay``: a learned denoiser in place of a regularizer's prox, trained by
  unrolling or by deep-equilibrium (implicit) gradients.
- ``NablaProxSolver``: NABLAPROX as a solver of cvxpylayers' ``CvxpyLayer`` (needs
  cvxpylayers >= 1.2; loaded on first use).
"""

import importlib
from typing import Any

from cvxprox.torch.layer import CvxproxLayer
from cvxprox.torch.pnp import PlugAndPlay

__all__ = ["CvxproxLayer", "NablaProxSolver", "PlugAndPlay"]


def __getattr__(name: str) -> Any:
    if name == "NablaProxSolver":
        return importlib.import_module("cvxprox.torch.cvxpylayers_solver").NablaProxSolver
    raise AttributeError(f"module 'cvxprox.torch' has no attribute {name!r}")
