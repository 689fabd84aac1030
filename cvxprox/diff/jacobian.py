"""The prox map p = prox_f (step 1) of a term and its Jacobian D = dp/dv.

For a cone indicator (a ``ProxFunction`` too) p is the projection Pi_K and D = DPi_K(v)
(``Cone.project_derivative`` of ``cvxprox.functions.cones``); for the other prox functions of
``cvxprox.functions.prox`` D is written out below.
Either way D is symmetric with its spectrum in [0, 1]: p is the gradient of the convex
function ||v||^2/2 - e_f(v) (e_f the Moreau envelope of f) and is nonexpansive. Where p is not
differentiable (a kink of a norm, the boundary of a cone) an element of Clarke's
generalized Jacobian is taken: D = 0 on the rows at a kink.

Besides D, the adjoint (``cvxprox.diff.adjoint``) uses its *structure* when D is diagonal
(separable functions, the zero and nonnegative cones) or block diagonal over groups of
the form s (I - uu') + uu' (l2 norms): rows where D has eigenvalue 0 are *hard*, rows
where 0 < D < I carry the curvature H = D^{-1} - I on the range of D (*soft*), and rows
with D = I are *flat*. The second-order, exponential, power and PSD cones have a general
D (``ProxJacobian.hard`` is None).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from cvxprox.functions.cones import (
    Cone,
    ExpCone,
    NonnegCone,
    PowCone3D,
    PSDCone,
    SecondOrderCone,
    ZeroCone,
)
from cvxprox.functions.prox import (
    GroupL2,
    Huber,
    Norm1,
    Norm2,
    Pos,
    ProxFunction,
    SumSquares,
)

#: Prox functions whose prox Jacobian is implemented: every cone of ``cvxprox.functions.cones`` (the
#: projection's Jacobian), diagonal ones (separable functions) and block diagonal ones over
#: groups (l2 norms: GroupL2, Norm2).
DIFFERENTIABLE_FUNCTIONS = (
    ZeroCone,
    NonnegCone,
    SecondOrderCone,
    ExpCone,
    PowCone3D,
    PSDCone,
    Norm1,
    SumSquares,
    Huber,
    Pos,
    GroupL2,
    Norm2,
)
# d <= _KINK counts as hard (0), d >= 1 - _KINK as flat (1).
_KINK = 1e-12


def prox_map(function: ProxFunction, v: np.ndarray) -> np.ndarray:
    """p(v): the prox of a function with step 1 (a cone's projection); shape (m,)."""
    return np.asarray(function.prox(np.asarray(v, dtype=np.float64), 1.0))


def is_equality(function: ProxFunction) -> bool:
    """Whether the term is the indicator of {0} (an equality constraint)."""
    return isinstance(function, ZeroCone)


@dataclass
class ProxJacobian:
    """The prox u = p(v) of a (weighted) function, differentiated at v.

    du = D dv + (dp/dw) dw with D symmetric, its spectrum in [0, 1].

    Attributes
    ----------
    d : ndarray, shape (m,), or None
        The diagonal of D when D is diagonal.
    blocks : csr_array, shape (m, m), or None
        D when it is not diagonal (``D`` gives it either way).
    hard : ndarray of int, or None
        Rows where D has eigenvalue 0 (None when D has no separable or group structure).
    soft : ndarray of int, or None
        Rows on which D has eigenvalues in (0, 1); rows in neither set have D = I.
    H : ndarray, shape (len(soft),), or csr_array, shape (len(soft), len(soft)), or None
        The curvature D^{-1} - I on the soft rows: its diagonal, or a block-diagonal matrix.
    dw : ndarray, shape (m,), or None
        dp/dw entry by entry (None: an indicator, which has no weight).
    weight_of_row : ndarray of int, shape (m,), or None
        Which weight entry each row's ``dw`` belongs to (None: row i has weight i).
    weights : int
        Number of weight entries (m for elementwise weights, one per group).
    """

    d: np.ndarray | None = None
    blocks: sp.csr_array | None = None
    hard: np.ndarray | None = None
    soft: np.ndarray | None = None
    H: np.ndarray | sp.csr_array | None = None
    dw: np.ndarray | None = None
    weight_of_row: np.ndarray | None = None
    weights: int = 0

    @property
    def D(self) -> sp.csr_array:
        """D as a CSR array, shape (m, m)."""
        if self.blocks is None:
            return sp.csr_array(sp.diags_array(self.d))
        return self.blocks

    @property
    def structured(self) -> bool:
        """Whether hard/soft rows and H are available (diagonal or l2-group D)."""
        return self.hard is not None

    @classmethod
    def diagonal(cls, d: np.ndarray, dw: np.ndarray | None) -> ProxJacobian:
        """D = diag(d), d in [0, 1], shape (m,)."""
        soft = np.flatnonzero((d > _KINK) & (d < 1.0 - _KINK))
        H = (1.0 - d[soft]) / d[soft]
        return cls(
            d=d,
            hard=np.flatnonzero(d <= _KINK),
            soft=soft,
            H=H,
            dw=dw,
            weights=d.size,
        )

    def weight_gradient(self, r: np.ndarray) -> np.ndarray | None:
        """(dp/dw)' r for r of shape (m,), one entry per weight (None for indicators)."""
        if self.dw is None:
            return None
        if self.weight_of_row is None:
            return self.dw * r
        return np.bincount(self.weight_of_row, self.dw * r, minlength=self.weights)


def prox_jacobian(function: ProxFunction, v: np.ndarray) -> ProxJacobian:
    """The Jacobian of p = prox_f (step 1) or Pi_K at v, shape (m,).

    Covers every function of ``DIFFERENTIABLE_FUNCTIONS``; at a kink (|v_j| = w_j for
    norm1, ||v_g|| = w_g for a group) the generalized Jacobian with D = 0 there is taken.

    Raises
    ------
    NotImplementedError
        For a function without a prox Jacobian here (naming it).
    """
    v = np.asarray(v, dtype=np.float64)
    if isinstance(function, ZeroCone):
        return ProxJacobian.diagonal(np.zeros_like(v), None)
    if isinstance(function, NonnegCone):
        return ProxJacobian.diagonal((v > 0).astype(np.float64), None)
    if isinstance(function, Cone):
        return ProxJacobian(blocks=sp.csr_array(function.project_derivative(v)))
    if isinstance(function, (GroupL2, Norm2)):
        k = function.group_size if isinstance(function, GroupL2) else function.size
        return _group_jacobian(v.reshape(-1, k), np.asarray(function.weight, dtype=np.float64))
    w = np.broadcast_to(np.asarray(getattr(function, "weight", 1.0), dtype=np.float64), v.shape)
    if isinstance(function, Norm1):
        moving = np.abs(v) > w
        return ProxJacobian.diagonal(moving.astype(np.float64), -np.sign(v) * moving)
    if isinstance(function, SumSquares):
        scale = 1.0 / (1.0 + 2.0 * w)
        return ProxJacobian.diagonal(scale, -2.0 * v * scale**2)
    if isinstance(function, Huber):
        scale = 1.0 / (1.0 + 2.0 * w)
        quadratic = np.abs(v) <= function.M / scale
        d = np.where(quadratic, scale, 1.0)
        dw = np.where(quadratic, -2.0 * v * scale**2, -2.0 * function.M * np.sign(v))
        return ProxJacobian.diagonal(d, dw)
    if isinstance(function, Pos):
        above = v > w
        inside = (v >= 0) & ~above
        return ProxJacobian.diagonal((~inside).astype(np.float64), -above.astype(np.float64))
    raise NotImplementedError(f"no prox Jacobian for {function.describe()}")


def _group_jacobian(groups: np.ndarray, weight: np.ndarray) -> ProxJacobian:
    """Block soft thresholding p(v_g) = (1 - w_g/||v_g||)_+ v_g of G groups of size k.

    A group with ||v_g|| <= w_g maps to 0 (D_g = 0: hard). Otherwise, with u = v_g/||v_g||
    and s = 1 - w_g/||v_g||, D_g = s (I - uu') + uu' and H_g = (1/s - 1)(I - uu') (soft
    when w_g > 0, flat when w_g = 0); the derivative in w_g is -u.
    """
    count, k = groups.shape
    w = np.broadcast_to(weight, (count,))
    norms = np.linalg.norm(groups, axis=1)
    alive = norms > w
    rows = np.arange(count * k).reshape(count, k)
    u = np.zeros_like(groups)
    u[alive] = groups[alive] / norms[alive, None]
    s = np.zeros(count)
    s[alive] = 1.0 - w[alive] / norms[alive]
    outer = u[:, :, None] * u[:, None, :]
    D_blocks = s[:, None, None] * (np.eye(k)[None] - outer) + outer
    D = sp.block_diag(list(D_blocks), format="csr") if count else sp.csr_array((0, 0))
    soft_groups = np.flatnonzero(alive & (w > 0))
    factor = w[soft_groups] / (norms[soft_groups] - w[soft_groups])  # 1/s - 1
    H_blocks = factor[:, None, None] * (np.eye(k)[None] - outer[soft_groups])
    H = sp.block_diag(list(H_blocks), format="csr") if soft_groups.size else sp.csr_array((0, 0))
    return ProxJacobian(
        blocks=sp.csr_array(D),
        hard=rows[~alive].ravel(),
        soft=rows[soft_groups].ravel(),
        H=sp.csr_array(H),
        dw=-u.ravel(),
        weight_of_row=np.repeat(np.arange(count), k),
        weights=count,
    )
