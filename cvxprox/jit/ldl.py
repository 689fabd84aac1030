"""The quasi-definite KKT matrix of ADMM, its LDL' factorization and solves, compiled.

``kkt_upper`` assembles the upper triangle of

    K = [[P + sigma I, A'], [A, -diag(1/rho)]]

directly in CSC form (every diagonal entry stored).
``qdldl`` factors a quasi-definite matrix as ``K[p][:, p] = (I + L) D (I + L)'`` with
``L`` strictly lower triangular (CSC), ``D`` diagonal and ``p`` a fill-reducing
permutation. :class:`LDLFactor` keeps that factorization as plain arrays so that the
compiled solvers can run the two triangular solves inside their loops; ``ldl_solve``
is the solve itself.
"""

from __future__ import annotations

import numpy as np
import qdldl
import scipy.sparse as sp
from numba import njit


@njit(cache=True)
def kkt_upper(n: int, P: tuple, At: tuple, sigma: float, rho: np.ndarray) -> tuple:
    """The upper triangle of K as CSC arrays (indptr, indices, data, diag_rows_pos).

    ``P`` = (indptr, indices, data) of the n x n matrix P in CSC form (indptr empty
    when there is no P; only its upper triangle is read), ``At`` the n x m matrix A' in
    CSC form with sorted indices, ``rho`` (m,). ``diag_rows_pos[i]`` is the position in
    ``data`` of the entry K[n + i, n + i] = -1 / rho[i]. Indices come out sorted.
    """
    Pp, Pi, Px = P
    Atp, Ati, Atx = At
    m = rho.shape[0]
    has_p = Pp.shape[0] == n + 1
    nnz = n + m + Atp[m]
    if has_p:
        for j in range(n):
            for k in range(Pp[j], Pp[j + 1]):
                if Pi[k] < j:
                    nnz += 1
    indptr = np.empty(n + m + 1, dtype=np.int64)
    indices = np.empty(nnz, dtype=np.int64)
    data = np.empty(nnz)
    diag_pos = np.empty(m, dtype=np.int64)
    pos = 0
    for j in range(n):
        indptr[j] = pos
        diag = sigma
        if has_p:
            for k in range(Pp[j], Pp[j + 1]):
                i = Pi[k]
                if i < j:
                    indices[pos] = i
                    data[pos] = Px[k]
                    pos += 1
                elif i == j:
                    diag += Px[k]
        if has_p:
            _sort_segment(indices, data, indptr[j], pos)
        indices[pos] = j
        data[pos] = diag
        pos += 1
    for i in range(m):
        indptr[n + i] = pos
        for k in range(Atp[i], Atp[i + 1]):
            indices[pos] = Ati[k]
            data[pos] = Atx[k]
            pos += 1
        indices[pos] = n + i
        data[pos] = -1.0 / rho[i]
        diag_pos[i] = pos
        pos += 1
    indptr[n + m] = pos
    return indptr, indices, data, diag_pos


@njit(cache=True)
def _sort_segment(indices: np.ndarray, data: np.ndarray, start: int, stop: int) -> None:
    """Sort indices[start:stop] (and data alongside) by index."""
    order = np.argsort(indices[start:stop])
    indices[start:stop] = indices[start:stop][order]
    data[start:stop] = data[start:stop][order]


@njit(cache=True)
def ldl_solve(factor: tuple, rhs: np.ndarray, out: np.ndarray) -> None:
    """out = K^{-1} rhs for ``factor = (Lp, Li, Lx, d_inv, perm, work)``.

    With ``K[p][:, p] = (I + L) D (I + L)'``: ``u = rhs[p]``, solve ``(I + L) u' = u``,
    scale by ``D^{-1}``, solve ``(I + L)' u'' = u'``, then ``out[p] = u''``. ``rhs`` and
    ``out`` have length ``dim`` and may be the same array; ``work`` is scratch of that length.
    """
    Lp, Li, Lx, d_inv, perm, work = factor
    dim = perm.shape[0]
    for i in range(dim):
        work[i] = rhs[perm[i]]
    for j in range(dim):
        wj = work[j]
        if wj != 0.0:
            for k in range(Lp[j], Lp[j + 1]):
                work[Li[k]] -= Lx[k] * wj
    for i in range(dim):
        work[i] *= d_inv[i]
    for j in range(dim - 1, -1, -1):
        acc = work[j]
        for k in range(Lp[j], Lp[j + 1]):
            acc -= Lx[k] * work[Li[k]]
        work[j] = acc
    for i in range(dim):
        out[perm[i]] = work[i]


class LDLFactor:
    """LDL' factorization of a quasi-definite CSC matrix ``K`` (by qdldl), as arrays.

    ``K`` is the whole symmetric matrix, or only its upper triangle when ``upper``.
    ``arrays`` is the tuple ``ldl_solve`` takes; it is rebuilt by :meth:`refactor` after
    the numerical values of ``K`` change (same sparsity pattern).
    """

    def __init__(self, K: sp.csc_array, upper: bool = False) -> None:
        self._upper = upper
        self._solver = qdldl.Solver(K, upper=upper)
        self._work = np.empty(K.shape[0])
        self.arrays = self._extract()

    def refactor(self, K: sp.csc_array) -> None:
        """Factor new values of ``K`` with the same sparsity pattern."""
        self._solver.update(K, upper=self._upper)
        self.arrays = self._extract()

    @property
    def nnz(self) -> int:
        """Nonzeros of the strictly lower factor L."""
        return int(self.arrays[0][-1])

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """K^{-1} rhs as a new array."""
        out = np.empty_like(self._work)
        ldl_solve(self.arrays, np.ascontiguousarray(rhs, dtype=np.float64), out)
        return out

    def _extract(self) -> tuple:
        L, d, perm = self._solver.factors()
        L = sp.csc_array(L)
        return (
            L.indptr.astype(np.int64),
            L.indices.astype(np.int64),
            L.data.astype(np.float64),
            1.0 / d.astype(np.float64),
            perm.astype(np.int64),
            self._work,
        )
