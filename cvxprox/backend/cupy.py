"""The CuPy backend: CuPy arrays on the current CUDA device, cuSPARSE CSR for A."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import numpy as np
import scipy.sparse as sp

from cvxprox.backend import CUDA_MISSING, Array, Backend, cuda_kernels
from cvxprox.backend.cuda_kernels import Elementwise

try:
    import cupy
    import cupyx.scipy.linalg as culinalg
    import cupyx.scipy.sparse as cusparse
except ImportError as exc:
    raise ValueError(CUDA_MISSING) from exc


def _launch(spec: Elementwise, *args: Any, size: int | None = None) -> Any:
    """Run the kernel of ``spec`` on ``args``; ``size`` (the element count, for a kernel
    whose arrays are all raw) is passed only when given: CuPy reads an absent size as
    none, and refuses None."""
    kernel = _kernel(spec)
    return kernel(*args) if size is None else kernel(*args, size=size)


def _primal_args(
    x: Array, kty: Array, c: Array, tau: float, p: Array | None, bounds: tuple | None
) -> list:
    """The arguments of ``cuda_kernels.pdhg_primal_step``'s kernels, p and the bounds
    only when given (they select the kernel)."""
    args = [x, kty, c, float(tau)]
    if p is not None:
        args.append(p)
    if bounds is not None:
        args += list(bounds)
    return args


@cache
def _kernel(spec: Elementwise) -> Any:
    """The compiled ``cupy.ElementwiseKernel`` of ``spec`` (compiled at its first call,
    cached by CuPy on disk)."""
    return cupy.ElementwiseKernel(
        spec.in_params, spec.out_params, spec.operation, spec.name, preamble=spec.preamble
    )


class CuPyBackend(Backend):
    """CuPy arrays of ``dtype`` on the current CUDA device.

    Sparse matrices are ``cupyx.scipy.sparse.csr_matrix``; ``A @ x`` is cuSPARSE's
    matrix-vector product. Combinations of vectors and PDHG's updates are one fused
    elementwise kernel each (``cvxprox.backend.cuda_kernels``).
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

    def asmask(self, a: np.ndarray) -> Any:
        return cupy.asarray(np.asarray(a, dtype=bool))

    def combine(self, coefficients: Sequence[float], vectors: Sequence[Array]) -> Array:
        """One kernel (``cuda_kernels.combine``) for up to four vectors of one shape."""
        if not 1 <= len(vectors) <= 4 or len({v.shape for v in vectors}) != 1:
            return super().combine(coefficients, vectors)
        args = []
        for a, v in zip(coefficients, vectors, strict=True):
            args += [float(a), v]
        return _launch(cuda_kernels.combine(len(vectors)), *args)

    def pdhg_primal_step(
        self,
        x: Array,
        kty: Array,
        c: Array,
        tau: float,
        p: Array | None = None,
        bounds: tuple[Array, Array] | None = None,
    ) -> Array:
        """One kernel (``cuda_kernels.pdhg_primal_step``)."""
        spec = cuda_kernels.pdhg_primal_step(p is not None, bounds is not None)
        return _launch(spec, *_primal_args(x, kty, c, tau, p, bounds))

    def pdhg_dual_step(
        self, y: Array, ax: Array, kx: Array, b: Array, sigma: float, free: Array
    ) -> Array:
        """One kernel (``cuda_kernels.PDHG_DUAL_STEP``)."""
        return _launch(cuda_kernels.PDHG_DUAL_STEP, y, ax, kx, b, float(sigma), free)

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
        """One kernel (``cuda_kernels.pdhg_primal_step`` with ``halpern``)."""
        spec = cuda_kernels.pdhg_primal_step(p is not None, bounds is not None, True)
        args = _primal_args(x, kty, c, tau, p, bounds)
        return _launch(spec, *args, *(float(a) for a in coefficients), anchor)

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
        """One kernel (``cuda_kernels.PDHG_DUAL_HALPERN``)."""
        return _launch(
            cuda_kernels.PDHG_DUAL_HALPERN, y, ax, kx, b, float(sigma), free,
            *(float(a) for a in coefficients), anchor_y, anchor_kx,
        )  # fmt: skip

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
        """Three kernels (``cuda_kernels.tv_pdhg_iteration``)."""
        return cuda_kernels.tv_pdhg_iteration(
            _launch, cupy, grid, weight, x, kty, y, kx, c, lower, upper, tau, s, combination,
        )  # fmt: skip

    def dual_tv_trial(
        self,
        grid: Any,
        q: np.ndarray,
        H: np.ndarray,
        bounds: tuple[np.ndarray, np.ndarray] | None,
    ) -> Callable | None:
        """Two kernels and one read-back per trial on isotropic TV
        (``cuda_kernels.TVDualTrial``); None on anisotropic TV."""
        if not grid.iso:
            return None
        device_bounds = None if bounds is None else tuple(self.asarray(b) for b in bounds)
        return cuda_kernels.TVDualTrial(
            _launch, cupy, grid.rows, grid.cols,
            self.asarray(grid.w0), self.asarray(q), self.asarray(H), device_bounds,
        )  # fmt: skip

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
