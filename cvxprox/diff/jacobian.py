"""The prox map p = prox_f (step 1) of a term and its Jacobian D = dp/dv.

For a cone indicator (a ``ProxFunction`` too) p is the projection Pi_K and D = DPi_K(v)
(``Cone.project_derivative`` of ``cvxprox.functions.cones``); for the other prox functions of
``cvxprox.functions.prox`` D is written out below.
Either way D is symmetric with its spectrum in [0, 1]: p is the gradient of the convex
function ||v||^2/2 - e_f(v) (e_f the Moreau envelope of f) and is nonexpansive. Where p is not
differentiable (a kink of a norm, the boundary of a cone) an element of Clarke's
generalized Jacobian is taken: D = 0 on the rows at a kink, unless a function's own
docstring below says which other element.

Besides D, the adjoint (``cvxprox.diff.adjoint``) uses its *structure*: the space of v
splits into D's null space (*hard*: coordinate rows where D has eigenvalue 0, and
*hard directions* E, rows of a sparse matrix spanning the rest of the null space), rows
where 0 < D < I with the curvature H = D^{-1} - I on the range of D (*soft*), and the
rest, where D = I (*flat*). Every prox function here has one except the second-order,
exponential, power and PSD cones (``ProxJacobian.hard`` is None):

- diagonal D (separable functions, the zero and nonnegative cones, boxes): hard, soft
  and flat rows;
- l2 norms (groups): D_g = s (I - uu') + uu', soft with H_g = (1/s - 1)(I - uu');
- a quadratic form: D = (I + H)^{-1} on every row; the l2 ball outside it: the same
  on the tangent space, and the hard direction v;
- 1-D TV, norm_inf, the l1 ball and the simplex: D is the orthogonal projection onto a
  subspace that coordinates do not span (for TV, the signals constant on each segment of
  the prox), hard coordinate rows and hard directions (for TV, the differences of
  neighbours within a segment) span its complement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

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
    TV1D,
    BlockSum,
    Box,
    GroupL2,
    Huber,
    KLDiv,
    L1Ball,
    L2Ball,
    LinfBall,
    Logistic,
    NegEntropy,
    Norm1,
    Norm2,
    NormInf,
    Pos,
    ProxFunction,
    Quadratic,
    Simplex,
    SumSquares,
)

#: Prox functions whose prox Jacobian is implemented: every cone of ``cvxprox.functions.cones`` (the
#: projection's Jacobian), diagonal ones (separable functions, boxes), block diagonal ones
#: over groups (l2 norms: GroupL2, Norm2), the projections onto the l1 and l2 balls and
#: the simplex, norm_inf, 1-D TV, quadratic forms, and block sums of any of these.
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
    NormInf,
    TV1D,
    Logistic,
    NegEntropy,
    KLDiv,
    Quadratic,
    Box,
    LinfBall,
    L1Ball,
    L2Ball,
    Simplex,
    BlockSum,
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
    blocks : csr_array, shape (m, m), or a function returning it, or None
        D when it is not diagonal (``D`` gives it either way, calling the function once:
        1-D TV's D has k^2 entries per segment of length k, which the reduced adjoint
        never forms).
    hard : ndarray of int, or None
        Rows where D has eigenvalue 0 (None when D has no hard/soft/flat structure).
    directions : csr_array, shape (k, m), or None
        Hard directions: rows spanning the part of D's null space that ``hard`` does not
        (None: none), orthogonal to the soft rows' range.
    soft : ndarray of int, or None
        Rows on which D has eigenvalues in (0, 1); on the rest of the space (neither hard
        rows, nor soft rows, nor spanned by ``directions``) D = I.
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
    blocks: sp.csr_array | Callable[[], sp.csr_array] | None = None
    hard: np.ndarray | None = None
    directions: sp.csr_array | None = None
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
        if callable(self.blocks):
            self.blocks = self.blocks()
        return self.blocks

    @property
    def structured(self) -> bool:
        """Whether hard/soft rows and H are available (module docstring)."""
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

    @classmethod
    def block_diagonal(cls, parts: list[ProxJacobian], sizes: list[int]) -> ProxJacobian:
        """diag(D_1, ..., D_B) of the blocks of a ``BlockSum`` (D_b of shape
        (sizes[b], sizes[b])): diagonal when every D_b is, structured when every D_b is,
        the weights numbered block after block."""
        starts = np.cumsum([0, *sizes])
        d = (
            np.concatenate([jac.d for jac in parts])
            if all(j.d is not None for j in parts)
            else None
        )
        blocks = None
        if d is None:

            def blocks() -> sp.csr_array:
                return sp.csr_array(sp.block_diag([jac.D for jac in parts], format="csr"))

        hard = soft = H = directions = None
        if all(jac.structured for jac in parts):
            if any(jac.directions is not None for jac in parts):
                directions = sp.csr_array(
                    sp.block_diag(
                        [
                            sp.csr_array((0, size)) if jac.directions is None else jac.directions
                            for jac, size in zip(parts, sizes, strict=True)
                        ],
                        format="csr",
                    )
                )
            hard = np.concatenate([jac.hard + a for jac, a in zip(parts, starts, strict=False)])
            soft = np.concatenate([jac.soft + a for jac, a in zip(parts, starts, strict=False)])
            if all(not sp.issparse(jac.H) for jac in parts):
                H = np.concatenate([jac.H for jac in parts])
            else:
                H = sp.csr_array(
                    sp.block_diag(
                        [jac.H if sp.issparse(jac.H) else sp.diags_array(jac.H) for jac in parts]
                    )
                )
        dw = weight_of_row = None
        weights = 0
        if any(jac.dw is not None for jac in parts):
            dw, weight_of_row = [], []
            for jac, size in zip(parts, sizes, strict=True):
                if jac.dw is None:
                    dw.append(np.zeros(size))
                    weight_of_row.append(np.zeros(size, dtype=np.int64))
                    continue
                rows = np.arange(size) if jac.weight_of_row is None else jac.weight_of_row
                dw.append(jac.dw)
                weight_of_row.append(rows + weights)
                weights += jac.weights
            dw, weight_of_row = np.concatenate(dw), np.concatenate(weight_of_row)
        return cls(
            d=d,
            blocks=blocks,
            hard=hard,
            directions=directions,
            soft=soft,
            H=H,
            dw=dw,
            weight_of_row=weight_of_row,
            weights=weights,
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
    norm1, ||v_g|| = w_g for a group, v_j on a bound) the generalized Jacobian with D = 0
    there is taken.

    Raises
    ------
    NotImplementedError
        For a function without a prox Jacobian here (naming it).
    """
    v = np.asarray(v, dtype=np.float64)
    if isinstance(function, BlockSum):
        parts = zip(function.functions, function.blocks(v), strict=True)
        return ProxJacobian.block_diagonal(
            [prox_jacobian(f, vb) for f, vb in parts], [f.size for f in function.functions]
        )
    if isinstance(function, (ZeroCone, NonnegCone)):
        return ProxJacobian.diagonal(function.project_derivative(v).diagonal(), None)
    if isinstance(function, Cone):
        return ProxJacobian(blocks=sp.csr_array(function.project_derivative(v)))
    if isinstance(function, (GroupL2, Norm2)):
        k = function.group_size if isinstance(function, GroupL2) else function.size
        return _group_jacobian(v.reshape(-1, k), np.asarray(function.weight, dtype=np.float64))
    if isinstance(function, Box):
        return ProxJacobian.diagonal(((v > function.lower) & (v < function.upper)) * 1.0, None)
    if isinstance(function, LinfBall):
        return ProxJacobian.diagonal((np.abs(v) < function.radius).astype(np.float64), None)
    if isinstance(function, (L1Ball, Simplex)):
        p = prox_map(function, v)
        if isinstance(function, L1Ball) and np.sum(np.abs(v)) <= function.radius:
            return ProxJacobian.diagonal(np.ones_like(v), None)
        if np.count_nonzero(p) <= 1:  # D = 0
            return ProxJacobian.diagonal(np.zeros_like(v), None)
        s = np.sign(p)
        support = np.flatnonzero(s)
        return _projection(
            _support_projection(s),
            hard=np.flatnonzero(s == 0),
            directions=sp.csr_array(
                (s[support], (np.zeros(support.size, dtype=np.int64), support)), shape=(1, v.size)
            ),
        )
    if isinstance(function, L2Ball):
        return _l2_ball_jacobian(v, function.radius)
    if isinstance(function, NormInf):
        return _norm_inf_jacobian(function, v)
    if isinstance(function, TV1D):
        return _tv1d_jacobian(prox_map(function, v))
    if isinstance(function, Quadratic):
        return _quadratic_jacobian(function, v)
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
    if isinstance(function, Logistic):
        # u + w sigma(u) = v: (1 + w sigma'(u)) du = dv - sigma(u) dw.
        sigma = expit(prox_map(function, v))
        d = 1.0 / (1.0 + w * sigma * (1.0 - sigma))
        return ProxJacobian.diagonal(d, -sigma * d)
    if isinstance(function, (NegEntropy, KLDiv)):
        return _entropy_jacobian(function, v, w)
    raise NotImplementedError(f"no prox Jacobian for {function.describe()}")


def _scalar_weight(jac: ProxJacobian) -> ProxJacobian:
    """The Jacobian of a function with one weight for all its rows."""
    return replace(jac, weight_of_row=np.zeros(jac.dw.size, dtype=np.int64), weights=1)


def _projection(
    D: sp.csr_array | Callable[[], sp.csr_array],
    hard: np.ndarray,
    directions: sp.csr_array | None,
) -> ProxJacobian:
    """A D that is an orthogonal projection (or a function forming it), whose null space
    the coordinate rows ``hard`` and the rows of ``directions`` span."""
    empty = np.zeros(0, dtype=np.int64)
    return ProxJacobian(blocks=D, hard=hard, directions=directions, soft=empty, H=np.zeros(0))


def _differences(
    first: np.ndarray, second: np.ndarray, m: int, sign: np.ndarray | None = None
) -> sp.csr_array:
    """The rows e_i - e_j (i in first, j in second; with signs s, s_i e_i - s_j e_j),
    shape (k, m)."""
    k = first.size
    rows = np.repeat(np.arange(k), 2)
    cols = np.column_stack([first, second]).ravel()
    values = (
        np.tile([1.0, -1.0], k)
        if sign is None
        else np.column_stack([sign[first], -sign[second]]).ravel()
    )
    return sp.csr_array((values, (rows, cols)), shape=(k, m))


def _support_projection(s: np.ndarray) -> sp.csr_array:
    """The orthogonal projection onto {x : x_j = 0 off S, s_S'x_S = 0}, S = {s_j != 0}:
    on S it is I - s_S s_S' / |S| (s_S of signs), 0 elsewhere; shape (m, m).

    It is the Jacobian of the projections onto the simplex and the l1 ball at a point
    outside: p = sign(v) (|v| - theta)_+ with theta fixed by sum_S (|v_j| - theta) = r, so
    dtheta = s_S'dv_S / |S| and dp_S = dv_S - s_S dtheta (S the support of p, s its signs).
    """
    support = np.flatnonzero(s)
    k = support.size
    block = np.eye(k) - np.outer(s[support], s[support]) / max(k, 1)
    rows = np.repeat(support, k)
    cols = np.tile(support, k)
    return sp.csr_array((block.ravel(), (rows, cols)), shape=(s.size, s.size))


def _l2_ball_jacobian(v: np.ndarray, radius: float) -> ProxJacobian:
    """Projection onto {||u|| <= r}: D = I inside; outside, with u = v/||v||,
    p = r u and D = (r/||v||)(I - uu'): the hard direction u, every row soft with
    H = (||v||/r - 1)(I - uu') (0 along u), D = 0 when r = 0."""
    norm = float(np.linalg.norm(v))
    if norm <= radius:
        return ProxJacobian.diagonal(np.ones_like(v), None)
    if radius == 0.0:
        return ProxJacobian.diagonal(np.zeros_like(v), None)
    u = v / norm
    tangent = np.eye(v.size) - np.outer(u, u)
    return ProxJacobian(
        blocks=sp.csr_array(radius / norm * tangent),
        hard=np.zeros(0, dtype=np.int64),
        directions=sp.csr_array(u[None, :]),
        soft=np.arange(v.size),
        H=sp.csr_array((norm / radius - 1.0) * tangent),
    )


def _norm_inf_jacobian(function: NormInf, v: np.ndarray) -> ProxJacobian:
    """p = v - P(v), P the projection onto the l1 ball of radius w (Moreau).

    When ||v||_1 <= w, p = 0 (D = 0, dp/dw = 0). Otherwise P(v) = s (|v| - theta)_+ on its
    support S (signs s, k = |S|: the entries at the largest |v_j|, which p clips to
    +-theta), so D = I - DP is the identity off S and s s'/k on S (a rank-one block: the
    clipped entries move together), and dp/dw = -dP/dw = -s/k on S (theta falls by 1/k per
    unit of radius). At w = 0, p = v (D = I) and S holds the entries of largest |v_j|.
    D's null space is spanned by the hard directions s_i e_i - s_j e_j of neighbours in S.
    """
    w = function.weight
    if np.sum(np.abs(v)) <= w:
        return _scalar_weight(ProxJacobian.diagonal(np.zeros_like(v), np.zeros_like(v)))
    if w == 0.0:
        top = np.abs(v) == np.max(np.abs(v))
        s = np.where(top, np.sign(v), 0.0)
    else:
        s = np.sign(function.prox_conj(v, 1.0))
    k = np.count_nonzero(s)
    dw = -s / k
    if k == 1 or w == 0.0:  # the identity
        return _scalar_weight(ProxJacobian.diagonal(np.ones_like(v), dw))
    D = sp.csr_array(sp.eye_array(v.size, format="csr") - _support_projection(s))
    support = np.flatnonzero(s)
    directions = _differences(support[:-1], support[1:], v.size, s)
    jac = _projection(D, np.zeros(0, dtype=np.int64), directions)
    return _scalar_weight(replace(jac, dw=dw))


def _tv1d_jacobian(p: np.ndarray) -> ProxJacobian:
    """1-D TV at its prox p = prox(v): p is constant on segments [a, b] (maximal runs of
    equal entries), and with the optimality conditions p = v - D'q (D the forward
    difference, q_i = w sign(p_{i+1} - p_i) where p jumps, q_{-1} = q_{m-1} = 0)

        p_j = (sum_{i=a}^{b} v_i - q_{a-1} + q_b) / (b - a + 1),      j in [a, b],

    which is affine in v as long as the segments and the jumps' signs stay: D is block
    diagonal with a block 11'/k per segment of length k (the projection onto the signals
    constant on each segment), and dp_j/dw = (sign(p_{b+1} - p_b) - sign(p_a - p_{a-1}))/k
    (a missing neighbour at the signal's ends counting 0). Two segments at the same level
    (a jump of zero, a kink) count as one: the Clarke element whose dual is inside. D's
    null space is spanned by the hard directions e_{i+1} - e_i of neighbours within a
    segment.
    """
    m = p.size
    jumps = np.sign(np.diff(p))
    new = np.concatenate([[True], jumps != 0])
    segment = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], m) - 1
    length = (ends - starts + 1).astype(np.float64)
    step = np.concatenate([[0.0], jumps, [0.0]])  # step[i] = sign(p_i - p_{i-1})
    dw = ((step[ends + 1] - step[starts]) / length)[segment]
    if np.all(length == 1.0):
        return _scalar_weight(ProxJacobian.diagonal(np.ones(m), dw))
    S = sp.csr_array((np.ones(m), (segment, np.arange(m))), shape=(starts.size, m))

    def average() -> sp.csr_array:
        return sp.csr_array(S.T @ sp.diags_array(1.0 / length) @ S)

    inside = np.flatnonzero(~new[1:])  # neighbours i, i + 1 of one segment
    jac = _projection(average, np.zeros(0, dtype=np.int64), _differences(inside + 1, inside, m))
    return _scalar_weight(replace(jac, dw=dw))


def _quadratic_jacobian(function: Quadratic, v: np.ndarray) -> ProxJacobian:
    """w v'Qv: p = (I + 2w Q)^{-1} v, so D = (I + 2w Q)^{-1} (every row soft, with
    H = D^{-1} - I = 2w Q) and dp/dw = -D 2Q p."""
    curvature = 2.0 * function.weight * function.Q
    D = np.linalg.inv(np.eye(v.size) + curvature)
    D = 0.5 * (D + D.T)
    p = D @ v
    return ProxJacobian(
        blocks=sp.csr_array(D),
        hard=np.zeros(0, dtype=np.int64),
        soft=np.arange(v.size),
        H=sp.csr_array(curvature),
        dw=-D @ (2.0 * function.Q @ p),
        weight_of_row=np.zeros(v.size, dtype=np.int64),
        weights=1,
    )


def _entropy_jacobian(function: NegEntropy | KLDiv, v: np.ndarray, w: np.ndarray) -> ProxJacobian:
    """The entropies' prox solves u + w log u = v + w r (r = -1 for the negative entropy,
    log c for KL), so (1 + w/u) du = dv + (r - log u) dw: d = u / (u + w). Where w = 0,
    u = max(v, 0) (d = 1 where v > 0, else 0)."""
    u = prox_map(function, v)
    r = np.log(function.c) if isinstance(function, KLDiv) else -1.0
    positive = w > 0
    d = np.where(positive, u / np.where(positive, u + w, 1.0), v > 0)
    log_u = np.log(np.where(u > 0, u, 1.0))
    return ProxJacobian.diagonal(d, (r - log_u) * d)


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
