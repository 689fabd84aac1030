"""The quasi-definite KKT matrix of ADMM, its LDL' factorization and compiled solves.

``kkt_upper`` assembles the upper triangle of

    K = [[P + sigma I, A'], [A, -diag(1/rho)]]

in CSC form (every diagonal entry stored), with SciPy.
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


def kkt_upper(
    P: sp.csc_array | None, At: sp.csc_array, sigma: float, rho: np.ndarray
) -> tuple[sp.csc_array, np.ndarray]:
    """The upper triangle of K in CSC form (sorted indices, every diagonal entry stored) and
    ``diag_pos``: ``K.data[diag_pos[i]]`` is the entry ``K[n + i, n + i] = -1 / rho[i]``.

    ``P`` is the n x n matrix P (None for none; only its upper triangle is read), ``At`` the
    n x m matrix A', ``rho`` (m,). Built once per solve, with SciPy: a compiled kernel would
    cost its compilation and save nothing.
    """
    n, m = At.shape
    At = sp.coo_array(At)
    pdiag = np.zeros(n)
    p_rows = p_cols = np.zeros(0, dtype=np.int64)
    p_data = np.zeros(0)
    if P is not None:
        Pc = sp.coo_array(P)
        upper = Pc.row < Pc.col
        p_rows, p_cols, p_data = Pc.row[upper], Pc.col[upper], Pc.data[upper]
        on_diag = Pc.row == Pc.col
        pdiag = np.bincount(Pc.row[on_diag], weights=Pc.data[on_diag], minlength=n)
    diag = np.arange(n + m)
    rows = np.concatenate([p_rows, At.row, diag])
    cols = np.concatenate([p_cols, n + At.col, diag])
    data = np.concatenate([p_data, At.data, sigma + pdiag, -1.0 / rho])
    K = sp.csc_array((data, (rows, cols)), shape=(n + m, n + m))
    K.sum_duplicates()  # sorted indices; the diagonal entry is the last of its column
    return K, K.indptr[n + 1 :] - 1


@njit(cache=True, error_model="numpy")
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
