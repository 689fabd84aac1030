"""Array backends: where the iterations run.

Solver code is written once against an array namespace ``xp`` (array-api-compat) plus
the small protocol of :class:`Backend`: moving dense vectors and sparse matrices to the
device and back, and solving with a dense Cholesky or LU factor on the device. A sparse
matrix on the device is an operator whose product ``A @ x`` with a device vector ``x``
runs on the device; ``A'`` is made as its own CSR matrix (``backend.csr(A.T)``), never as
a transposed product.

=========  ===========================  =====================================  ========
backend    ``xp``                       sparse ``A @ x``                       device
=========  ===========================  =====================================  ========
numpy      ``array_api_compat.numpy``   ``scipy.sparse.csr_matrix``            cpu
torch      ``array_api_compat.torch``   ``torch.sparse_csr_tensor`` matvec     cpu, cuda
cupy       ``array_api_compat.cupy``    ``cupyx.scipy.sparse.csr_matrix``      cuda
=========  ===========================  =====================================  ========

torch and CuPy are imported only when a backend that needs them is asked for; a
missing package or a missing GPU raises a ValueError that says what is missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import array_api_compat
import array_api_compat.numpy as _xp_numpy
import numpy as np
import scipy.sparse as sp

__all__ = ["BACKENDS", "DEVICES", "Backend", "array_namespace", "get_backend", "resolve_backend"]

BACKENDS = ("auto", "numpy", "torch", "cupy")
DEVICES = ("cpu", "cuda")

Array = Any

CUDA_MISSING = (
    "device='cuda' needs CuPy (pip install cvxprox[gpu]) or backend='torch' with a CUDA "
    "build of torch"
)


def array_namespace(*arrays: Any) -> Any:
    """The array-api-compat namespace of ``arrays`` (``array_api_compat.array_namespace``),
    with NumPy arrays answered directly: the proxes, operators and checks ask on every call,
    and the general lookup costs microseconds that a small problem's iteration notices."""
    if all(type(a) is np.ndarray for a in arrays):
        return _xp_numpy
    return array_api_compat.array_namespace(*arrays)


class Backend:
    """An array namespace, a dtype and a device, with the transfers to and from them.

    Attributes
    ----------
    name : str
        ``"numpy"``, ``"torch"`` or ``"cupy"``.
    xp : module
        The array-api-compat namespace of the device arrays.
    dtype : dtype
        The floating dtype of the iterations (``xp.float64`` or ``xp.float32``).
    device : str or device
        Where the arrays live (``"cpu"``, or the library's CUDA device).
    """

    name: str
    xp: Any
    dtype: Any
    device: Any

    def asarray(self, a: np.ndarray) -> Array:
        """Dense host array (any shape) -> device array of the backend's dtype."""
        raise NotImplementedError

    def to_device(self, a: Array) -> Array:
        """A host (NumPy) array moved to the device (``asarray``); the backend's own
        device array as it is."""
        return self.asarray(a) if isinstance(a, np.ndarray) else a

    def zeros(self, n: int) -> Array:
        """The zero vector of length n on the device."""
        return self.xp.zeros(n, dtype=self.dtype, device=self.device)

    def to_host(self, a: Array) -> np.ndarray:
        """Device array -> NumPy float64 array of the same shape."""
        raise NotImplementedError

    def scalar(self, a: Array) -> float:
        """A 0-d device array (or a Python/NumPy number) -> Python float."""
        return float(a)

    def combine(self, coefficients: Sequence[float], vectors: Sequence[Array]) -> Array:
        """sum_i a_i v_i for the coefficients a_i (floats) and vectors v_i (n,), a new
        device array."""
        out = coefficients[0] * vectors[0]
        for a, v in zip(coefficients[1:], vectors[1:], strict=True):
            out = out + a * v
        return out

    def asmask(self, a: np.ndarray) -> Array:
        """Boolean host array -> boolean device array of the same shape."""
        return self.xp.asarray(np.asarray(a, dtype=bool), device=self.device)

    def pdhg_primal_step(
        self,
        x: Array,
        kty: Array,
        c: Array,
        tau: float,
        p: Array | None = None,
        bounds: tuple[Array, Array] | None = None,
    ) -> Array:
        """PDHG's primal update of an LP or a diagonal QP (``cvxprox.solvers.pdhg``):

            x+ = proj_[l, u]((x - tau (c + K'y)) / (1 + tau p)),

        x, K'y = ``kty``, c, p (the diagonal of P; None for an LP) and l, u (``bounds``;
        None without bounds) all (n,). This is the array-namespace reference; a backend
        with a fused kernel for it overrides the method."""
        xp = self.xp
        v = x - tau * (c + kty)
        if p is not None:
            v = v / (1.0 + tau * p)
        if bounds is not None:
            v = xp.minimum(xp.maximum(v, bounds[0]), bounds[1])
        return v

    def pdhg_dual_step(
        self, y: Array, ax: Array, kx: Array, b: Array, sigma: float, free: Array
    ) -> Array:
        """PDHG's dual update on zero and nonnegative cones (``cvxprox.solvers.pdhg``):

            v = y + sigma (2 A x+ - K x - b),   y+ = v where ``free`` (zero-cone rows,
            whose polar cone is all of R), min(v, 0) elsewhere (nonnegative rows),

        y, A x+ = ``ax``, K x = ``kx``, b and the boolean mask ``free`` all (m,). The
        array-namespace reference; a backend with a fused kernel overrides it."""
        xp = self.xp
        v = y + sigma * (2.0 * ax - kx - b)
        return xp.where(free, v, xp.minimum(v, 0.0))

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
        """(x+, the next Halpern point's x): ``pdhg_primal_step`` and, with coefficients
        (a, b, e), ``combine([a, b, e], [x+, x, anchor])``. A backend with a fused kernel
        forms both in one pass."""
        step = self.pdhg_primal_step(x, kty, c, tau, p, bounds)
        return step, self.combine(coefficients, [step, x, anchor])

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
        """(y+, the next Halpern point's y and K x): ``pdhg_dual_step`` and, with
        coefficients (a, b, e), ``combine([a, b, e], [y+, y, anchor_y])`` and
        ``combine([a, b, e], [A x+, K x, anchor_kx])``."""
        step = self.pdhg_dual_step(y, ax, kx, b, sigma, free)
        return (
            step,
            self.combine(coefficients, [step, y, anchor_y]),
            self.combine(coefficients, [ax, kx, anchor_kx]),
        )

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
        """``count`` >= 1 reflected Halpern iterations of a PDHG epoch on a program with
        zero and nonnegative cones and no P (``cvxprox.backend.jit.pdhg.halpern_iterations``),
        from its k-th point: the next point, the last iteration's step T(z) and the point z
        it was taken from, each (x, y, K x, K'y). ``steps`` = (gamma, tau,
        sigma), ``data`` = (c, p or None, bounds or None, b, free) as for
        ``pdhg_primal_step`` and ``pdhg_dual_step``, ``operators`` = (A, A') as
        ``csr`` made them, ``point`` and ``anchor`` = (x, y, K x, K'y). None where the
        backend has no fused form (the caller steps one iteration at a time)."""
        return None

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
        """PDHG's step on 2-D TV in a box (``cvxprox.backend.jit.pdhg_tv``) for the
        ``TVGrid`` ``grid`` with the discs' radii ``weight`` on the device, and with
        ``combination`` = (a_step, a_point, average or None, a_average, a_new) the next
        KM point and running average in the same passes: ``tv_pdhg_iteration``'s
        13-tuple. None where the backend has no fused form (the array step runs)."""
        return None

    def dual_tv_trial(
        self,
        grid: Any,
        q: np.ndarray,
        H: np.ndarray,
        bounds: tuple[np.ndarray, np.ndarray] | None,
    ) -> Callable | None:
        """The fused trial step of dual FISTA on 2-D TV (``DualIterations.trial``'s
        arguments; it returns (y+, K'y+, (||d||^2, d'(y+ - y), descent), z or None)) for
        the ``TVGrid`` ``grid``, F's q and diagonal H (n,) and the bounds, or None where
        the backend has none (then the array operations run)."""
        return None

    def csr(self, a: sp.sparray | sp.spmatrix) -> Any:
        """Sparse host matrix (m, n) -> CSR matrix on the device: ``A @ x`` with a device
        vector x (n,) gives the device vector A x (m,) in the backend's dtype."""
        raise NotImplementedError

    def cho_solver(self, L: np.ndarray) -> Callable[[Array], Array]:
        """The solve rhs -> H^{-1} rhs on the device for H = L L', from the host's lower
        Cholesky factor L (n, n) (its upper triangle is ignored), moved to the device once."""
        raise NotImplementedError

    def lu_solver(self, K: np.ndarray) -> Callable[[Array], Array]:
        """The solve rhs -> K^{-1} rhs on the device for a dense nonsingular host matrix K
        (n, n), factored once on the device by LU with partial pivoting."""
        raise NotImplementedError

    @contextlib.contextmanager
    def cpu_threads(self, count: int | None) -> Iterator[None]:
        """Run the library's CPU kernels on at most ``count`` threads inside the block
        (the option ``threads``; None: each backend's default for its kernels).

        Most iterations are vector operations and sparse products too small for threads
        to pay off, and on a loaded machine spinning threads make them many times slower
        (``cvxprox.solvers.select.solve_program`` keeps BLAS on one thread for the same
        reason); the compiled passes over a large image are the exception.
        """
        yield

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dtype={self.dtype}, device={self.device})"


def resolve_backend(backend: str, device: str) -> str:
    """The concrete backend name for the options ``backend`` and ``device``.

    ``"auto"`` is NumPy on the CPU and CuPy on ``device="cuda"``; an explicit name is
    returned as is. Raises ValueError for a name or device outside ``BACKENDS`` /
    ``DEVICES`` and for a backend that cannot run on the device (NumPy on CUDA, CuPy on
    the CPU). Imports nothing.
    """
    if backend not in BACKENDS:
        raise ValueError(f"option 'backend' must be one of {BACKENDS}, got {backend!r}")
    if device not in DEVICES:
        raise ValueError(f"option 'device' must be one of {DEVICES}, got {device!r}")
    if backend == "auto":
        return "cupy" if device == "cuda" else "numpy"
    if backend == "numpy" and device == "cuda":
        raise ValueError(
            "option backend='numpy' runs on the CPU; with device='cuda' use backend='cupy' "
            "(or 'auto') or backend='torch'"
        )
    if backend == "cupy" and device == "cpu":
        raise ValueError("option backend='cupy' runs on a GPU: pass device='cuda' as well")
    return backend


def get_backend(backend: str = "auto", device: str = "cpu", dtype: str = "float64") -> Backend:
    """The backend for the options ``backend``, ``device`` and ``dtype``.

    ``dtype`` is ``"float64"`` or ``"float32"``. torch and CuPy are imported here, only
    when asked for; ValueError when the package or the GPU is missing.
    """
    if dtype not in ("float64", "float32"):
        raise ValueError(f"option 'dtype' must be 'float64' or 'float32', got {dtype!r}")
    name = resolve_backend(backend, device)
    if name == "numpy":
        from cvxprox.backend.numpy import NumPyBackend  # noqa: PLC0415

        return NumPyBackend(dtype)
    if name == "torch":
        from cvxprox.backend.torch import TorchBackend  # noqa: PLC0415

        return TorchBackend(device, dtype)
    from cvxprox.backend.cupy import CuPyBackend  # noqa: PLC0415

    return CuPyBackend(dtype)
