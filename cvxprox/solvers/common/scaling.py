"""Diagonal preconditioning of an AssembledProgram (Ruiz equilibration + cost scaling).

The scaled program is

    P^ = k D P D,   c^ = k D c,   A^ = E A D,   b^ = E b,

with D (n,), E (m,) positive diagonals and k > 0 a cost scale. Its iterates map back by

    x = D x^,   z = z^ / E,   y = E y^ / k,

and a gradient-space vector (P x, A'y, c) maps back by g = g^ / (k D).

A cone is invariant under diag(E) only if E is constant on each of its non-separable
blocks (a second-order cone, a PSD matrix, an exponential or power triple), so the row
scaling is reduced to one value per block (the block's largest row norm).

An optional Pock–Chambolle stage (alpha = 1) follows the Ruiz passes: with the 1-norms
r_i = ||A^_i,:||_1 of the rows and s_j = ||A^_B,j||_1 + ||P^_:,j||_1 of the columns of the
KKT matrix, B the rows that are not bounds (one-entry rows, each its own cone block: PDHG
projects onto them instead of iterating their duals, as in Ruiz's passes they do not
set the column scale), it rescales by E_pc = 1 / sqrt(r) (one value per block, from the block's
largest r_i) and D_pc = 1 / sqrt(s). By Cauchy–Schwarz the rescaled A^_B then has
||A^_B||_2 <= 1 (up to the clipping of tiny and huge norms): the diagonal preconditioner of
Pock and Chambolle (2011) for primal-dual methods, applied as a rescaling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from cvxprox.backend.jit import csc_arrays
from cvxprox.backend.jit.equilibrate import MAX_SCALE as _MAX_SCALE
from cvxprox.backend.jit.equilibrate import MIN_SCALE as _MIN_SCALE
from cvxprox.backend.jit.equilibrate import ruiz_passes
from cvxprox.ir.program import AssembledProgram

if TYPE_CHECKING:
    from cvxprox.backend import Backend


def _safe_inverse_sqrt(norms: np.ndarray) -> np.ndarray:
    norms = np.where(norms < _MIN_SCALE, 1.0, np.minimum(norms, _MAX_SCALE))
    return 1.0 / np.sqrt(norms)


class DiagonalScaling:
    """The maps between a program's iterates and those of its scaled copy (module
    docstring), for D (n,), E (m,) and k on the host or on a backend's device.

    Attributes
    ----------
    D : array, shape (n,)
    E : array, shape (m,)
    k : float
    """

    def __init__(self, D: Any, E: Any, k: float) -> None:
        self.D, self.E, self.k = D, E, k

    def on(self, backend: Backend) -> DiagonalScaling:
        """The same maps for arrays on ``backend``'s device, in its dtype."""
        return DiagonalScaling(backend.asarray(self.D), backend.asarray(self.E), self.k)

    def unscale_x(self, x: Any) -> Any:
        return self.D * x

    def unscale_z(self, z: Any) -> Any:
        """Also maps a scaled row-space product A^ x^ back to A x."""
        return z / self.E

    def unscale_y(self, y: Any) -> Any:
        return self.E * y / self.k

    def unscale_gradient(self, g: Any) -> Any:
        """A scaled gradient-space vector (P^ x^, A^'y^, c^) back to the original one."""
        return g / (self.k * self.D)

    def scale_x(self, x: Any) -> Any:
        return x / self.D

    def scale_z(self, z: Any) -> Any:
        return self.E * z

    def scale_y(self, y: Any) -> Any:
        return self.k * y / self.E


class RuizScaling(DiagonalScaling):
    """Ruiz equilibration of the KKT matrix [[P, A'], [A, 0]] respecting cone blocks.

    Parameters
    ----------
    program : AssembledProgram
        The unscaled program.
    iters : int
        Number of equilibration passes (0 gives the identity scaling).
    pock_chambolle : bool
        Follow the passes with one Pock–Chambolle (alpha = 1) rescaling (see the
        module docstring). Off by default.
    """

    def __init__(self, program: AssembledProgram, iters: int, pock_chambolle: bool = False) -> None:
        n, m = program.n, program.m
        blocks = program.cone.scaling_blocks()
        self._block_starts = np.concatenate(([0], np.cumsum(blocks)[:-1])).astype(np.int64)
        self._block_sizes = np.asarray(blocks, dtype=np.int64)
        if self._block_sizes.sum() != m:
            raise ValueError("the cone's blocks do not cover the rows of A")
        self._separable = bool(np.all(self._block_sizes == 1))

        A = _ScaledCSC(program.A)
        P = None if program.P is None else _ScaledCSC(program.P)
        D = np.ones(n)
        E = np.ones(m)

        # Bounds: rows with one nonzero, each its own cone block (in a larger block the
        # row scaling is shared, not free).
        singleton = (np.bincount(program.A.indices, minlength=m) == 1) & (
            np.repeat(self._block_sizes, self._block_sizes) == 1
        )
        ruiz_passes(csc_arrays(A), csc_arrays(P), self._block_sizes, iters, D, E, singleton)
        if pock_chambolle and m:
            col = A.col_sum(~singleton) if P is None else A.col_sum(~singleton) + P.col_sum()
            d = _safe_inverse_sqrt(col)
            e = _safe_inverse_sqrt(self._per_block(A.row_sum()))
            A.scale(e, d)
            if P is not None:
                P.scale(d, d)
            D *= d
            E *= e
        c = D * program.c
        cost_norm = np.max(np.abs(c), initial=0.0)
        if P is not None and P.data.size:
            cost_norm = max(cost_norm, float(np.mean(P.col_max())))
        k = _inverse_clipped(cost_norm) if iters else 1.0
        super().__init__(D, E, k)
        self.cost_norm = _cost_magnitude(c, P)
        self.c = k * c
        self.A = A.matrix()
        self.P = None
        if P is not None:
            P.data *= k
            self.P = P.matrix()
        self.b = E * program.b

    def _per_block(self, row_norms: np.ndarray) -> np.ndarray:
        """Replace each non-separable block's row norms by the block maximum."""
        if self._separable:
            return row_norms
        block_max = np.maximum.reduceat(row_norms, self._block_starts)
        return np.repeat(block_max, self._block_sizes)


def _cost_magnitude(c: np.ndarray, P: _ScaledCSC | None) -> float:
    """The objective's unit on the column-scaled data: the largest over the variables of
    max(|(D c)_j|, max_i |(D P D)_ij|), 1 when it is zero. Unclipped, unlike the cost
    scale k (the termination test caps the unit at 1)."""
    cost = np.abs(c)
    if P is not None and P.data.size:
        cost = np.maximum(cost, P.col_max())
    value = float(np.max(cost, initial=0.0))
    return value if value > 0 else 1.0


def _inverse_clipped(norm: float) -> float:
    """1 / norm, with norm clipped to [1e-4, 1e4]; 1 when norm is zero."""
    return 1.0 / float(np.clip(norm, _MIN_SCALE, _MAX_SCALE)) if norm > 0 else 1.0


class _ScaledCSC:
    """A sparse matrix as CSC arrays, rescaled in place by row and column diagonals.

    Each equilibration pass is then a few operations on the nonzeros instead of new
    SciPy matrices (which dominated the setup time of small problems).
    """

    def __init__(self, M: sp.sparray | sp.spmatrix) -> None:
        M = sp.csc_array(M, dtype=np.float64, copy=True)
        M.sum_duplicates()
        self.shape = M.shape
        self.indptr, self.indices, self.data = M.indptr, M.indices, M.data
        self._cols = np.repeat(np.arange(M.shape[1]), np.diff(M.indptr))
        self._starts = M.indptr[:-1][np.diff(M.indptr) > 0]
        self._nonempty = np.diff(M.indptr) > 0

    def col_max(self) -> np.ndarray:
        """Infinity norms of the columns."""
        out = np.zeros(self.shape[1])
        if self.data.size:
            out[self._nonempty] = np.maximum.reduceat(np.abs(self.data), self._starts)
        return out

    def col_sum(self, rows: np.ndarray | None = None) -> np.ndarray:
        """1-norms of the columns, over the rows where the mask ``rows`` (m,) is True
        (all rows when None)."""
        weights = np.abs(self.data)
        if rows is not None:
            weights = weights * rows[self.indices]
        return np.bincount(self._cols, weights=weights, minlength=self.shape[1])

    def row_sum(self) -> np.ndarray:
        """1-norms of the rows."""
        return np.bincount(self.indices, weights=np.abs(self.data), minlength=self.shape[0])

    def scale(self, rows: np.ndarray, cols: np.ndarray) -> None:
        """M <- diag(rows) M diag(cols)."""
        self.data *= rows[self.indices] * cols[self._cols]

    def matrix(self) -> sp.csc_array:
        return sp.csc_array((self.data, self.indices, self.indptr), shape=self.shape)
