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


def _matrix(op: LinOp) -> np.ndarray | sp.csr_array:
    """The operator as a dense array (a dense MatrixOp) or a CSR array."""
    if isinstance(op, MatrixOp) and isinstance(op.matrix, np.ndarray):
        return op.matrix
    if isinstance(op, Identity):
        return sp.eye_array(op.shape[0], format="csr")
    return sp.csr_array(op.to_sparse())


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
        self.y, self.z, self.jacobians = [], [], []
        start = 0
        for term in program.terms:
            y_i = y[start : start + term.size]
            z_i = term.residual(x)
            start += term.size
            self.y.append(y_i)
            self.z.append(z_i)
            self.jacobians.append(prox_jacobian(term.function, z_i + y_i))

    def solve(self, g: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """u = (u_x, [u_v,i]) with J'u = (g, 0)."""
        n = self.program.n
        soft_rows, soft_h, hard_rows = [], [], []
        for A, jac in zip(self.matrices, self.jacobians, strict=True):
            hard = jac.d <= _KINK
            soft = ~hard & (jac.d < 1.0 - _KINK)
            soft_rows.append(A[np.flatnonzero(soft)])
            soft_h.append((1.0 - jac.d[soft]) / jac.d[soft])
            hard_rows.append(np.flatnonzero(hard))
        fixed, coordinate = self._coordinate_rows(hard_rows)
        free = np.setdiff1d(np.arange(n), fixed)
        general = [
            _rows(A, np.setdiff1d(rows, coordinate[i][0]))
            for i, (A, rows) in enumerate(zip(self.matrices, hard_rows, strict=True))
        ]
        M = _gram(soft_rows, soft_h, free)
        C = _stack([_columns(G, free) for G in general], free.size)
        u_free, mu = _saddle_point(M, C, g[free])
        u_x = np.zeros(n)
        u_x[free] = u_free
        # Multipliers of the coordinate rows: what is left of A'u_v = g on fixed coordinates.
        left = g - _gram_apply(soft_rows, soft_h, u_x) - _stack_t(general, mu, n)
        u_v, mu_start = [], 0
        for i, (A, jac) in enumerate(zip(self.matrices, self.jacobians, strict=True)):
            u_i = np.zeros(A.shape[0])
            soft = (jac.d > _KINK) & (jac.d < 1.0 - _KINK)
            u_i[soft] = (1.0 - jac.d[soft]) / jac.d[soft] * (A[np.flatnonzero(soft)] @ u_x)
            general_rows = np.setdiff1d(hard_rows[i], coordinate[i][0])
            u_i[general_rows] = mu[mu_start : mu_start + general_rows.size]
            mu_start += general_rows.size
            rows, cols, coef = coordinate[i]
            if rows.size:
                weight = coordinate[-1][cols]
                u_i[rows] = coef * left[cols] / weight
            u_v.append(u_i)
        return u_x, u_v

    def weight_gradients(self, u_x: np.ndarray, u_v: list[np.ndarray]) -> list[np.ndarray | None]:
        """q_i = dp_i/dw' (A_i u_x + u_v,i) per term, elementwise (None for indicators):
        the weights enter u'dR/dtheta as -sum_i <q_i, dw_i/dtheta>."""
        out = []
        for A, jac, u_i in zip(self.matrices, self.jacobians, u_v, strict=True):
            out.append(None if jac.dw is None else jac.dw * (A @ u_x + u_i))
        return out

    def _coordinate_rows(self, hard_rows: list[np.ndarray]) -> tuple[np.ndarray, list]:
        """Hard rows with one nonzero a e_j' fix x_j. Returns the fixed coordinates and,
        per term, (rows, their coordinates, their coefficients), followed by the sum of
        squared coefficients per coordinate (to share a multiplier among rows fixing the
        same coordinate, by least norm)."""
        n = self.program.n
        per_term, squares = [], np.zeros(n)
        for A, rows in zip(self.matrices, hard_rows, strict=True):
            if sp.issparse(A) and rows.size:
                sub = sp.csr_array(A[rows])
                single = np.flatnonzero(np.diff(sub.indptr) == 1)
                cols = sub.indices[sub.indptr[single]]
                coef = sub.data[sub.indptr[single]]
                keep = coef != 0
                single, cols, coef = single[keep], cols[keep], coef[keep]
                np.add.at(squares, cols, coef**2)
                per_term.append((rows[single], cols, coef))
            else:
                per_term.append((np.zeros(0, dtype=int), np.zeros(0, dtype=int), np.zeros(0)))
        per_term.append(squares)
        return np.flatnonzero(squares > 0), per_term


def _rows(A: np.ndarray | sp.csr_array, rows: np.ndarray) -> np.ndarray | sp.csr_array:
    return A[rows]


def _columns(A: np.ndarray | sp.csr_array, cols: np.ndarray) -> np.ndarray | sp.csr_array:
    return A[:, cols]


def _gram(
    rows: list[np.ndarray | sp.csr_array], h: list[np.ndarray], free: np.ndarray
) -> np.ndarray | sp.csc_array:
    """sum_i A_i[:, free]' diag(h_i) A_i[:, free], dense when small or from dense blocks."""
    dense = free.size <= _DENSE_LIMIT
    total = np.zeros((free.size, free.size)) if dense else sp.csc_array((free.size,) * 2)
    for A, hi in zip(rows, h, strict=True):
        if A.shape[0] == 0:
            continue
        Af = A[:, free]
        part = Af.T @ (hi[:, None] * Af) if not sp.issparse(Af) else Af.T @ sp.diags_array(hi) @ Af
        if dense:
            total += part.toarray() if sp.issparse(part) else part
        else:
            total = total + (sp.csc_array(part) if not sp.issparse(part) else part)
    return total


def _gram_apply(
    rows: list[np.ndarray | sp.csr_array], h: list[np.ndarray], u: np.ndarray
) -> np.ndarray:
    out = np.zeros(u.size)
    for A, hi in zip(rows, h, strict=True):
        if A.shape[0]:
            out += A.T @ (hi * (A @ u))
    return out


def _stack(blocks: list[np.ndarray | sp.csr_array], n: int) -> np.ndarray | sp.csr_array:
    blocks = [b for b in blocks if b.shape[0]]
    if not blocks:
        return np.zeros((0, n))
    if any(sp.issparse(b) for b in blocks) and n > _DENSE_LIMIT:
        return sp.csr_array(sp.vstack([sp.csr_array(b) for b in blocks]))
    return np.vstack([b.toarray() if sp.issparse(b) else b for b in blocks])


def _stack_t(blocks: list[np.ndarray | sp.csr_array], mu: np.ndarray, n: int) -> np.ndarray:
    out, start = np.zeros(n), 0
    for b in blocks:
        k = b.shape[0]
        if k:
            out += b.T @ mu[start : start + k]
            start += k
    return out


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
