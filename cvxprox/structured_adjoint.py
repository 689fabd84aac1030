"""Implicit differentiation of the solution of a StructuredProgram.

For ``minimize c'x + sum_i f_i(A_i x - b_i)`` (``cvxprox.ir.StructuredProgram``) with
duals y_i in df_i(z_i), z_i = A_i x - b_i, write v_i = z_i + y_i. Then z_i = p_i(v_i) with
p_i the prox of f_i (step 1), and the solution is a zero of the residual map

    R(x, v) = [ c + sum_i A_i'(v_i - p_i(v_i)) ;  A_i x - b_i - p_i(v_i) ].

With D_i = dp_i/dv_i its Jacobian is J = [[0, A'(I - D)], [A, -D]]. A loss with gradient
g = dL/dx has dL/dtheta = -u' dR/dtheta, where u = (u_x, u_v) solves J'u = (g, 0):

    A' u_v = g,        (I - D) A u_x = D u_v.

For separable functions D is diagonal with entries d in [0, 1]. Rows with d = 0 are *hard*
(an active constraint or a zero of a norm: (A u_x)_j = 0 and u_v,j is a multiplier), rows
with d = 1 are *flat* (u_v,j = 0) and the others have curvature h = (1 - d)/d
(u_v,j = h_j (A u_x)_j). For l2 norms of groups D is block diagonal: a group mapped to
zero is hard, the others carry the block H_g = D_g^{-1} - I. Eliminating u_v leaves the
symmetric saddle-point system

    [ A_S' H A_S   C' ] [u_x]   [g]
    [ C            0  ] [mu ] = [0],     C = the hard rows,

whose hard rows that fix a single coordinate (a norm or a bound on x itself) are eliminated
first: for a lasso the system is the Gram matrix of the active columns. ``prox_jacobian``
gives the hard and soft rows, H and dp/dw (w the weights) of every function in
``DIFFERENTIABLE_FUNCTIONS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from cvxprox.ir import StructuredProgram
from cvxprox.linops import Identity, LinOp, MatrixOp
from cvxprox.prox import (
    GroupL2,
    Huber,
    Nonneg,
    Norm1,
    Norm2,
    Pos,
    ProxFunction,
    SumSquares,
    Zero,
)

#: Functions whose prox Jacobian is implemented below: diagonal (separable functions) or
#: block diagonal over groups (l2 norms: GroupL2, Norm2).
DIFFERENTIABLE_FUNCTIONS = (Norm1, SumSquares, Huber, Pos, Zero, Nonneg, GroupL2, Norm2)
# Saddle-point systems are assembled densely when an operator is a dense matrix or the
# free coordinates number at most this; otherwise as sparse matrices.
_DENSE_LIMIT = 500
# Regularization of the saddle-point system relative to its largest entry (removed again
# by iterative refinement), and the refinement's relative tolerance.
_REGULARIZATION = 1e-10
_REFINE_TOL = 1e-12
# d <= _KINK counts as hard (0), d >= 1 - _KINK as flat (1).
_KINK = 1e-12


@dataclass
class ProxJacobian:
    """The prox u = p(v) of a weighted function, differentiated at v.

    du = D dv + (dp/dw) dw with D symmetric, its spectrum in [0, 1]. In the adjoint
    system (module docstring) a row is *hard* where D has eigenvalue 0 on it, and the
    *soft* rows carry the curvature H = D^{-1} - I (PSD) on the range of D; rows where
    D = I are flat and appear in neither.

    Attributes
    ----------
    hard : ndarray of int
    soft : ndarray of int
    H : ndarray, (len(soft),), or csr_array, (len(soft), len(soft))
        Diagonal (its entries) or block diagonal.
    dw : ndarray, shape (m,), or None
        dp/dw entry by entry (None: an indicator, which has no weight).
    weight_of_row : ndarray of int, shape (m,), or None
        Which weight entry each row's ``dw`` belongs to (None: row i has weight i).
    weights : int
        Number of weight entries (m for elementwise weights, one per group).
    """

    hard: np.ndarray
    soft: np.ndarray
    H: np.ndarray | sp.csr_array
    dw: np.ndarray | None
    weight_of_row: np.ndarray | None = None
    weights: int = 0

    @classmethod
    def diagonal(cls, d: np.ndarray, dw: np.ndarray | None) -> ProxJacobian:
        """D = diag(d), d in [0, 1]."""
        soft = np.flatnonzero((d > _KINK) & (d < 1.0 - _KINK))
        H = (1.0 - d[soft]) / d[soft]
        return cls(np.flatnonzero(d <= _KINK), soft, H, dw, None, d.size)

    def weight_gradient(self, r: np.ndarray) -> np.ndarray | None:
        """(dp/dw)' r, one entry per weight (None for indicators)."""
        if self.dw is None:
            return None
        if self.weight_of_row is None:
            return self.dw * r
        return np.bincount(self.weight_of_row, self.dw * r, minlength=self.weights)


def prox_jacobian(function: ProxFunction, v: np.ndarray) -> ProxJacobian:
    """The Jacobian of ``function``'s prox (step 1) at v, shape (m,).

    At a kink (|v| = w for norm1, ||v_g|| = w for a group) the generalized Jacobian with
    D = 0 there is taken.
    """
    if isinstance(function, (GroupL2, Norm2)):
        k = function.group_size if isinstance(function, GroupL2) else function.size
        return _group_jacobian(v.reshape(-1, k), np.asarray(function.weight, dtype=np.float64))
    if isinstance(function, Zero):
        return ProxJacobian.diagonal(np.zeros_like(v), None)
    if isinstance(function, Nonneg):
        return ProxJacobian.diagonal((v > 0).astype(np.float64), None)
    w = np.broadcast_to(np.asarray(function.weight, dtype=np.float64), v.shape)
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
    and s = 1 - w_g/||v_g||, D_g = s (I - uu') + uu' and H_g = (1/s - 1)(I - uu'); the
    derivative in w_g is -u.
    """
    count, k = groups.shape
    w = np.broadcast_to(weight, (count,))
    norms = np.linalg.norm(groups, axis=1)
    alive = norms > w
    rows = np.arange(count * k).reshape(count, k)
    u = np.zeros_like(groups)
    u[alive] = groups[alive] / norms[alive, None]
    soft_groups = np.flatnonzero(alive & (w > 0))
    factor = w[soft_groups] / (norms[soft_groups] - w[soft_groups])  # 1/s - 1
    us = u[soft_groups]
    blocks = factor[:, None, None] * (np.eye(k)[None] - us[:, :, None] * us[:, None, :])
    H = sp.block_diag(list(blocks), format="csr") if blocks.size else sp.csr_array((0, 0))
    return ProxJacobian(
        hard=rows[~alive].ravel(),
        soft=rows[soft_groups].ravel(),
        H=sp.csr_array(H),
        dw=-u.ravel(),
        weight_of_row=np.repeat(np.arange(count), k),
        weights=count,
    )


def _matrix(op: LinOp) -> np.ndarray | sp.csr_array | None:
    """The operator as a dense array (a dense MatrixOp), a CSR array, or None (identity)."""
    if isinstance(op, Identity):
        return None
    if isinstance(op, MatrixOp) and isinstance(op.matrix, np.ndarray):
        return op.matrix
    return sp.csr_array(op.to_sparse())


@dataclass
class _Rows:
    """One term's rows sorted by its prox Jacobian: ``soft`` (curvature ``H``), hard rows
    fixing one coordinate (``coord_rows``: a x_cols = 0 with a = ``coef``)
    and other hard rows (``general``); the remaining rows are flat."""

    soft: np.ndarray
    H: np.ndarray | sp.csr_array
    coord_rows: np.ndarray
    coord_cols: np.ndarray
    coef: np.ndarray
    general: np.ndarray

    @classmethod
    def split(cls, A: np.ndarray | sp.csr_array | None, jac: ProxJacobian) -> _Rows:
        hard, soft, H = jac.hard, jac.soft, jac.H
        empty = np.zeros(0, dtype=np.int64)
        if A is None:
            return cls(soft, H, hard, hard, np.ones(hard.size), empty)
        if not sp.issparse(A) or hard.size == 0:
            return cls(soft, H, empty, empty, np.zeros(0), hard)
        counts = np.diff(A.indptr)[hard]
        single = hard[counts == 1]
        cols = A.indices[A.indptr[single]]
        coef = A.data[A.indptr[single]]
        nonzero = coef != 0
        return cls(soft, H, single[nonzero], cols[nonzero], coef[nonzero], hard[counts != 1])


class StructuredAdjoint:
    """The adjoint system of one structured program at its solution (module docstring).

    Parameters
    ----------
    program : StructuredProgram
        With only functions of ``DIFFERENTIABLE_FUNCTIONS``.
    x : ndarray, shape (n,)
    z, y : ndarray, shape (m,)
        The solution, the terms' arguments z_i = p_i(z_i + y_i) and their duals, stacked in
        term order. The algorithms return z as the prox's output, which is exactly sparse
        at a kink (a zero entry, a zero group); A x - b in its place would misplace the
        kinks by the solver's tolerance, and with them the Jacobian.
    """

    def __init__(
        self, program: StructuredProgram, x: np.ndarray, z: np.ndarray, y: np.ndarray
    ) -> None:
        self.program = program
        self.matrices = [_matrix(t.op) for t in program.terms]
        self.y, self.jacobians = [], []
        start = 0
        for term in program.terms:
            rows = slice(start, start + term.size)
            start += term.size
            self.y.append(y[rows])
            self.jacobians.append(prox_jacobian(term.function, z[rows] + y[rows]))

    def solve(self, g: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """u = (u_x, [u_v,i]) with J'u = (g, 0)."""
        n = self.program.n
        rows = [_Rows.split(A, jac) for A, jac in zip(self.matrices, self.jacobians, strict=True)]
        # A coordinate that an equality fixes does not move with the other rows that are
        # active at it (a kink of a norm, a bound): those are only weakly active, and the
        # equality takes the whole multiplier (the derivative in its right-hand side is 1).
        fixed = np.zeros(n, dtype=bool)
        for term, r in zip(self.program.terms, rows, strict=True):
            if isinstance(term.function, Zero):
                fixed[r.coord_cols] = True
        for term, r in zip(self.program.terms, rows, strict=True):
            if not isinstance(term.function, Zero) and np.any(fixed[r.coord_cols]):
                keep = ~fixed[r.coord_cols]
                r.coord_rows, r.coord_cols, r.coef = (
                    r.coord_rows[keep],
                    r.coord_cols[keep],
                    r.coef[keep],
                )
        squares = np.zeros(n)  # sum of a^2 over the coordinate rows fixing each x_j
        for r in rows:
            np.add.at(squares, r.coord_cols, r.coef**2)
        free = np.flatnonzero(squares == 0)
        parts = [(_take(A, r.soft, n), r.H) for A, r in zip(self.matrices, rows, strict=True)]
        dense = free.size <= _DENSE_LIMIT or any(isinstance(A, np.ndarray) for A in self.matrices)
        M = _sum_gram(parts, free, dense)
        C = _stack(
            dense,
            [_take(A, r.general, n)[:, free] for A, r in zip(self.matrices, rows, strict=True)],
        )
        u_free, mu = _saddle_point(M, C, g[free])
        u_x = np.zeros(n)
        u_x[free] = u_free
        # What A'u_v = g leaves on the fixed coordinates goes to their rows' multipliers.
        left = g - sum((B.T @ _curve(H, B @ u_x) for B, H in parts), np.zeros(n))
        u_v, start = [], 0
        for A, r in zip(self.matrices, rows, strict=True):
            general = _take(A, r.general, n)
            left -= general.T @ mu[start : start + r.general.size]
            start += r.general.size
        for A, r, term in zip(self.matrices, rows, self.program.terms, strict=True):
            u_i = np.zeros(term.size)
            u_i[r.soft] = _curve(r.H, _take(A, r.soft, n) @ u_x)
            u_i[r.coord_rows] = r.coef * left[r.coord_cols] / squares[r.coord_cols]
            u_v.append(u_i)
        start = 0
        for u_i, r in zip(u_v, rows, strict=True):
            u_i[r.general] = mu[start : start + r.general.size]
            start += r.general.size
        return u_x, u_v

    def weight_gradients(self, u_x: np.ndarray, u_v: list[np.ndarray]) -> list[np.ndarray | None]:
        """q_i = (dp_i/dw)' (A_i u_x + u_v,i) per term, one entry per weight (None for
        indicators): the weights enter u'dR/dtheta as -sum_i <q_i, dw_i/dtheta>."""
        return [
            jac.weight_gradient(term.op.matvec(u_x) + u_i)
            for term, jac, u_i in zip(self.program.terms, self.jacobians, u_v, strict=True)
        ]


def _take(
    A: np.ndarray | sp.csr_array | None, rows: np.ndarray, n: int
) -> np.ndarray | sp.csr_array:
    """Rows of a term's matrix (of the identity when A is None)."""
    if rows.size == 0:
        return np.zeros((0, n))
    if A is None:
        return sp.csr_array(
            (np.ones(rows.size), (np.arange(rows.size), rows)), shape=(rows.size, n)
        )
    return A[rows]


def _curve(H: np.ndarray | sp.csr_array, B: np.ndarray | sp.csr_array):  # noqa: ANN202
    """H B for a diagonal (its entries) or sparse H, and a vector or matrix B."""
    if sp.issparse(H):
        return H @ B
    if sp.issparse(B):
        return sp.csr_array(sp.diags_array(H) @ B)
    return H * B if B.ndim == 1 else H[:, None] * B


def _sum_gram(parts: list[tuple], free: np.ndarray, dense: bool) -> np.ndarray | sp.csc_array:
    """sum B[:, free]' H B[:, free], as a dense or a sparse matrix."""
    total = np.zeros((free.size, free.size)) if dense else sp.csc_array((free.size,) * 2)
    for B, H in parts:
        if B.shape[0] == 0:
            continue
        Bf = B[:, free]
        part = Bf.T @ _curve(H, Bf)
        if sp.issparse(part):
            total = total + (part.toarray() if dense else part)
        else:
            total = total + (part if dense else sp.csc_array(part))
    return total


def _stack(dense: bool, blocks: list[np.ndarray | sp.csr_array]) -> np.ndarray | sp.csr_array:
    """The general hard rows restricted to the free columns, as one matrix."""
    width = blocks[0].shape[1] if blocks else 0
    blocks = [b for b in blocks if b.shape[0]]
    if not blocks:
        return np.zeros((0, width)) if dense else sp.csr_array((0, width))
    if dense:
        return np.vstack([b.toarray() if sp.issparse(b) else b for b in blocks])
    return sp.csr_array(sp.vstack([sp.csr_array(b) for b in blocks]))


def _saddle_point(
    M: np.ndarray | sp.csc_array, C: np.ndarray | sp.csr_array, g: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """[[M, C'], [C, 0]] [u; mu] = [g; 0].

    The system is singular whenever hard rows are redundant (the differences of a flat
    region of a TV image) or the solution is not unique. It is solved through the
    quasi-definite [[M + delta I, C'], [C, -delta I]] (always nonsingular), whose error is
    removed by iterative refinement against the exact system.
    """
    n, k = M.shape[0], C.shape[0]
    rhs = np.concatenate([g, np.zeros(k)])
    if sp.issparse(M):
        K = sp.block_array([[M, sp.csr_array(C).T], [sp.csr_array(C), None]], format="csc")
        scale = float(abs(K).max()) if K.nnz else 1.0
        shift = sp.diags_array(np.r_[np.ones(n), -np.ones(k)] * _REGULARIZATION * scale)
        solve = spla.splu(sp.csc_array(K + shift)).solve
    else:
        K = np.block([[M, C.T], [C, np.zeros((k, k))]])
        scale = float(np.abs(K).max()) if K.size else 1.0
        shifted = K + np.diag(np.r_[np.ones(n), -np.ones(k)] * _REGULARIZATION * scale)
        factors = la.lu_factor(shifted, check_finite=False)
        solve = lambda r: la.lu_solve(factors, r, check_finite=False)  # noqa: E731
    sol = solve(rhs)
    for _ in range(20):
        residual = rhs - K @ sol
        if np.linalg.norm(residual) <= _REFINE_TOL * (1.0 + np.linalg.norm(rhs)):
            break
        sol = sol + solve(residual)
    return sol[:n], sol[n:]
