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
(u_v,j = h_j (A u_x)_j). Eliminating u_v leaves the symmetric saddle-point system

    [ A_S' H A_S   C' ] [u_x]   [g]
    [ C            0  ] [mu ] = [0],     C = the hard rows,

whose hard rows that fix a single coordinate (a norm or a bound on x itself) are eliminated
first: for a lasso the system is the Gram matrix of the active columns. ``SeparableJacobian``
gives d and dp/dw (w the weights) for every separable function of ``cvxprox.prox``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from cvxprox.ir import StructuredProgram
from cvxprox.linops import Identity, LinOp, MatrixOp
from cvxprox.prox import Huber, Nonneg, Norm1, Pos, ProxFunction, SumSquares, Zero

#: Functions whose prox Jacobian is diagonal and implemented below.
DIFFERENTIABLE_FUNCTIONS = (Norm1, SumSquares, Huber, Pos, Zero, Nonneg)
# Saddle-point systems up to this size are solved densely.
_DENSE_LIMIT = 3000
# d <= _KINK counts as hard (0), d >= 1 - _KINK as flat (1).
_KINK = 1e-12


@dataclass
class SeparableJacobian:
    """The prox u = p(v) of a separable w-weighted function, differentiated at v:
    du = d * dv + dw * dweight (elementwise), with d in [0, 1]; ``dw`` is None for
    indicators, which have no weight."""

    d: np.ndarray
    dw: np.ndarray | None


def prox_jacobian(function: ProxFunction, v: np.ndarray) -> SeparableJacobian:
    """d p/d v (diagonal) and d p/d w of ``function``'s prox (step 1) at v, shape (m,).

    At a kink (|v| = w for norm1) the generalized Jacobian with d = 0 is taken.
    """
    if isinstance(function, Zero):
        return SeparableJacobian(np.zeros_like(v), None)
    if isinstance(function, Nonneg):
        return SeparableJacobian((v > 0).astype(np.float64), None)
    w = np.broadcast_to(np.asarray(function.weight, dtype=np.float64), v.shape)
    if isinstance(function, Norm1):
        moving = np.abs(v) > w
        return SeparableJacobian(moving.astype(np.float64), -np.sign(v) * moving)
    if isinstance(function, SumSquares):
        scale = 1.0 / (1.0 + 2.0 * w)
        return SeparableJacobian(scale, -2.0 * v * scale**2)
    if isinstance(function, Huber):
        scale = 1.0 / (1.0 + 2.0 * w)
        quadratic = np.abs(v) <= function.M / scale
        d = np.where(quadratic, scale, 1.0)
        dw = np.where(quadratic, -2.0 * v * scale**2, -2.0 * function.M * np.sign(v))
        return SeparableJacobian(d, dw)
    if isinstance(function, Pos):
        above = v > w
        inside = (v >= 0) & ~above
        return SeparableJacobian((~inside).astype(np.float64), -above.astype(np.float64))
    raise NotImplementedError(f"no prox Jacobian for {function.describe()}")


def _matrix(op: LinOp) -> np.ndarray | sp.csr_array | None:
    """The operator as a dense array (a dense MatrixOp), a CSR array, or None (identity)."""
    if isinstance(op, Identity):
        return None
    if isinstance(op, MatrixOp) and isinstance(op.matrix, np.ndarray):
        return op.matrix
    return sp.csr_array(op.to_sparse())


@dataclass
class _Rows:
    """One term's rows sorted by its prox Jacobian d: ``soft`` (0 < d < 1, curvature
    ``h``), hard rows fixing one coordinate (``coord_rows`` a x_cols = 0 with a = ``coef``)
    and other hard rows (``general``); the remaining rows are flat."""

    soft: np.ndarray
    h: np.ndarray
    coord_rows: np.ndarray
    coord_cols: np.ndarray
    coef: np.ndarray
    general: np.ndarray

    @classmethod
    def split(cls, A: np.ndarray | sp.csr_array | None, d: np.ndarray) -> _Rows:
        hard = np.flatnonzero(d <= _KINK)
        soft = np.flatnonzero((d > _KINK) & (d < 1.0 - _KINK))
        h = (1.0 - d[soft]) / d[soft]
        empty = np.zeros(0, dtype=np.int64)
        if A is None:
            return cls(soft, h, hard, hard, np.ones(hard.size), empty)
        if not sp.issparse(A) or hard.size == 0:
            return cls(soft, h, empty, empty, np.zeros(0), hard)
        counts = np.diff(A.indptr)[hard]
        single = hard[counts == 1]
        cols = A.indices[A.indptr[single]]
        coef = A.data[A.indptr[single]]
        nonzero = coef != 0
        return cls(soft, h, single[nonzero], cols[nonzero], coef[nonzero], hard[counts != 1])


class StructuredAdjoint:
    """The adjoint system of one structured program at its solution (module docstring).

    Parameters
    ----------
    program : StructuredProgram
        With only functions of ``DIFFERENTIABLE_FUNCTIONS``.
    x : ndarray, shape (n,)
    y : ndarray, shape (m,)
        The solution and the terms' duals, stacked in term order.
    """

    def __init__(self, program: StructuredProgram, x: np.ndarray, y: np.ndarray) -> None:
        self.program = program
        self.x = x
        self.matrices = [_matrix(t.op) for t in program.terms]
        self.y, self.jacobians = [], []
        start = 0
        for term in program.terms:
            y_i = y[start : start + term.size]
            start += term.size
            self.y.append(y_i)
            self.jacobians.append(prox_jacobian(term.function, term.residual(x) + y_i))

    def solve(self, g: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """u = (u_x, [u_v,i]) with J'u = (g, 0)."""
        n = self.program.n
        rows = [_Rows.split(A, jac.d) for A, jac in zip(self.matrices, self.jacobians, strict=True)]
        squares = np.zeros(n)  # sum of a^2 over the coordinate rows fixing each x_j
        for r in rows:
            np.add.at(squares, r.coord_cols, r.coef**2)
        free = np.flatnonzero(squares == 0)
        parts = [(_take(A, r.soft, n), r.h) for A, r in zip(self.matrices, rows, strict=True)]
        M = _sum_gram(parts, free)
        C = _stack(
            [_take(A, r.general, n)[:, free] for A, r in zip(self.matrices, rows, strict=True)]
        )
        u_free, mu = _saddle_point(M, C, g[free])
        u_x = np.zeros(n)
        u_x[free] = u_free
        # What A'u_v = g leaves on the fixed coordinates goes to their rows' multipliers.
        left = g - sum((B.T @ (h * (B @ u_x)) for B, h in parts), np.zeros(n))
        u_v, start = [], 0
        for A, r in zip(self.matrices, rows, strict=True):
            general = _take(A, r.general, n)
            left -= general.T @ mu[start : start + r.general.size]
            start += r.general.size
        for A, r, term in zip(self.matrices, rows, self.program.terms, strict=True):
            u_i = np.zeros(term.size)
            u_i[r.soft] = r.h * (_take(A, r.soft, n) @ u_x)
            u_i[r.coord_rows] = r.coef * left[r.coord_cols] / squares[r.coord_cols]
            u_v.append(u_i)
        start = 0
        for u_i, r in zip(u_v, rows, strict=True):
            u_i[r.general] = mu[start : start + r.general.size]
            start += r.general.size
        return u_x, u_v

    def weight_gradients(self, u_x: np.ndarray, u_v: list[np.ndarray]) -> list[np.ndarray | None]:
        """q_i = dp_i/dw' (A_i u_x + u_v,i) per term, elementwise (None for indicators):
        the weights enter u'dR/dtheta as -sum_i <q_i, dw_i/dtheta>."""
        out = []
        for term, jac, u_i in zip(self.program.terms, self.jacobians, u_v, strict=True):
            out.append(None if jac.dw is None else jac.dw * (term.op.matvec(u_x) + u_i))
        return out


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


def _sum_gram(parts: list[tuple], free: np.ndarray) -> np.ndarray | sp.csc_array:
    """sum B[:, free]' diag(h) B[:, free]; dense up to _DENSE_LIMIT columns."""
    dense = free.size <= _DENSE_LIMIT
    total = np.zeros((free.size, free.size)) if dense else sp.csc_array((free.size,) * 2)
    for B, h in parts:
        if B.shape[0] == 0:
            continue
        Bf = B[:, free]
        if sp.issparse(Bf):
            part = Bf.T @ sp.diags_array(h) @ Bf
            total = total + (part.toarray() if dense else part)
        else:
            part = Bf.T @ (h[:, None] * Bf)
            total = total + (part if dense else sp.csc_array(part))
    return total


def _stack(blocks: list[np.ndarray | sp.csr_array]) -> np.ndarray | sp.csr_array:
    """The general hard rows restricted to the free columns, as one matrix."""
    width = blocks[0].shape[1]
    blocks = [b for b in blocks if b.shape[0]]
    if not blocks:
        return np.zeros((0, width))
    if width > _DENSE_LIMIT and any(sp.issparse(b) for b in blocks):
        return sp.csr_array(sp.vstack([sp.csr_array(b) for b in blocks]))
    return np.vstack([b.toarray() if sp.issparse(b) else b for b in blocks])


def _saddle_point(
    M: np.ndarray | sp.csc_array, C: np.ndarray | sp.csr_array, g: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """[[M, C'], [C, 0]] [u; mu] = [g; 0]; least squares when it is singular."""
    n, k = M.shape[0], C.shape[0]
    rhs = np.concatenate([g, np.zeros(k)])
    if not sp.issparse(M):
        Cd = C.toarray() if sp.issparse(C) else C
        K = np.block([[M, Cd.T], [Cd, np.zeros((k, k))]])
        try:
            sol = la.solve(K, rhs, assume_a="sym")
            if np.all(np.isfinite(sol)) and np.allclose(K @ sol, rhs, rtol=1e-8, atol=1e-10):
                return sol[:n], sol[n:]
        except (la.LinAlgError, ValueError):
            pass
        sol = la.lstsq(K, rhs, lapack_driver="gelsd")[0]
        return sol[:n], sol[n:]
    K = sp.block_array([[M, sp.csr_array(C).T], [sp.csr_array(C), None]], format="csc")
    try:
        sol = spla.splu(K).solve(rhs)
        if np.all(np.isfinite(sol)) and np.linalg.norm(K @ sol - rhs) <= 1e-8 * (
            1.0 + np.linalg.norm(rhs)
        ):
            return sol[:n], sol[n:]
    except RuntimeError:
        pass
    sol = spla.lsmr(K, rhs, atol=1e-12, btol=1e-12, maxiter=20 * (n + k))[0]
    return sol[:n], sol[n:]
