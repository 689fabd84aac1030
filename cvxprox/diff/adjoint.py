"""The adjoint solve of implicit differentiation through the residual map.

At a solution (x, v) of R(x, v; theta) = 0 (``cvxprox.diff.residual``) with an invertible
Jacobian J, the implicit function theorem gives the derivative of the solution in the
data theta, and a loss L(x, y) with gradients g = dL/dx, g_y = dL/dy (y = v - p(v), so
dy = (I - D) dv) has

    dL/dtheta = -u' dR/dtheta,      J' u = [g; (I - D) g_y],      u = (u_x, u_v).

With J' = [[P, A'], [(I - D) A, -D]] the system reads

    P u_x + A' u_v = g,        (I - D) A u_x - D u_v = (I - D) g_y,

and the data gradients follow from R's dependence on them:

    dL/dc = -u_x,   dL/db_i = u_v,i,   dL/dA = -(y u_x' + u_v x'),   dL/dP = -u_x x',
    dL/dw_i = (dp_i/dw_i)' (A_i u_x + u_v,i)    (w_i: the weights of a prox function).

Nothing of the forward iterations enters, so memory does not depend on their number.
``ImplicitAdjoint`` solves J'u = rhs one of three ways (``method``):

- ``"reduced"``: when every block's D has hard, soft and flat parts (every prox function
  but the second-order, exponential, power and PSD cones:
  ``cvxprox.diff.jacobian``) and g_y = 0 (``ProxJacobian`` names hard rows, D = 0, and
  hard directions E, D E' = 0; soft rows with curvature H = D^{-1} - I; the flat rest,
  D = I). Then u_v = H A u_x on the soft rows and 0 on the flat ones, hard rows force
  (A u_x)_j = 0 with u_v,j their multiplier, hard directions E A u_x = 0 with u_v = E'mu,
  and eliminating u_v leaves the symmetric saddle-point system

      [ P + A_S' H A_S   C' ] [u_x]   [g]
      [ C                0  ] [mu ] = [0],     C = the hard rows and E A,

  whose hard rows that fix one coordinate (a norm or a bound on x itself) are eliminated
  first: for a lasso it is the Gram matrix of the active columns. Fast for small dense
  programs (one per batch element).
- ``"lu"``: a sparse LU factorization of J' (COLAMD ordering), for any Jacobian.
- ``"lsmr"``: the least-squares solution of J'u = rhs by LSMR (products with J' and J
  only): the gradient of the minimum-norm generalized solution when J is singular (a
  non-unique solution); ``"lu"`` falls back to it when the factorization fails or is
  inaccurate.

``"auto"`` takes ``"reduced"`` on a ``Program`` where it applies: the soft rows of
least-squares and Huber terms and the coordinate rows of norms on x are eliminated, and
TV's redundant difference rows, which make J singular, are absorbed by the regularized
saddle-point system. On a ``AssembledProgram`` (CVXPY's cone form) the rows of an LP or QP are
hard or flat, little is eliminated, and the sparse LU of J' is faster: the backward pass
of the cone form of a lasso batch took 1.8 ms by LU against 5 ms by the reduced system
(n = 20, m = 10, batch of 4, BLAS on one thread) and 29 ms against 34 ms (n = 100,
m = 50, batch of 16). Otherwise ``"auto"`` takes ``"lu"`` up to ``LU_MAX_NNZ`` nonzeros in
J', else ``"lsmr"``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from cvxprox.diff.jacobian import ProxJacobian, is_equality
from cvxprox.diff.residual import Matrix, ResidualMap
from cvxprox.ir.program import AssembledProgram, Program

ADJOINT_METHODS = ("auto", "reduced", "lu", "lsmr")
#: Above this many nonzeros in J', "auto" uses LSMR instead of a factorization.
LU_MAX_NNZ = 20_000_000
# Saddle-point systems are assembled densely when a block's matrix is dense or the free
# coordinates number at most this; otherwise as sparse matrices.
_DENSE_LIMIT = 500
# Regularization of the saddle-point system relative to its largest entry (removed again
# by iterative refinement), and the refinement's relative tolerance.
_REGULARIZATION = 1e-10
_REFINE_TOL = 1e-12


@dataclass
class DataGradient:
    """Gradients of a loss with respect to an AssembledProgram's data.

    Attributes
    ----------
    c : ndarray, shape (n,)
    b : ndarray, shape (m,)
    A_data : ndarray, shape (nnz(A),)
        On the CSC pattern of ``program.A``, in the order of ``program.A.data``.
    P_data : ndarray, shape (nnz(P),), or None
        On the CSC pattern of ``program.P``.
    """

    c: np.ndarray
    b: np.ndarray
    A_data: np.ndarray
    P_data: np.ndarray | None


class ImplicitAdjoint:
    """The adjoint of the derivative of a program's solution map at (x, y, z).

    Parameters
    ----------
    program : AssembledProgram or Program
        Every term's function must have a prox Jacobian (``cvxprox.diff.jacobian``).
    x : ndarray, shape (n,)
    y : ndarray, shape (m,)
        The IR duals y_i in df_i(z_i), stacked in term order.
    z : ndarray, shape (m,)
        The terms' arguments z_i = p_i(z_i + y_i) as the solver returns them (the prox's or
        projection's output, exactly sparse at a kink; A x - b in its place would misplace
        the kinks by the solver's tolerance, and with them the Jacobian).
    method : {"auto", "reduced", "lu", "lsmr"}
        How J'u = rhs is solved (module docstring).
    """

    def __init__(
        self,
        program: AssembledProgram | Program,
        x: np.ndarray,
        y: np.ndarray,
        z: np.ndarray,
        method: str = "auto",
    ) -> None:
        if method not in ADJOINT_METHODS:
            raise ValueError(f"adjoint method must be one of {ADJOINT_METHODS}, got {method!r}")
        self.program = program
        self.residual = ResidualMap.from_program(program)
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        self.jacobians = self.residual.jacobians(np.asarray(z, dtype=np.float64) + self.y)
        self.method = method
        self.reducible = all(jac.structured for jac in self.jacobians)
        self._prefer_reduced = self.reducible and isinstance(program, Program)
        if method == "reduced" and not self.reducible:
            raise ValueError(
                "adjoint method 'reduced' needs every term's prox Jacobian to have hard, "
                "soft and flat parts; this program has a term without them (a second-order, "
                "exponential, power or PSD cone)"
            )
        self._JT: sp.csc_array | None = None
        self._lu = None

    def solve(self, g: np.ndarray, h: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(u_x, u_v), shapes (n,) and (m,), with J' [u_x; u_v] = [g; h] (h = 0 if None)."""
        g = np.asarray(g, dtype=np.float64)
        no_h = h is None or not np.any(h)
        method = self.method
        if method == "reduced" and not no_h:
            raise ValueError("adjoint method 'reduced' takes no gradient with respect to y")
        if method == "auto":
            method = "reduced" if self._prefer_reduced and no_h else "lu"
        if method == "reduced":
            return self._reduced(g)
        rhs = np.concatenate([g, np.zeros(self.residual.m) if h is None else h])
        JT = self.jacobian_transpose()
        if method == "lu" and (self.method != "auto" or JT.nnz <= LU_MAX_NNZ):
            sol = self._lu_solve(JT, rhs)
            if sol is not None:
                return sol[: self.residual.n], sol[self.residual.n :]
        sol = spla.lsmr(JT, rhs, atol=1e-14, btol=1e-14, maxiter=20 * rhs.size + 1000)[0]
        return sol[: self.residual.n], sol[self.residual.n :]

    def jacobian_transpose(self) -> sp.csc_array:
        """J' at the solution, shape (n + m, n + m) (assembled once)."""
        if self._JT is None:
            self._JT = self.residual.jacobian_transpose(self.jacobians)
        return self._JT

    def _lu_solve(self, JT: sp.csc_array, rhs: np.ndarray) -> np.ndarray | None:
        """The LU solution, or None when J' is singular or the solve is inaccurate."""
        try:
            if self._lu is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", sp.linalg.MatrixRankWarning)
                    self._lu = spla.splu(JT, permc_spec="COLAMD")
            sol = self._lu.solve(rhs)
        except (RuntimeError, sp.linalg.MatrixRankWarning):
            return None
        accurate = np.linalg.norm(JT @ sol - rhs) <= 1e-8 * max(1.0, np.linalg.norm(rhs))
        return sol if np.all(np.isfinite(sol)) and accurate else None

    def data_gradient(self, dx: np.ndarray, dy: np.ndarray | None = None) -> DataGradient:
        """Gradients with respect to (c, b, A, P) of an AssembledProgram, for a loss with
        gradients dx (n,) and dy (m,) (None: the loss does not depend on y)."""
        program = self.program
        if not isinstance(program, AssembledProgram):
            raise TypeError("data_gradient needs an AssembledProgram (one sparse A)")
        n = program.n
        h = None
        if dy is not None:
            dy = np.asarray(dy, dtype=np.float64)
            h = dy - self.residual.prox_jacobian_matrix(self.jacobians) @ dy
        u, w = self.solve(dx, h)
        A = sp.csc_array(program.A)
        rows = A.indices
        cols = np.repeat(np.arange(n), np.diff(A.indptr))
        A_data = -(self.y[rows] * u[cols] + w[rows] * self.x[cols])
        P_data = None
        if program.P is not None:
            P = sp.csc_array(program.P)
            p_cols = np.repeat(np.arange(n), np.diff(P.indptr))
            P_data = -(u[P.indices] * self.x[p_cols])
        return DataGradient(c=-u, b=w, A_data=A_data, P_data=P_data)

    def weight_gradients(self, u_x: np.ndarray, u_v: np.ndarray) -> list[np.ndarray | None]:
        """dL/dw_i = (dp_i/dw_i)' (A_i u_x + u_v,i) per block, one entry per weight (None
        for indicators and cones)."""
        return [
            jac.weight_gradient(block.matvec(u_x) + u_i)
            for block, jac, u_i in zip(
                self.residual.blocks, self.jacobians, self.residual.split(u_v), strict=True
            )
        ]

    def _reduced(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """J'u = (g, 0) through the saddle-point system of the module docstring."""
        residual = self.residual
        n = residual.n
        matrices = [block.A for block in residual.blocks]
        rows = [_Rows.split(A, jac) for A, jac in zip(matrices, self.jacobians, strict=True)]
        # A coordinate that an equality fixes does not move with the other rows that are
        # active at it (a kink of a norm, a bound): those are only weakly active, and the
        # equality takes the whole multiplier (the derivative in its right-hand side is 1).
        equality = [is_equality(block.function) for block in residual.blocks]
        fixed = np.zeros(n, dtype=bool)
        for eq, r in zip(equality, rows, strict=True):
            if eq:
                fixed[r.coord_cols] = True
        for eq, r in zip(equality, rows, strict=True):
            if not eq and np.any(fixed[r.coord_cols]):
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
        parts = [(_take(A, r.soft, n), r.H) for A, r in zip(matrices, rows, strict=True)]
        dense = free.size <= _DENSE_LIMIT or any(isinstance(A, np.ndarray) for A in matrices)
        M = _sum_gram(parts, free, dense)
        if residual.P is not None:
            P_free = sp.csr_array(residual.P)[free][:, free]
            M = M + (P_free.toarray() if dense else sp.csc_array(P_free))
        generals = [r.general_rows(A, n) for A, r in zip(matrices, rows, strict=True)]
        C = _stack(dense, [G[:, free] for G in generals])
        u_free, mu = _saddle_point(M, C, g[free])
        u_x = np.zeros(n)
        u_x[free] = u_free
        # What P u_x + A'u_v = g leaves on the fixed coordinates goes to their rows'
        # multipliers.
        left = g - sum((B.T @ _curve(H, B @ u_x) for B, H in parts), np.zeros(n))
        if residual.P is not None:
            left -= residual.P @ u_x
        u_v = np.zeros(residual.m)
        start = 0
        for G, r, a, e in zip(
            generals, rows, residual.starts[:-1], residual.starts[1:], strict=True
        ):
            mu_i = mu[start : start + G.shape[0]]
            start += G.shape[0]
            left -= G.T @ mu_i
            u_v[a + r.general] = mu_i[: r.general.size]
            if r.directions is not None:
                u_v[a:e] += r.directions.T @ mu_i[r.general.size :]
        for A, r, a in zip(matrices, rows, residual.starts[:-1], strict=True):
            u_v[a + r.soft] += _curve(r.H, _take(A, r.soft, n) @ u_x)
            u_v[a + r.coord_rows] += r.coef * left[r.coord_cols] / squares[r.coord_cols]
        return u_x, u_v


@dataclass
class _Rows:
    """One block's rows sorted by its prox Jacobian: ``soft`` (curvature ``H``), hard rows
    fixing one coordinate (``coord_rows``: a x_cols = 0 with a = ``coef``), other hard
    rows (``general``) and hard directions (E, ``directions``: E A x = 0); the rest of
    the space is flat."""

    soft: np.ndarray
    H: np.ndarray | sp.csr_array
    coord_rows: np.ndarray
    coord_cols: np.ndarray
    coef: np.ndarray
    general: np.ndarray
    directions: sp.csr_array | None

    @classmethod
    def split(cls, A: Matrix, jac: ProxJacobian) -> _Rows:
        hard, soft, H, E = jac.hard, jac.soft, jac.H, jac.directions
        empty = np.zeros(0, dtype=np.int64)
        if A is None:
            return cls(soft, H, hard, hard, np.ones(hard.size), empty, E)
        if not sp.issparse(A) or hard.size == 0:
            return cls(soft, H, empty, empty, np.zeros(0), hard, E)
        counts = np.diff(A.indptr)[hard]
        single = hard[counts == 1]
        cols = A.indices[A.indptr[single]]
        coef = A.data[A.indptr[single]]
        nonzero = coef != 0
        return cls(soft, H, single[nonzero], cols[nonzero], coef[nonzero], hard[counts != 1], E)

    def general_rows(self, A: Matrix, n: int) -> np.ndarray | sp.csr_array:
        """The constraint rows of the general hard rows, then of the hard directions:
        A[general] and E A, shape (k, n)."""
        rows = _take(A, self.general, n)
        if self.directions is None or self.directions.shape[0] == 0:
            return rows
        EA = self.directions if A is None else self.directions @ A
        if rows.shape[0] == 0:
            return EA
        if sp.issparse(rows) and sp.issparse(EA):
            return sp.csr_array(sp.vstack([rows, EA]))
        return np.vstack([r.toarray() if sp.issparse(r) else r for r in (rows, EA)])


def _take(A: Matrix, rows: np.ndarray, n: int) -> np.ndarray | sp.csr_array:
    """Rows of a block's matrix (of the identity when A is None)."""
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
