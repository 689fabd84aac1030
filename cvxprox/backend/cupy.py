"""The CuPy backend: CuPy arrays on the current CUDA device, cuSPARSE CSR for A."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from cvxprox.backend import CUDA_MISSING, Array, Backend

try:
    import cupy
    import cupyx.scipy.linalg as culinalg
    import cupyx.scipy.sparse as cusparse
except ImportError as exc:
    raise ValueError(CUDA_MISSING) from exc


class CuPyBackend(Backend):
    """CuPy arrays of ``dtype`` on the current CUDA device.

    Sparse matrices are ``cupyx.scipy.sparse.csr_matrix``; ``A @ x`` is cuSPARSE's
    matrix-vector product.
    """

    name = "cupy"

    def __init__(self, dtype: str = "float64") -> None:
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except cupy.cuda.runtime.CUDARuntimeError as exc:
            raise ValueError(f"device='cuda': CuPy finds no usable CUDA device ({exc})") from exc
        if count == 0:
            raise ValueError("device='cuda': CuPy finds no CUDA device")
        import array_api_compat.cupy as xp_cupy  # noqa: PLC0415

        self.xp = xp_cupy
        self.dtype = np.dtype(dtype)
        self.device = cupy.cuda.Device()

    def asarray(self, a: np.ndarray) -> Any:
        return cupy.asarray(a, dtype=self.dtype)

    def to_host(self, a: Array) -> np.ndarray:
        return cupy.asnumpy(a).astype(np.float64, copy=False)

    def csr(self, a: sp.sparray | sp.spmatrix) -> Any:
        a = sp.csr_matrix(a, dtype=self.dtype, copy=True)
        a.sum_duplicates()
        return cusparse.csr_matrix(a)

    def cho_solver(self, L: np.ndarray) -> Callable[[Array], Array]:
        lower = self.asarray(np.tril(L))
        upper = lower.T.copy()

        def solve(rhs: Array) -> Array:
            inner = culinalg.solve_triangular(lower, rhs, lower=True)
            return culinalg.solve_triangular(upper, inner, lower=False)

        return solve

    def lu_solver(self, K: np.ndarray) -> Callable[[Array], Array]:
        lu = culinalg.lu_factor(self.asarray(K))
        return lambda rhs: culinalg.lu_solve(lu, rhs)
