"""Real and imaginary parts of sampled 2-D Fourier coefficients (compressive MRI).

For a real image X of shape (m, n) and a boolean mask of the same shape,
F = np.fft.fft2(X, norm="ortho"), i.e.

    F[u, v] = (1 / sqrt(m n)) sum_{i, j} X[i, j] exp(-2 pi 1j (u i / m + v j / n)),

and with r, c = np.nonzero(mask) (row-major order, k = mask.sum() samples)

    fourier_sample(X, mask) = concatenate([F[r, c].real, F[r, c].imag])    (length 2 k).

Vectors are the column-major (order="F") flattenings of the images, as in CVXPY's ``vec``.
"""

from __future__ import annotations

from typing import Any

import cvxpy.lin_ops.lin_op as lo
import cvxpy.lin_ops.lin_utils as lu
import numpy as np
from cvxpy.atoms.affine.affine_atom import AffAtom
from cvxpy.constraints.constraint import Constraint
from cvxpy.expressions.expression import Expression


def _as_mask(mask: Any) -> np.ndarray:
    """A read-only boolean copy of a constant 2-D mask with at least one True entry.

    Boolean arrays are taken as they are; numeric ones must hold only zeros and ones.
    """
    if isinstance(mask, Expression):
        params = mask.parameters()
        if params:
            names = ", ".join(param.name() for param in params)
            raise ValueError(
                f"fourier_sample: the mask contains the Parameter {names}; a parametrized "
                "mask is not supported, pass a boolean NumPy array instead."
            )
        if mask.variables() or not mask.is_constant():
            raise ValueError(f"fourier_sample: the mask must be a constant, got {mask}.")
        mask = mask.value
    values = np.asarray(mask.toarray() if hasattr(mask, "toarray") else mask)
    if values.ndim != 2:
        raise ValueError(f"fourier_sample: the mask must be 2-D, got shape {values.shape}.")
    if values.dtype != bool:
        if not np.isin(values, (0, 1)).all():
            raise ValueError("fourier_sample: the mask must be boolean (or hold only 0 and 1).")
        values = values != 0
    if not values.any():
        raise ValueError("fourier_sample: the mask must select at least one frequency.")
    values = values.copy()
    values.flags.writeable = False
    return values


def fourier_sample_matrix(mask: np.ndarray) -> np.ndarray:
    """The dense real matrix A with fourier_sample(X, mask) = A vec(X), vec column-major.

    Row s < k (the s-th sample (r_s, c_s)) and column i + m j hold
    cos(theta) / sqrt(m n), row k + s holds -sin(theta) / sqrt(m n), with
    theta = 2 pi (r_s i / m + c_s j / n); the products r_s i and c_s j are reduced modulo m and
    n in integers before scaling, which keeps the phases accurate for large images.

    Parameters
    ----------
    mask : ndarray of bool, shape (m, n)

    Returns
    -------
    ndarray, shape (2 k, m n)
        Dense: 16 k m n bytes, meant for moderate image sizes.
    """
    m, n = mask.shape
    r, c = np.nonzero(mask)
    col = np.arange(m * n)
    phase = 2 * np.pi * (np.outer(r, col % m) % m / m + np.outer(c, col // m) % n / n)
    return np.concatenate([np.cos(phase), -np.sin(phase)]) / np.sqrt(m * n)


class fourier_sample(AffAtom):
    """Sampled unitary 2-D DFT coefficients ``fourier_sample(X, mask)``, split into Re and Im.

    Parameters
    ----------
    X : Expression, shape (m, n)
        The real image.
    mask : array_like of bool, shape (m, n)
        The sampled frequencies (at least one True); constant, no Variables or Parameters.

    Returns
    -------
    Expression, shape (2 k,)
        [Re F[r, c]; Im F[r, c]] with F = np.fft.fft2(X, norm="ortho"),
        r, c = np.nonzero(mask) and k = mask.sum().

    Notes
    -----
    The atom is affine, of unknown sign and neither nondecreasing nor nonincreasing. Other
    solvers receive the dense (2 k, m n) matrix of :func:`fourier_sample_matrix`, which costs
    16 k m n bytes: this is for portability at moderate sizes (e.g. a 64 x 64 image fully
    sampled takes 256 MiB); cvxprox's own reductions keep the map as an FFT operator.
    """

    def __init__(self, X: Any, mask: Any) -> None:
        self.mask = _as_mask(mask)
        super().__init__(X)

    def validate_arguments(self) -> None:
        """Check that X is a real 2-D expression of the mask's shape."""
        image = self.args[0]
        if image.ndim != 2:
            raise ValueError(f"fourier_sample: X must be 2-D, got shape {image.shape}.")
        if image.is_complex():
            raise ValueError("fourier_sample: X must be real.")
        if image.shape != self.mask.shape:
            raise ValueError(
                f"fourier_sample: the mask shape {self.mask.shape} does not match the shape "
                f"{image.shape} of X."
            )

    def get_data(self) -> list[np.ndarray]:
        """The mask."""
        return [self.mask]

    def name(self) -> str:
        """fourier_sample(X, mask m x n with k samples)."""
        m, n = self.mask.shape
        samples = int(self.mask.sum())
        return f"fourier_sample({self.args[0].name()}, mask {m}x{n} with {samples} samples)"

    def shape_from_args(self) -> tuple[int]:
        """(2 k,) with k the number of sampled frequencies."""
        return (2 * int(self.mask.sum()),)

    def sign_from_args(self) -> tuple[bool, bool]:
        """Unknown sign."""
        return (False, False)

    def is_incr(self, idx: int) -> bool:
        """Not monotone."""
        return False

    def is_decr(self, idx: int) -> bool:
        """Not monotone."""
        return False

    def numeric(self, values: list[np.ndarray]) -> np.ndarray:
        """[Re F[r, c]; Im F[r, c]] of F = np.fft.fft2(X, norm="ortho")."""
        spectrum = np.fft.fft2(np.asarray(values[0], dtype=float), norm="ortho")[self.mask]
        return np.concatenate([spectrum.real, spectrum.imag])

    def graph_implementation(
        self, arg_objs: list[lo.LinOp], shape: tuple[int, ...], data: Any = None
    ) -> tuple[lo.LinOp, list[Constraint]]:
        """A vec(X) with A the dense matrix of :func:`fourier_sample_matrix`."""
        matrix = fourier_sample_matrix(self.mask)
        flat = lu.reshape(arg_objs[0], (self.args[0].size,))
        return lu.mul_expr(lu.create_const(matrix, matrix.shape), flat, shape), []
