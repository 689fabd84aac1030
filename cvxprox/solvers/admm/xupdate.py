"""Solvers for the x-update of the splitting methods on Programs.

ADMM and half-quadratic splitting (``cvxprox.solvers.admm.split``) update x by solving
the normal equations

    H x = r,      H = sum_k s_k A_k' diag(w_k) A_k + sigma I        (n x n, symmetric PSD),

with one part k per term of the program: a term whose function is SumSquares (weights v)
is absorbed with w_k = 2 v and s_k = 1; a split term has w_k = 1 and the penalty s_k = rho_k.
The weights are fixed for a solve; the scales change when the penalties do (``rescale``).
sigma is zero unless H could be singular; then it is a small multiple of ||H||.

``make_xupdate`` picks one solver per solve, in this order:

1. ``GramXUpdate``: every A_k' diag(w_k) A_k is diagonal, FFT-diagonal or DCT-diagonal
   (``LinOp.gram``) and their sum is too (``Gram.__add__``): H^{-1} r by one or two fast
   transforms, exactly.
2. When the parts' matrices are cheap to assemble (a dense ``MatrixOp``, or an estimated
   total of at most ``ASSEMBLY_NNZ_LIMIT`` nonzeros):

   - ``WoodburyXUpdate``: one part B, a MatrixOp (m_j x n, m_j < n, and m_j <= n / 2 when
     B is sparse), and a positive diagonal rest
     D = sum_{k != j} s_k A_k' diag(w_k) A_k + sigma I. With W = s_j diag(w_j) (its positive
     rows), the Woodbury identity

         H^{-1} = D^{-1} - D^{-1} B' (W^{-1} + B D^{-1} B')^{-1} B D^{-1}

     needs the Cholesky factor of an m_j x m_j matrix only (a lasso with m_j << n).
   - ``DenseCholeskyXUpdate``: H assembled dense and factored (n <= 5000, H not sparse).
   - ``SparseLDLXUpdate``: H assembled sparse and factored by QDLDL (AMD ordering), when
     H has at most ``ASSEMBLY_NNZ_LIMIT`` nonzeros and a bound on the fill of its factor
     (its envelope in the reverse Cuthill-McKee order) at most ``_FILL_LIMIT``.

3. ``CGXUpdate``: preconditioned conjugate gradients on the matrix-free product
   H p = sum_k s_k A_k'(w_k * A_k p) + sigma p, or on H assembled as one sparse matrix
   when it is sparse but its factor would fill in, with the Jacobi preconditioner diag(H)
   when every operator provides ``gram_diagonal``, warm started at the previous x and
   stopped at a tolerance the caller tightens as the outer method converges (``set_tolerance``).

Every solver takes and returns vectors of the backend it was made for (``cvxprox.backend``):
the Gram solves run on the backend's FFT (the DCT by FFTs of the even extension,
``dctn_ortho``), the dense Cholesky and Woodbury factors are computed on the host and solved
with on the device (``Backend.cho_solver``), conjugate gradients runs on the device with the
operators' device products. The sparse LDL' factor stays on the host: on a torch or CuPy
backend each solve copies r to the host and the solution back (two transfers of n numbers).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import qdldl
import scipy.linalg as la
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee

from cvxprox.backend import Array, Backend, array_namespace, get_backend
from cvxprox.operators.linops import (
    Diagonal,
    DiagonalGram,
    FourierGram,
    Gather,
    Gram,
    Identity,
    LinOp,
    MatrixOp,
)
from cvxprox.solvers.common.algorithm import FACTORIZATION_NNZ_LIMIT

# Dense Cholesky of H is used up to this many variables, and when H has at least this
# fraction of nonzeros; the Woodbury form needs an m_j x m_j dense factor with m_j at
# most _DENSE_MAX_N as well.
_DENSE_MAX_N = 5000
_DENSE_FRACTION = 0.05
# Above this many (estimated) nonzeros the operators are not assembled: conjugate gradients.
ASSEMBLY_NNZ_LIMIT = FACTORIZATION_NNZ_LIMIT
# The sparse factorization is used when the bound on the fill of its factor is at most
# this (a larger factor is slow to compute and to solve with; conjugate gradients then).
_FILL_LIMIT = 1_000_000
# Columns probed to estimate the nonzeros of an operator or of H without assembling them.
_NNZ_PROBES = 8
# Power iterations of ``norm_estimate``.
_POWER_ITERS = 10
# A diagonal entry of H (or eigenvalue of a Gram) below this fraction of the largest
# counts as zero: the system is singular.
_SINGULAR_RTOL = 1e-12
# sigma, relative to an estimate of ||H||, when H is singular.
SIGMA_RTOL = 1e-6
# Conjugate gradients: iteration cap per solve, the tolerance before the caller sets one
# (relative to ||r||_inf) and the floor (relative to ||r||_inf, near machine precision).
_CG_MAX_ITERS = 500
_CG_START_RTOL = 1e-2
_CG_FLOOR_RTOL = 1e-14


class SingularSystemError(ValueError):
    """H is singular (a factorization met a zero pivot)."""


Weight = float | np.ndarray


class NormalOperator:
    """H = sum_k s_k A_k' diag(w_k) A_k + sigma I.

    Parameters
    ----------
    n : int
        Number of variables.
    ops : list of LinOp
        The A_k, each (m_k, n).
    weights : list of float or ndarray (m_k,)
        The w_k, nonnegative.
    scales : ndarray (K,)
        The s_k, positive.
    sigma : float
    """

    def __init__(
        self,
        n: int,
        ops: list[LinOp],
        weights: list[Weight],
        scales: np.ndarray,
        sigma: float = 0.0,
    ) -> None:
        self.n = n
        self.ops = ops
        self.weights = [_compact_weight(w) for w in weights]
        self.scales = np.asarray(scales, dtype=np.float64).copy()
        self.sigma = sigma
        self._grams: list[Gram | None] | None = None

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """H x, shape (n,)."""
        out = self.sigma * x
        for op, w, s in zip(self.ops, self.weights, self.scales, strict=True):
            out += s * op.rmatvec(w * op.matvec(x))
        return out

    def weighted_grams(self) -> list[Gram | None]:
        """The Grams of A_k' diag(w_k) A_k (without s_k), None where unstructured."""
        if self._grams is None:
            self._grams = [
                _weighted_gram(op, w) for op, w in zip(self.ops, self.weights, strict=True)
            ]
        return self._grams

    def jacobi_diagonal(self) -> np.ndarray | None:
        """diag(H) (approximate for array weights on general operators), or None."""
        out = np.full(self.n, self.sigma)
        for op, w, s, gram in zip(
            self.ops, self.weights, self.scales, self.weighted_grams(), strict=True
        ):
            if gram is not None:
                out += s * gram.diagonal()
                continue
            diag = op.gram_diagonal()
            if diag is None:
                return None
            out += s * float(np.mean(w)) * diag
        return out

    def norm_estimate(self) -> float:
        """An estimate of ||H||_2 from the parts' norms (1 when it is 0)."""
        total = self.sigma
        for op, w, s in zip(self.ops, self.weights, self.scales, strict=True):
            total += s * float(np.max(w, initial=0.0)) * norm_estimate(op) ** 2
        return total if total > 0 else 1.0


class XUpdate(ABC):
    """A solver of H x = r for one NormalOperator.

    Attributes
    ----------
    description : str
        One line: which solver and why.
    backend : Backend
        Where ``solve`` takes its right-hand side and returns the solution.
    iterations : int
        Inner iterations so far (conjugate gradients; 0 for the direct solvers).
    atol : float
        The tolerance ||H x - r||_inf an iterative solver stops at (``set_tolerance``).
    refactor_cost : float
        What the last refactorization (``rescale``) cost, in x-update solves, estimated
        from the sizes (0 before the first): ``_refactor_cost``.
    exact : bool
        Whether ``solve`` is exact up to round-off (a direct solver; False for conjugate
        gradients, whose solutions move with their tolerance).
    """

    exact = True

    def __init__(
        self, normal: NormalOperator, description: str, backend: Backend | None = None
    ) -> None:
        self.normal = normal
        self.description = description
        self.backend = backend or get_backend("numpy")
        self.iterations = 0
        self.refactor_cost = 0.0
        self.atol = np.inf

    @abstractmethod
    def solve(self, rhs: Array, x0: Array) -> Array:
        """H^{-1} rhs, shape (n,), on the backend; x0 is a starting point for iterative
        solvers."""

    def rescale(self, scales: np.ndarray) -> None:
        """Set new scales s_k (penalties) and refactor."""
        self.normal.scales[:] = scales
        self._factor()
        self.refactor_cost = self._refactor_cost()

    def set_tolerance(self, atol: float) -> None:
        """Ask for ||H x - r||_inf <= atol (iterative solvers; direct ones are exact)."""
        self.atol = atol

    @abstractmethod
    def _factor(self) -> None:
        """(Re)build the factorization for the current scales."""

    def _refactor_cost(self) -> float:
        """A refactorization's flops over a solve's: 1 here (a Gram's eigenvalues, CG's
        diagonal or sparse sum cost about one solve)."""
        return 1.0


class GramXUpdate(XUpdate):
    """H^{-1} r with H = sum_k s_k G_k + sigma I a diagonal, FFT- or DCT-diagonal Gram."""

    def __init__(
        self, normal: NormalOperator, grams: list[Gram], backend: Backend | None = None
    ) -> None:
        super().__init__(normal, "", backend)
        self._grams = grams
        self._factor()
        self.description = f"x-update: {_gram_kind(self._total)} Gram (exact)"

    def solve(self, rhs: Array, x0: Array) -> Array:
        return self._solve(rhs)

    def _factor(self) -> None:
        normal = self.normal
        total = _sum_grams(
            [g.scaled(float(s)) for g, s in zip(self._grams, normal.scales, strict=True)],
            normal.n,
            normal.sigma,
        )
        if total is None:
            raise SingularSystemError("the scaled Grams no longer add")
        _check_gram(total)
        self._total = total
        self._solve = gram_solver(total, self.backend)


class DenseCholeskyXUpdate(XUpdate):
    """H assembled as a dense n x n matrix and factored by Cholesky (LAPACK)."""

    def __init__(
        self,
        normal: NormalOperator,
        parts: list[np.ndarray | sp.sparray],
        backend: Backend | None = None,
    ) -> None:
        super().__init__(normal, f"x-update: dense Cholesky of H (n={normal.n})", backend)
        self._parts = parts
        self._factor()

    def solve(self, rhs: Array, x0: Array) -> Array:
        return self._solve(rhs)

    def _factor(self) -> None:
        normal = self.normal
        H = np.zeros((normal.n, normal.n))
        H[np.diag_indices(normal.n)] = normal.sigma
        for part, s in zip(self._parts, normal.scales, strict=True):
            _add_into(H, part, float(s))
        self._solve = self.backend.cho_solver(_cholesky(H)[0])

    def _refactor_cost(self) -> float:
        """n^3 / 3 flops of the factorization over the 2 n^2 of two triangular solves."""
        return self.normal.n / 6.0


class WoodburyXUpdate(XUpdate):
    """H = D + B' W B solved through an m_j x m_j Cholesky factor (see the module docstring).

    Parameters
    ----------
    normal : NormalOperator
    index : int
        The part j whose matrix is B.
    B : ndarray or sparse, shape (m_j, n)
    diagonals : list of ndarray (n,) or None
        diag(A_k' diag(w_k) A_k) for every part but j (None at j).
    """

    def __init__(
        self,
        normal: NormalOperator,
        index: int,
        B: np.ndarray | sp.sparray,
        diagonals: list[np.ndarray | None],
        backend: Backend | None = None,
    ) -> None:
        w = np.broadcast_to(normal.weights[index], (B.shape[0],))
        self._rows = np.flatnonzero(w > 0)
        self._w = w[self._rows]
        self._B = B[self._rows] if len(self._rows) < B.shape[0] else B
        if sp.issparse(self._B):
            self._B = sp.csr_array(self._B)
        self._index = index
        self._diagonals = diagonals
        # B B' is reused at every refactorization when D is a multiple of I.
        self._constant_d = all(d is None or np.ptp(d) == 0 for d in diagonals)
        self._BBt = _dense_product(self._B, None) if self._constant_d else None
        m_j = len(self._rows)
        super().__init__(
            normal,
            f"x-update: Woodbury identity, {m_j}x{m_j} dense Cholesky instead of "
            f"{normal.n}x{normal.n} (n={normal.n})",
            backend,
        )
        device = self.backend
        if sp.issparse(self._B):
            self._B_dev, self._Bt_dev = device.csr(self._B), device.csr(self._B.T)
        else:
            self._B_dev, self._Bt_dev = device.asarray(self._B), device.asarray(self._B.T)
        self._factor()

    def solve(self, rhs: Array, x0: Array) -> Array:
        t = rhs / self._d_dev
        correction = self._Bt_dev @ self._cho_solve(self._B_dev @ t)
        return t - correction / self._d_dev

    def _factor(self) -> None:
        normal = self.normal
        d = np.full(normal.n, normal.sigma)
        for k, diag in enumerate(self._diagonals):
            if diag is not None:
                d += normal.scales[k] * diag
        if np.min(d) <= _SINGULAR_RTOL * max(np.max(d), 0.0):
            raise SingularSystemError("the diagonal part of H is singular")
        if self._constant_d:
            K = self._BBt / d[0]
        else:
            K = _dense_product(self._B, 1.0 / d)
        K[np.diag_indices_from(K)] += 1.0 / (normal.scales[self._index] * self._w)
        self._d_dev = self.backend.asarray(d)
        self._cho_solve = self.backend.cho_solver(_cholesky(K)[0])

    def _refactor_cost(self) -> float:
        """The m_j^3 / 3 flops of the Cholesky factor and m_j^2 (m_j^2 nnz(B) / m_j when
        D is not a multiple of I) of K, over a solve's 2 nnz(B) + 2 m_j^2."""
        m = len(self._rows)
        nnz = self._B.nnz if sp.issparse(self._B) else self._B.size
        product = m * m if self._constant_d else m * nnz
        return (m**3 / 3.0 + product) / max(2.0 * nnz + 2.0 * m * m, 1.0)


class SparseLDLXUpdate(XUpdate):
    """H assembled as a sparse matrix and factored by QDLDL (LDL' with AMD ordering)."""

    def __init__(
        self, normal: NormalOperator, parts: list[sp.sparray], backend: Backend | None = None
    ) -> None:
        super().__init__(normal, "", backend)
        self._parts = [sp.csc_array(p) for p in parts]
        self._factor()
        self.description = f"x-update: sparse LDL' of H (n={normal.n}, nnz(triu H)={self._nnz})"
        if self.backend.name != "numpy":
            self.description += " (solved on the host)"

    def solve(self, rhs: Array, x0: Array) -> Array:
        backend = self.backend
        if backend.name == "numpy":
            return self._solver.solve(rhs)
        return backend.asarray(self._solver.solve(backend.to_host(rhs)))

    def _factor(self) -> None:
        normal = self.normal
        H = normal.sigma * sp.eye_array(normal.n, format="csc")
        for part, s in zip(self._parts, normal.scales, strict=True):
            H = H + float(s) * part
        upper = sp.triu(H, format="csc")
        self._nnz = upper.nnz
        try:
            self._solver = qdldl.Solver(upper, upper=True)
        except (RuntimeError, ValueError) as err:
            raise SingularSystemError(str(err)) from err
        L, pivots, _ = self._solver.factors()
        if not np.min(pivots, initial=np.inf) > _SINGULAR_RTOL * np.max(H.diagonal()):
            raise SingularSystemError("H is singular to working precision")
        self._column_counts = np.diff(L.indptr).astype(np.float64)

    def _refactor_cost(self) -> float:
        """sum_j c_j^2 flops of the numeric factorization (c_j the nonzeros of column j
        of L) over the 4 nnz(L) + n of a solve."""
        counts = self._column_counts
        return float(counts @ counts) / (4.0 * float(np.sum(counts)) + self.normal.n)


class CGXUpdate(XUpdate):
    """Preconditioned conjugate gradients on H, warm started at x0.

    H is applied matrix-free, H p = sum_k s_k A_k'(w_k * A_k p) + sigma p, or, when the
    assembled parts A_k' diag(w_k) A_k are given (H is sparse but its factor would fill
    in), as one sparse matrix sigma I + sum_k s_k A_k' diag(w_k) A_k summed at each
    (re)factorization: one product instead of two per part. The preconditioner is diag(H)
    (Jacobi; exact for the assembled H). A solve stops when
    ||H x - r||_inf <= max(min(1e-2 ||r||_inf, atol), 1e-14 ||r||_inf) with ``atol`` from
    ``set_tolerance`` (inexact ADMM: the caller tightens it as its own residuals
    decrease), or after ``_CG_MAX_ITERS`` iterations.

    Parameters
    ----------
    normal : NormalOperator
    reason : str
        Why conjugate gradients (for the description).
    backend : Backend, optional
    parts : list of sparse arrays (n, n), optional
        The assembled A_k' diag(w_k) A_k, in the order of ``normal.ops``.
    """

    exact = False

    def __init__(
        self,
        normal: NormalOperator,
        reason: str,
        backend: Backend | None = None,
        parts: list[sp.sparray] | None = None,
    ) -> None:
        super().__init__(normal, "", backend)
        device = self.backend
        self._parts = None if parts is None else [sp.csr_array(p) for p in parts]
        if parts is None:
            self._ops = [op.on(device) for op in normal.ops]
            self._weights = [w if np.ndim(w) == 0 else device.asarray(w) for w in normal.weights]
        self._H: object | None = None
        self._factor()
        preconditioner = "Jacobi" if self._inv_diag is not None else "no"
        form = ", H assembled sparse" if parts is not None else ""
        self.description = (
            f"x-update: conjugate gradients with {preconditioner} preconditioner{form} ({reason})"
        )

    def _matvec(self, x: Array) -> Array:
        """H x on the backend (the assembled H, else ``NormalOperator.matvec`` with the
        device operators)."""
        if self._H is not None:
            return self._H @ x
        normal = self.normal
        out = normal.sigma * x
        for op, w, s in zip(self._ops, self._weights, normal.scales, strict=True):
            out += float(s) * op.rmatvec(w * op.matvec(x))
        return out

    def solve(self, rhs: Array, x0: Array) -> Array:
        H, inv_diag, scalar = self._matvec, self._inv_diag, self.backend.scalar
        x = 1.0 * x0
        r = rhs - H(x)
        rhs_norm = _inf_norm(rhs)
        tol = max(min(_CG_START_RTOL * rhs_norm, self.atol), _CG_FLOOR_RTOL * rhs_norm)
        if _inf_norm(r) <= tol:
            return x
        z = r if inv_diag is None else inv_diag * r
        p = 1.0 * z
        rz = scalar(r @ z)
        k = 0
        while k < _CG_MAX_ITERS:
            k += 1
            Hp = H(p)
            pHp = scalar(p @ Hp)
            if not pHp > 0:
                break
            step = rz / pHp
            x += step * p
            r -= step * Hp
            if _inf_norm(r) <= tol:
                break
            z = r if inv_diag is None else inv_diag * r
            rz_next = scalar(r @ z)
            p *= rz_next / rz
            p += z
            rz = rz_next
        self.iterations += k
        return x

    def _factor(self) -> None:
        normal = self.normal
        if self._parts is not None:
            H = normal.sigma * sp.eye_array(normal.n, format="csr")
            for part, s in zip(self._parts, normal.scales, strict=True):
                H = H + float(s) * part
            self._H = self.backend.csr(H)
            diag = H.diagonal()
        else:
            diag = normal.jacobi_diagonal()
        if diag is None:
            self._inv_diag = None
            return
        floor = _SINGULAR_RTOL * max(float(np.max(diag, initial=0.0)), 1e-300)
        self._inv_diag = self.backend.asarray(1.0 / np.maximum(diag, floor))


def make_xupdate(
    normal: NormalOperator, nnz_limit: float | None = None, backend: Backend | None = None
) -> XUpdate:
    """The x-update solver for H on ``backend`` (NumPy by default; see the module docstring
    for the order of choice).

    ``nnz_limit`` bounds the nonzeros of the assembled operators and of H (default
    ``ASSEMBLY_NNZ_LIMIT``); above it conjugate gradients are used.

    When a factorization finds H singular, ``normal.sigma`` is set to ``SIGMA_RTOL`` times
    an estimate of ||H|| and the choice is made again; callers must then add the proximal
    term sigma x_k to the right-hand side.
    """
    if nnz_limit is None:
        nnz_limit = ASSEMBLY_NNZ_LIMIT
    backend = backend or get_backend("numpy")
    try:
        solver = _select(normal, nnz_limit, backend)
    except SingularSystemError:
        if normal.sigma > 0:
            raise
        normal.sigma = SIGMA_RTOL * normal.norm_estimate()
        solver = _select(normal, nnz_limit, backend)
    if normal.sigma > 0:
        solver.description += f"; proximal term sigma={normal.sigma:.1e} (H singular)"
    return solver


def _select(normal: NormalOperator, nnz_limit: float, backend: Backend) -> XUpdate:
    grams = normal.weighted_grams()
    if all(g is not None for g in grams) and _sum_grams(grams, normal.n, 0.0) is not None:
        return GramXUpdate(normal, grams, backend)
    n = normal.n
    dense = any(_dense_matrix_op(op) for op in normal.ops)
    nnz_ops = sum(_estimated_nnz(op) for op in normal.ops if not _dense_matrix_op(op))
    if nnz_ops > nnz_limit:
        return CGXUpdate(normal, f"the operators have about {nnz_ops:.1e} nonzeros", backend)
    woodbury = _woodbury(normal, grams, backend)
    if woodbury is not None:
        return woodbury
    nnz = n * n if dense else _probed_nnz(normal.matvec, n)
    if n <= _DENSE_MAX_N and (dense or nnz >= _DENSE_FRACTION * n * n):
        return DenseCholeskyXUpdate(normal, _normal_parts(normal), backend)
    if dense or nnz > nnz_limit:
        return CGXUpdate(normal, f"H has about {nnz:.1e} nonzeros, n={n}", backend)
    parts = _normal_parts(normal)
    fill = _envelope_fill(parts, n)
    if fill > min(nnz_limit, _FILL_LIMIT):
        return CGXUpdate(
            normal, f"a sparse factor of H could have {fill:.1e} nonzeros", backend, parts
        )
    return SparseLDLXUpdate(normal, parts, backend)


def _woodbury(
    normal: NormalOperator, grams: list[Gram | None], backend: Backend
) -> WoodburyXUpdate | None:
    """The Woodbury solver when exactly one part is not diagonal, is a MatrixOp with fewer
    rows than columns (at most half as many when sparse), and the diagonal rest is
    positive; else None."""
    others = [k for k, g in enumerate(grams) if not isinstance(g, DiagonalGram)]
    if len(others) != 1:
        return None
    j = others[0]
    op = normal.ops[j]
    m_j = op.shape[0]
    if not isinstance(op, MatrixOp) or not m_j < min(normal.n, _DENSE_MAX_N + 1):
        return None
    if not _dense_matrix_op(op) and 2 * m_j > normal.n:
        return None
    diagonals = [None if k == j else g.diagonal() for k, g in enumerate(grams)]
    d = np.full(normal.n, normal.sigma)
    for k, diag in enumerate(diagonals):
        if diag is not None:
            d += normal.scales[k] * diag
    if not np.min(d) > _SINGULAR_RTOL * np.max(d):
        return None
    return WoodburyXUpdate(normal, j, _matrix(normal.ops[j]), diagonals, backend)


def _normal_parts(normal: NormalOperator) -> list[np.ndarray | sp.sparray]:
    """The assembled A_k' diag(w_k) A_k (dense for a dense MatrixOp, else sparse)."""
    return [
        _weighted_normal(_matrix(op), w) for op, w in zip(normal.ops, normal.weights, strict=True)
    ]


def _dense_matrix_op(op: LinOp) -> bool:
    return isinstance(op, MatrixOp) and isinstance(op.matrix, np.ndarray)


def _matrix(op: LinOp) -> np.ndarray | sp.sparray:
    if _dense_matrix_op(op):
        return op.matrix
    return sp.csr_array(op.to_sparse())


def _estimated_nnz(op: LinOp) -> float:
    """Nonzeros of the operator's matrix (estimated from a few columns but for a MatrixOp)."""
    if isinstance(op, MatrixOp):
        matrix = op.matrix
        return float(matrix.size if isinstance(matrix, np.ndarray) else matrix.nnz)
    return _probed_nnz(op.matvec, op.shape[1])


def _probed_nnz(apply: Callable[[np.ndarray], np.ndarray], n: int) -> float:
    """n times the average number of nonzeros of apply(e_j) over a few unit vectors e_j
    (entries below 1e-12 times the column's largest count as zero: FFT round-off)."""
    columns = np.unique(np.linspace(0, n - 1, min(n, _NNZ_PROBES)).astype(np.int64))
    count = 0
    e = np.zeros(n)
    for j in columns:
        e[j] = 1.0
        col = np.abs(apply(e))
        e[j] = 0.0
        count += int(np.count_nonzero(col > 1e-12 * np.max(col, initial=0.0)))
    return count / len(columns) * n


def norm_estimate(op: LinOp) -> float:
    """||A||_2, exact from the Gram when there is one, else from ``_POWER_ITERS`` power
    iterations on A'A (a lower estimate, good enough to scale penalties)."""
    gram = op.gram()
    if gram is not None:
        return math.sqrt(gram.max_eigenvalue())
    v = np.random.default_rng(0).standard_normal(op.shape[1])
    v /= np.linalg.norm(v)
    value = 0.0
    for _ in range(_POWER_ITERS):
        w = op.rmatvec(op.matvec(v))
        value = float(np.linalg.norm(w))
        if value == 0:
            return 0.0
        v = w / value
    return math.sqrt(value)


def _weighted_normal(A: np.ndarray | sp.sparray, w: Weight) -> np.ndarray | sp.sparray:
    """A' diag(w) A, dense when A is."""
    if isinstance(A, np.ndarray):
        return (A.T * w) @ A if np.ndim(w) else w * (A.T @ A)
    Wa = A if np.ndim(w) == 0 and w == 1.0 else sp.diags_array(np.broadcast_to(w, A.shape[0])) @ A
    return sp.csc_array(A.T @ Wa)


def _envelope_fill(parts: list[sp.sparray], n: int) -> int:
    """The envelope size of H in the reverse Cuthill-McKee order: sum over rows i of
    i - (first nonzero column of row i), an upper bound on the fill of its factor in that
    order (AMD's, which QDLDL uses, is usually smaller)."""
    pattern = sp.eye_array(n, format="csr")
    for part in parts:
        pattern = pattern + abs(sp.csr_array(part))
    order = reverse_cuthill_mckee(sp.csr_matrix(pattern), symmetric_mode=True)
    lower = sp.tril(sp.csr_array(pattern[order][:, order]), format="csr")
    lower.sort_indices()
    first = lower.indices[lower.indptr[:-1]]
    return int(np.sum(np.arange(n) - first))


def _dense_product(B: np.ndarray | sp.sparray, dinv: np.ndarray | None) -> np.ndarray:
    """B diag(dinv) B' as a dense array (dinv = None: B B')."""
    if isinstance(B, np.ndarray):
        return (B if dinv is None else B * dinv) @ B.T
    BD = B if dinv is None else B @ sp.diags_array(dinv)
    product = BD @ B.T
    return product.toarray()


def _add_into(H: np.ndarray, part: np.ndarray | sp.sparray, s: float) -> None:
    """H += s part, in place."""
    if isinstance(part, np.ndarray):
        H += s * part
        return
    coo = sp.coo_array(part)
    coo.sum_duplicates()
    H[coo.row, coo.col] += s * coo.data


def _cholesky(M: np.ndarray) -> tuple[np.ndarray, bool]:
    """The Cholesky factor of a symmetric PSD matrix; SingularSystemError when a pivot is
    zero or below ``_SINGULAR_RTOL`` times the largest diagonal entry."""
    scale = float(np.max(np.diag(M), initial=0.0))
    try:
        cho = la.cho_factor(M, lower=True, check_finite=False)
    except la.LinAlgError as err:
        raise SingularSystemError(str(err)) from err
    if not np.min(np.diag(cho[0]) ** 2, initial=np.inf) > _SINGULAR_RTOL * scale:
        raise SingularSystemError("H is singular to working precision")
    return cho


def _compact_weight(w: Weight) -> Weight:
    """A weight array with equal entries as a float."""
    if np.ndim(w) == 0:
        return float(w)
    w = np.asarray(w, dtype=np.float64)
    if w.size and np.all(w == w[0]):
        return float(w[0])
    return w


def _weighted_gram(op: LinOp, w: Weight) -> Gram | None:
    """The Gram of A' diag(w) A, or None when it has no fast structure."""
    if np.ndim(w) == 0:
        gram = op.gram()
        if gram is None or w == 1.0:
            return gram
        return gram.scaled(float(w))
    if isinstance(op, Identity):
        return DiagonalGram(w)
    if isinstance(op, Diagonal):
        return DiagonalGram(w * op.d**2)
    if isinstance(op, Gather):
        return DiagonalGram(np.bincount(op.index, weights=w, minlength=op.shape[1]))
    return None


def _sum_grams(grams: list[Gram], n: int, sigma: float) -> Gram | None:
    """sum_k grams_k + sigma I, or None when they do not add."""
    total: Gram | None = DiagonalGram(np.full(n, sigma)) if sigma > 0 or not grams else None
    for gram in grams:
        total = gram if total is None else total + gram
        if total is None:
            return None
    return total


def _check_gram(gram: Gram) -> None:
    """SingularSystemError when the Gram has a (relatively) zero eigenvalue."""
    eig = gram.eigenvalues()
    if not np.min(eig, initial=np.inf) > _SINGULAR_RTOL * np.max(eig, initial=0.0):
        raise SingularSystemError("the Gram of H is singular")


def _gram_kind(gram: Gram) -> str:
    return {
        "DiagonalGram": "diagonal",
        "FourierGram": "FFT-diagonal",
        "CosineGram": "DCT-diagonal",
    }.get(type(gram).__name__, type(gram).__name__)


def _inf_norm(v: Array) -> float:
    """max_i |v_i| (0 for an empty vector), for a vector of any backend."""
    if v.shape[0] == 0:
        return 0.0
    xp = array_namespace(v)
    return float(xp.max(xp.abs(v)))


def gram_solver(gram: Gram, backend: Backend) -> Callable[[Array], Array]:
    """rhs -> H^{-1} rhs for a nonsingular Gram H, on the backend's vectors: the Gram's own
    solve on NumPy; on a device the diagonal, or the transform (``xp.fft``'s real n-D FFT
    for a FourierGram, ``dctn_ortho`` for a CosineGram) with the inverse eigenvalues moved
    there once."""
    if backend.name == "numpy":
        return gram.solve
    if isinstance(gram, DiagonalGram):
        d = backend.asarray(gram.d)
        return lambda rhs: rhs / d
    xp, shape = backend.xp, gram.shape[::-1]
    inverse = backend.asarray(1.0 / gram._multiplier)  # noqa: SLF001
    if isinstance(gram, FourierGram):

        def fourier(rhs: Array) -> Array:
            xt = xp.reshape(rhs, shape)
            return xp.reshape(xp.fft.irfftn(inverse * xp.fft.rfftn(xt), s=shape), (-1,))

        return fourier

    def cosine(rhs: Array) -> Array:
        xt = xp.reshape(rhs, shape)
        return xp.reshape(dctn_ortho(inverse * dctn_ortho(xt), inverse=True), (-1,))

    return cosine


def dctn_ortho(x: Array, inverse: bool = False) -> Array:
    """The orthonormal n-D DCT-II of x over all axes (``scipy.fft.dctn(x, norm="ortho")``),
    or with ``inverse`` its transpose, the DCT-III (``idctn``), by real FFTs of length 2N
    along each axis.

    Along an axis of length N, with y = [x, reversed x] (length 2N) and Y = rfft(y),
    Y_k = e^{i pi k / (2N)} C_k with C_k = 2 sum_j x_j cos(pi k (2j + 1) / (2N)), so that
    C_k = cos(t_k) Re Y_k + sin(t_k) Im Y_k, t_k = pi k / (2N), and the orthonormal
    coefficients are C_k s_k, s_0 = 1/sqrt(4N), s_k = 1/sqrt(2N). The inverse rebuilds
    Y_k = e^{i t_k} C_k (k < N, Y_N = 0) and takes the first N entries of irfft(Y, 2N).
    """
    xp = array_namespace(x)
    for axis in range(x.ndim):
        x = xp.moveaxis(x, axis, -1)
        N = x.shape[-1]
        k = np.arange(N)
        angle = np.pi * k / (2 * N)
        scale = np.where(k == 0, 1.0 / math.sqrt(4 * N), 1.0 / math.sqrt(2 * N))
        like = {"dtype": x.dtype, "device": x.device}
        cos = xp.asarray(np.cos(angle), **like)
        sin = xp.asarray(np.sin(angle), **like)
        scale = xp.asarray(scale, **like)
        if inverse:
            coef = x / scale
            spectrum = coef * cos + 1j * (coef * sin)
            x = xp.fft.irfft(spectrum, n=2 * N, axis=-1)[..., :N]
        else:
            spectrum = xp.fft.rfft(xp.concat([x, xp.flip(x, axis=-1)], axis=-1), axis=-1)
            x = (cos * xp.real(spectrum[..., :N]) + sin * xp.imag(spectrum[..., :N])) * scale
        x = xp.moveaxis(x, -1, axis)
    return x
