"""Two-dimensional convolution of an expression with a constant kernel.

For a kernel K of shape (p, q) and an image X of shape (m, n), the three modes are

- ``"full"``: Y of shape (m + p - 1, n + q - 1),
  Y[u, v] = sum_{a, b} K[a, b] X[u - a, v - b] (terms with X outside its support vanish),
  exactly ``scipy.signal.convolve2d(X, K, "full")``;
- ``"same"``: Y of shape (m, n), the crop Y[i, j] = full[i + (p - 1) // 2, j + (q - 1) // 2],
  exactly ``scipy.signal.convolve2d(X, K, "same")``;
- ``"circular"``: Y of shape (m, n), the periodic convolution with the kernel's center
  (p // 2, q // 2) at index (0, 0):
  Y[i, j] = sum_{a, b} K[a, b] X[(i - a + p // 2) mod m, (j - b + q // 2) mod n].
  For odd p and q it agrees with ``"same"`` away from the borders.

Vectors are the column-major (order="F") flattenings of the images, as in CVXPY's ``vec``.
"""

from __future__ import annotations

from typing import Any

import cvxpy.lin_ops.lin_op as lo
import cvxpy.lin_ops.lin_utils as lu
import cvxpy.utilities as u
import numpy as np
import scipy.fft
import scipy.signal
import scipy.sparse as sp
from cvxpy.atoms.affine.affine_atom import AffAtom
from cvxpy.constraints.constraint import Constraint
from cvxpy.expressions.expression import Expression

MODES = ("full", "same", "circular")


def conv2d_output_shape(
    kernel_shape: tuple[int, int], shape: tuple[int, int], mode: str
) -> tuple[int, int]:
    """Shape of the convolution of a (p, q) kernel with an (m, n) image in ``mode``.

    Returns (m + p - 1, n + q - 1) for ``"full"`` and (m, n) for ``"same"`` and ``"circular"``.
    """
    (p, q), (m, n) = kernel_shape, shape
    if mode == "full":
        return (m + p - 1, n + q - 1)
    return (m, n)


def _origin(kernel_shape: tuple[int, int], mode: str) -> tuple[int, int]:
    """The kernel index (a, b) whose tap maps X[i, j] onto Y[i, j]."""
    p, q = kernel_shape
    if mode == "full":
        return (0, 0)
    if mode == "same":
        return ((p - 1) // 2, (q - 1) // 2)
    return (p // 2, q // 2)


def conv2d_matrix(kernel: np.ndarray, shape: tuple[int, int], mode: str) -> sp.csr_array:
    """The matrix A with vec(conv2d(K, X, mode)) = A vec(X), vec in column-major order.

    Parameters
    ----------
    kernel : ndarray, shape (p, q)
        The convolution kernel K.
    shape : tuple of int
        The image shape (m, n).
    mode : {"full", "same", "circular"}
        The boundary handling, see the module docstring.

    Returns
    -------
    scipy.sparse.csr_array, shape (M * N, m * n)
        (M, N) the output shape. Entry A[u + M v, i + m j] is the sum of the taps K[a, b]
        that send X[i, j] to Y[u, v] (several only for a circular kernel larger than the
        image); zero taps are not stored, so A has at most p q m n nonzeros.
    """
    m, n = shape
    out_rows, out_cols = conv2d_output_shape(kernel.shape, shape, mode)
    a0, b0 = _origin(kernel.shape, mode)
    a, b = np.nonzero(kernel)
    col = np.arange(m * n)
    row_out = (col % m)[None, :] + (a - a0)[:, None]
    col_out = (col // m)[None, :] + (b - b0)[:, None]
    if mode == "circular":
        row_out %= m
        col_out %= n
        keep = np.ones(row_out.shape, dtype=bool)
    else:
        keep = (row_out >= 0) & (row_out < out_rows) & (col_out >= 0) & (col_out < out_cols)
    values = np.broadcast_to(kernel[a, b][:, None], keep.shape)
    rows = row_out + out_rows * col_out
    cols = np.broadcast_to(col[None, :], keep.shape)
    coo = sp.coo_array((values[keep], (rows[keep], cols[keep])), shape=(out_rows * out_cols, m * n))
    return coo.tocsr()


def circular_convolve(kernel: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Periodic convolution of ``image`` (m, n) with ``kernel`` centered at (p // 2, q // 2).

    Computed by real FFTs: the kernel is wrapped onto the (m, n) torus, tap (a, b) at
    ((a - p // 2) mod m, (b - q // 2) mod n), taps landing on the same pixel adding up.
    """
    (m, n), (p, q) = image.shape, kernel.shape
    a, b = np.indices(kernel.shape)
    wrapped = np.zeros((m, n))
    np.add.at(wrapped, ((a - p // 2) % m, (b - q // 2) % n), kernel)
    spectrum = scipy.fft.rfft2(image) * scipy.fft.rfft2(wrapped)
    return scipy.fft.irfft2(spectrum, s=(m, n))


def _constant_matrix(expr: Expression, role: str, atom: str) -> np.ndarray:
    """The float64 value of a constant, parameter-free, real, finite, 2-D expression."""
    params = expr.parameters()
    if params:
        names = ", ".join(param.name() for param in params)
        raise ValueError(
            f"{atom}: the {role} contains the Parameter {names}; a parametrized {role} is "
            f"not supported, pass its value (a NumPy array) instead."
        )
    if expr.variables() or not expr.is_constant():
        raise ValueError(f"{atom}: the {role} must be a constant, got {expr}.")
    if expr.ndim != 2:
        raise ValueError(f"{atom}: the {role} must be 2-D, got shape {expr.shape}.")
    if expr.size == 0:
        raise ValueError(f"{atom}: the {role} must not be empty, got shape {expr.shape}.")
    if expr.is_complex():
        raise ValueError(f"{atom}: the {role} must be real.")
    value = expr.value
    value = value.toarray() if sp.issparse(value) else np.asarray(value, dtype=float)
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{atom}: the {role} must be finite (it contains NaN or inf).")
    return value


class conv2d(AffAtom):
    """2-D convolution ``conv2d(kernel, X, mode)`` of a constant kernel with an expression.

    Parameters
    ----------
    kernel : array_like or constant Expression, shape (p, q)
        The real, finite kernel K (no Variables or Parameters).
    X : Expression, shape (m, n)
        The real image.
    mode : {"full", "same", "circular"}, default "full"
        ``"full"``: output (m + p - 1, n + q - 1), ``scipy.signal.convolve2d(X, K, "full")``;
        ``"same"``: output (m, n), ``scipy.signal.convolve2d(X, K, "same")``;
        ``"circular"``: output (m, n), periodic with the kernel center (p // 2, q // 2) at
        (0, 0): Y[i, j] = sum_{a, b} K[a, b] X[(i - a + p // 2) mod m, (j - b + q // 2) mod n].

    Notes
    -----
    The atom is affine in X; its sign is the product of the kernel's and X's signs, and it
    is nondecreasing (nonincreasing) in X when the kernel is nonnegative (nonpositive). Other
    solvers receive the assembled sparse matrix of :func:`conv2d_matrix` (p q m n nonzeros
    at most).
    """

    def __init__(self, kernel: Any, X: Any, mode: str = "full") -> None:
        self.mode = mode
        super().__init__(kernel, X)

    @property
    def kernel(self) -> np.ndarray:
        """The kernel K as a float64 array of shape (p, q)."""
        return _constant_matrix(self.args[0], "kernel", "conv2d")

    def validate_arguments(self) -> None:
        """Check the mode, that K is a constant real finite 2-D array and X a real 2-D one."""
        if not isinstance(self.mode, str) or self.mode not in MODES:
            raise ValueError(f"conv2d: unknown mode {self.mode!r}, expected one of {MODES}.")
        _constant_matrix(self.args[0], "kernel", "conv2d")
        image = self.args[1]
        if image.ndim != 2:
            raise ValueError(f"conv2d: X must be 2-D, got shape {image.shape}.")
        if image.size == 0:
            raise ValueError(f"conv2d: X must not be empty, got shape {image.shape}.")
        if image.is_complex():
            raise ValueError("conv2d: X must be real.")

    def get_data(self) -> list[str]:
        """The mode (the kernel is the first argument)."""
        return [self.mode]

    def shape_from_args(self) -> tuple[int, int]:
        """(m + p - 1, n + q - 1) for "full", (m, n) otherwise."""
        return conv2d_output_shape(self.args[0].shape, self.args[1].shape, self.mode)

    def sign_from_args(self) -> tuple[bool, bool]:
        """The sign of the product of the kernel and X."""
        return u.sign.mul_sign(self.args[0], self.args[1])

    def is_incr(self, idx: int) -> bool:
        """Nondecreasing when the kernel is nonnegative."""
        return self.args[0].is_nonneg()

    def is_decr(self, idx: int) -> bool:
        """Nonincreasing when the kernel is nonpositive."""
        return self.args[0].is_nonpos()

    def is_psd(self) -> bool:
        """A convolution of a PSD matrix need not be PSD."""
        return False

    def is_nsd(self) -> bool:
        """A convolution of an NSD matrix need not be NSD."""
        return False

    def numeric(self, values: list[np.ndarray]) -> np.ndarray:
        """The convolution of the kernel with the value of X (scipy.signal or real FFTs)."""
        image = np.asarray(values[1], dtype=float)
        if self.mode == "circular":
            return circular_convolve(self.kernel, image)
        return scipy.signal.convolve(image, self.kernel, mode=self.mode)

    def graph_implementation(
        self, arg_objs: list[lo.LinOp], shape: tuple[int, ...], data: Any = None
    ) -> tuple[lo.LinOp, list[Constraint]]:
        """reshape(A vec(X), shape) with A the sparse matrix of :func:`conv2d_matrix`."""
        image = self.args[1]
        matrix = conv2d_matrix(self.kernel, image.shape, self.mode)
        flat = lu.reshape(arg_objs[1], (image.size,))
        product = lu.mul_expr(
            lu.create_const(matrix, matrix.shape, sparse=True), flat, (matrix.shape[0],)
        )
        return lu.reshape(product, shape), []
