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

    ``P`` is the n x n matrix P in CSC form (None for none; only its upper triangle is
    read), ``At`` the n x m matrix A' in CSC form, ``rho`` (m,). Column j of K holds the
    entries of column j of P above the diagonal (or of column j - n of A'), then the
    diagonal. Built once per solve, with NumPy: a compiled kernel would cost its
    compilation and save a fraction of a millisecond.
    """
    n, m = At.shape
    if not At.has_sorted_indices:
        At = At.sorted_indices()
    pdiag = np.zeros(n)
    above = np.zeros(n, dtype=np.int64)
    p_rows, p_data = np.zeros(0, dtype=np.int64), np.zeros(0)
    if P is not None:
        if not P.has_sorted_indices:
            P = P.sorted_indices()
        cols = np.repeat(np.arange(n), np.diff(P.indptr))
        upper, on_diag = P.indices < cols, P.indices == cols
        p_rows, p_data = P.indices[upper], P.data[upper]
        above = np.bincount(cols[upper], minlength=n)
        pdiag = np.bincount(cols[on_diag], weights=P.data[on_diag], minlength=n)
    indptr = np.zeros(n + m + 1, dtype=np.int64)
    np.cumsum(np.concatenate([above, np.diff(At.indptr)]) + 1, out=indptr[1:])
    diag_pos = indptr[1:] - 1
    off_diag = np.ones(indptr[-1], dtype=bool)
    off_diag[diag_pos] = False
    indices = np.empty(indptr[-1], dtype=np.int64)
    data = np.empty(indptr[-1])
    indices[off_diag] = np.concatenate([p_rows, At.indices])
    data[off_diag] = np.concatenate([p_data, At.data])
    indices[diag_pos] = np.arange(n + m)
    data[diag_pos] = np.concatenate([sigma + pdiag, -1.0 / rho])
    K = sp.csc_array((data, indices, indptr), shape=(n + m, n + m))
    return K, diag_pos[n:]


@njit(cache=True, error_model="numpy")
def ldl_solve(factor: tuple, rhs: np.ndarray, out: np.ndarray) -> None:
    """out = K^{-1} rhs for ``factor = (Lp, Li, Lx, d_inv, perm, work)``.

    With ``K[p][:, p] = (I + L) D (I + L)'``: ``u = rhs[p]``, solve ``(I + L) u' = u``,
    scale by ``D^{-1}``, solve ``(I + L)' u'' = u'``, then ``out[p] = u''``. ``rhs`` and
    ``out`` have length ``dim`` and may be the same array; ``work`` is scratch of that length.
    The positions read from the factor are unsigned, so that no index is tested for
    wrapping around: with signed ones a solve with nnz(L) = 2.8e6 took 12.6 ms, with
    these 4.9 ms, the same result bit for bit. ``Li`` and ``perm`` are 32-bit (a row
    index of K fits; ``Lp``, positions in L, stays 64-bit): each nonzero read is 12
    bytes instead of 16, and a solve with nnz(L) = 2.0e7 takes 48 ms instead of 57 ms,
    the same result bit for bit.
    """
    Lp, Li, Lx, d_inv, perm, work = factor
    dim = perm.shape[0]
    for i in range(dim):
        work[i] = rhs[np.uintp(perm[i])]
    for j in range(dim):
        wj = work[j]
        if wj != 0.0:
            for k in range(np.uintp(Lp[j]), np.uintp(Lp[j + 1])):
                work[np.uintp(Li[k])] -= Lx[k] * wj
    for i in range(dim):
        work[i] *= d_inv[i]
    for j in range(dim - 1, -1, -1):
        acc = work[j]
        for k in range(np.uintp(Lp[j]), np.uintp(Lp[j + 1])):
            acc -= Lx[k] * work[np.uintp(Li[k])]
        work[j] = acc
    for i in range(dim):
        out[np.uintp(perm[i])] = work[i]


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
            L.indices.astype(np.int32),
            L.data.astype(np.float64),
            1.0 / d.astype(np.float64),
            perm.astype(np.int32),
            self._work,
        )
