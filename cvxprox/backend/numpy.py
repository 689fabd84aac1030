"""The NumPy backend: NumPy vectors and SciPy CSR matrices on the CPU (the default)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import array_api_compat.numpy as xp_numpy
import numba
import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from cvxprox.backend import Array, Backend
from cvxprox.backend.jit.combine import combine2, combine3
from cvxprox.backend.jit.pdhg import (
    dual_step,
    dual_step_halpern,
    halpern_iterations,
    primal_step,
    primal_step_halpern,
)
from cvxprox.backend.jit.pdhg_tv import tv_pdhg_iteration

_EMPTY = np.zeros(0)


def _optional(p: Array | None, bounds: tuple | None) -> tuple[Array, Array, Array]:
    """(p, lower, upper) for ``cvxprox.backend.jit.pdhg``'s steps: empty arrays for the
    absent ones."""
    lower, upper = bounds if bounds is not None else (_EMPTY, _EMPTY)
    return (_EMPTY if p is None else p), lower, upper


class NumPyBackend(Backend):
    """NumPy arrays of ``dtype`` on the CPU; sparse products by SciPy's CSR matvec."""

    name = "numpy"

    def __init__(self, dtype: str = "float64") -> None:
        self.xp = xp_numpy
        self.dtype = np.dtype(dtype)
        self.device = "cpu"

    def asarray(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=self.dtype)

    def to_host(self, a: Array) -> np.ndarray:
        return np.asarray(a, dtype=np.float64)

    @contextlib.contextmanager
    def cpu_threads(self, count: int | None) -> Iterator[None]:
        """Numba's threads (the column blocks of ``cvxprox.backend.jit.dual_tv``) limited
        to ``count`` inside the block; None leaves Numba's current count."""
        if count is None:
            yield
            return
        threads = numba.get_num_threads()
        numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
        try:
            yield
        finally:
            numba.set_num_threads(threads)

    def combine(self, coefficients: Sequence[float], vectors: Sequence[Array]) -> Array:
        """One compiled pass for two or three 1-D vectors (``cvxprox.backend.jit.combine``)."""
        if len(vectors) in (2, 3) and all(v.ndim == 1 for v in vectors):
            args = [arg for pair in zip(coefficients, vectors, strict=True) for arg in pair]
            return (combine2 if len(vectors) == 2 else combine3)(*args)
        return super().combine(coefficients, vectors)

    def pdhg_primal_step(
        self,
        x: Array,
        kty: Array,
        c: Array,
        tau: float,
        p: Array | None = None,
        bounds: tuple[Array, Array] | None = None,
    ) -> Array:
        """One compiled pass in float64 (``cvxprox.backend.jit.pdhg``), bit for bit the
        reference; the reference in float32."""
        if self.dtype != np.float64:
            return super().pdhg_primal_step(x, kty, c, tau, p, bounds)
        return primal_step(x, kty, c, tau, *_optional(p, bounds))

    def pdhg_dual_step(
        self, y: Array, ax: Array, kx: Array, b: Array, sigma: float, free: Array
    ) -> Array:
        """One compiled pass in float64 (``cvxprox.backend.jit.pdhg``), bit for bit the
        reference; the reference in float32."""
        if self.dtype != np.float64:
            return super().pdhg_dual_step(y, ax, kx, b, sigma, free)
        return dual_step(y, ax, kx, b, sigma, free)

    def pdhg_primal_halpern(
        self,
        x: Array,
        kty: Array,
        c: Array,
        tau: float,
        p: Array | None,
        bounds: tuple[Array, Array] | None,
        coefficients: tuple[float, float, float],
        anchor: Array,
    ) -> tuple[Array, Array]:
        """One compiled pass in float64 (``cvxprox.backend.jit.pdhg``), bit for bit the
        reference."""
        if self.dtype != np.float64:
            return super().pdhg_primal_halpern(x, kty, c, tau, p, bounds, coefficients, anchor)
        return primal_step_halpern(x, kty, c, tau, *_optional(p, bounds), *coefficients, anchor)

    def pdhg_dual_halpern(
        self,
        y: Array,
        ax: Array,
        kx: Array,
        b: Array,
        sigma: float,
        free: Array,
        coefficients: tuple[float, float, float],
        anchor_y: Array,
        anchor_kx: Array,
    ) -> tuple[Array, Array, Array]:
        """One compiled pass in float64 (``cvxprox.backend.jit.pdhg``), bit for bit the
        reference."""
        if self.dtype != np.float64:
            return super().pdhg_dual_halpern(
                y, ax, kx, b, sigma, free, coefficients, anchor_y, anchor_kx
            )
        return dual_step_halpern(y, ax, kx, b, sigma, free, *coefficients, anchor_y, anchor_kx)

    def pdhg_halpern_iterations(
        self,
        count: int,
        k: int,
        steps: tuple[float, float, float],
        data: tuple[Array, Array | None, tuple[Array, Array] | None, Array, Array],
        operators: tuple[Any, Any],
        point: tuple[Array, Array, Array, Array],
        anchor: tuple[Array, Array, Array, Array],
    ) -> tuple[tuple, tuple, tuple] | None:
        """One compiled call in float64 (``cvxprox.backend.jit.pdhg.halpern_iterations``),
        bit for bit ``count`` steps of the fused passes with SciPy's products; None in
        float32."""
        if self.dtype != np.float64:
            return None
        c, p, bounds, b, free = data
        A, At = operators
        return halpern_iterations(
            count,
            k,
            steps,
            (c, *_optional(p, bounds), b, free),
            (A.indptr, A.indices, A.data),
            (At.indptr, At.indices, At.data),
            point,
            anchor,
        )

    def tv_pdhg_iteration(
        self,
        grid: Any,
        weight: Array,
        x: Array,
        kty: Array,
        y: Array,
        kx: Array,
        c: Array,
        lower: Array,
        upper: Array,
        tau: float,
        s: float,
        combination: tuple | None = None,
    ) -> tuple | None:
        """One compiled pass in float64 (``cvxprox.backend.jit.pdhg_tv``); None in
        float32."""
        if self.dtype != np.float64:
            return None
        if combination is None:
            extra = (False, 0.0, 0.0, False, _EMPTY, _EMPTY, _EMPTY, _EMPTY, 0.0, 0.0)
        else:
            a_step, a_point, average, a_average, a_new = combination
            fields = (_EMPTY,) * 4 if average is None else tuple(average)
            extra = (True, a_step, a_point, average is not None, *fields, a_average, a_new)
        return tv_pdhg_iteration(
            grid.rows, grid.cols, weight, x, kty, y, kx, c, lower, upper, tau, s, *extra
        )

    def csr(self, a: sp.sparray | sp.spmatrix) -> Any:
        return sp.csr_matrix(a, dtype=self.dtype)

    def cho_solver(self, L: np.ndarray) -> Callable[[Array], Array]:
        return lambda rhs: la.cho_solve((L, True), rhs, check_finite=False)

    def lu_solver(self, K: np.ndarray) -> Callable[[Array], Array]:
        lu = la.lu_factor(K, check_finite=False)
        return lambda rhs: la.lu_solve(lu, rhs, check_finite=False)
