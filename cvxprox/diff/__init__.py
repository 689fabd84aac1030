"""Implicit differentiation of a program's solution map.

One mechanism for cone programs and structured programs: the residual map of
``minimize c'x + 1/2 x'Px + sum_i f_i(A_i x - b_i)`` with each term's prox Jacobian (a
cone's projection Jacobian being one case), and one adjoint linear solve.

- ``cvxprox.diff.jacobian``: ``prox_map`` (p = prox_f or Pi_K) and ``prox_jacobian``
  (D = dp/dv with its hard/soft/flat structure when it has one).
- ``cvxprox.diff.residual``: ``ResidualMap`` R(x, v) over blocks of rows and its J'.
- ``cvxprox.diff.adjoint``: ``ImplicitAdjoint``, which solves J'u = rhs (reduced
  saddle-point system, sparse LU or LSMR) and turns u into data gradients.
"""

from cvxprox.diff.adjoint import ADJOINT_METHODS, DataGradient, ImplicitAdjoint
from cvxprox.diff.jacobian import (
    DIFFERENTIABLE_FUNCTIONS,
    ProxJacobian,
    prox_jacobian,
    prox_map,
)
from cvxprox.diff.residual import Block, ResidualMap

__all__ = [
    "ADJOINT_METHODS",
    "DIFFERENTIABLE_FUNCTIONS",
    "Block",
    "DataGradient",
    "ImplicitAdjoint",
    "ProxJacobian",
    "ResidualMap",
    "prox_jacobian",
    "prox_map",
]
