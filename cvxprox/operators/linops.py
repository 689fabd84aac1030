"""Matrix-free linear operators and the structure of their Gram matrices.

A ``LinOp`` is a linear map A: R^n -> R^m given by its products ``matvec`` (x -> A x) and
``rmatvec`` (y -> A'y). Vectors follow CVXPY's ``vec``: an array X of shape s is the vector
``X.flatten(order="F")``. Internally arrays are handled transposed: the F-flattening of X is
the C-flattening of X.T (shape ``s[::-1]``), so vectors reshape without copies and the real
axis of ``rfftn`` (the last one) is contiguous in memory.

Besides its products every operator reports

- ``norm_bound()``: an upper bound on ||A||_2 (cached),
- ``gram()``: A'A as a ``Gram`` when it is diagonal in the standard, Fourier or cosine basis,
- ``gram_diagonal()``: diag(A'A) when it is cheap to compute exactly,
- ``gram_matvec(x)``: A'A x (``fast_gram`` when it costs about one product: ``Convolve1D``),
- ``to_sparse()``: the assembled matrix (for tests and fallbacks),
- ``describe()``: a short name such as ``"conv2d(5x5, 192x192, circular)"``.

How ``norm_bound`` is obtained:

- exact: ``Identity``, ``Diagonal``, ``ScalarMultiple`` (|a| times the operator's bound),
  ``Gather``, ``FourierSample``, circular ``Conv2D``, ``FiniteDiff`` with k = 1, a
  ``MatrixOp`` or ``TVDifferences`` with at most ``_EXACT_NORM_SIZE`` rows or columns
  (by an SVD), and every
  ``Compose``, ``Sum`` and ``VStack`` whose Gram is known (square root of its largest
  eigenvalue);
- guaranteed upper bounds: full and same convolutions (the operator is a block of the
  circulant on the padded FFT grid, so ||A|| <= max |FFT of the kernel| on that grid; also
  ||A|| <= ||A||_F), ``FiniteDiff`` with k >= 2 (product of the first differences' norms),
  and otherwise ``Compose`` (product of the bounds), ``Sum`` (sum) and ``VStack`` (root sum
  of squares);
- an estimate: a larger ``MatrixOp`` or ``TVDifferences`` gets ``estimate_norm`` (a
  converged power iteration times a safety factor), capped by the guaranteed
  min(sqrt(||A||_1 ||A||_inf), ||A||_F).

A ``Gram`` is a symmetric positive semidefinite H = Q' diag(eig) Q, with Q the identity
(``DiagonalGram``), the unitary n-D DFT (``FourierGram``) or the orthonormal n-D DCT-II
(``CosineGram``). It applies H and H^{-1} in O(n log n) and adds to other Grams when the
sum keeps the structure.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.fft as sfft
import scipy.sparse as sp

__all__ = [
    "LinOp",
    "Identity",
    "Diagonal",
    "ScalarMultiple",
    "Gather",
    "MatrixOp",
    "MatrixRows",
    "Compose",
    "Sum",
    "VStack",
    "BlockDiagonal",
    "Convolve1D",
    "Conv2D",
    "FourierSample",
    "FiniteDiff",
    "Gram",
    "DiagonalGram",
    "FourierGram",
    "CosineGram",
    "estimate_norm",
    "has_fft",
    "walk",
]

# A Gram is singular when its smallest eigenvalue is at most this fraction of its largest.
_SINGULAR_RTOL = 1e-14
# MatrixOp: the exact ||A||_2 (an SVD) when min(m, n) and m n are at most these.
_EXACT_NORM_SIZE = 500
_EXACT_NORM_ENTRIES = 4_000_000
# Relative tolerance of the Hermitian symmetry eig[k] = eig[-k] of a FourierGram.
_SYMMETRY_RTOL = 1e-10
_CONV_MODES = ("full", "same", "circular")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _vector(x: Any, size: int, owner: object, method: str) -> np.ndarray:
    """``x`` as a float64 vector of shape (size,); ValueError naming ``owner.method`` if not."""
    x = np.asarray(x)
    if x.shape != (size,):
        raise ValueError(f"{owner!r}.{method}: expected a vector of shape ({size},), got {x.shape}")
    if np.iscomplexobj(x):
        raise ValueError(f"{owner!r}.{method}: expected a real vector, got dtype {x.dtype}")
    return x.astype(np.float64, copy=False)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _array_shape(shape: Any, name: str) -> tuple[int, ...]:
    """A shape (an int or a sequence of positive ints) as a tuple."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not dims:
        raise ValueError(f"{name} must have at least one dimension")
    return tuple(_positive_int(d, f"{name} entry") for d in dims)


def _real_array(values: Any, name: str) -> np.ndarray:
    """A finite float64 array with at least one entry."""
    arr = np.asarray(values)
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _reflect(a: np.ndarray) -> np.ndarray:
    """The array b with b[i] = a[-i mod shape] (the index negated on every axis)."""
    for axis in range(a.ndim):
        a = np.roll(np.flip(a, axis), 1, axis)
    return a


def _scale_factor(a: Any) -> float:
    a = float(a)
    if not (math.isfinite(a) and a >= 0):
        raise ValueError(f"a Gram can only be scaled by a finite a >= 0, got {a}")
    return a


def _cosine_squares(a: np.ndarray, axis: int) -> np.ndarray:
    """out[i] = sum_k a[k] C[k, i]^2 along ``axis``, C the orthonormal DCT-II matrix.

    With N the length, C[0, i]^2 = 1/N and C[k, i]^2 = (1 + cos(pi k (2i + 1) / N)) / N for
    k >= 1, so out[i] = (sum(a) - a[0] + Re G[2i + 1]) / N with G the 2N-point DFT of a.
    """
    N = a.shape[axis]
    G = sfft.fft(a, 2 * N, axis=axis).real
    odd = np.take(G, np.arange(1, 2 * N, 2), axis=axis)
    first = np.take(a, [0], axis=axis)
    return (a.sum(axis=axis, keepdims=True) - first + odd) / N


# --------------------------------------------------------------------------------------------
# Gram structures
# --------------------------------------------------------------------------------------------


class Gram(ABC):
    """A symmetric positive semidefinite n x n operator H = Q' diag(eig) Q, Q orthogonal.

    Attributes
    ----------
    n : int
        The size of H.
    """

    n: int

    def __init__(self, values: np.ndarray) -> None:
        self._lo = float(np.min(values))
        self._hi = float(np.max(values))
        if self._lo < 0:
            raise ValueError(f"{type(self).__name__}: negative eigenvalue {self._lo}")

    @abstractmethod
    def eigenvalues(self) -> np.ndarray:
        """The eigenvalues of H (``d`` of a DiagonalGram, ``eig`` of the others)."""

    @abstractmethod
    def scaled(self, a: float) -> Gram:
        """a H for a finite a >= 0."""

    @abstractmethod
    def diagonal(self) -> np.ndarray:
        """diag(H), shape (n,)."""

    @abstractmethod
    def _matvec(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _solve(self, rhs: np.ndarray) -> np.ndarray: ...

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """H x, shape (n,)."""
        return self._matvec(_vector(x, self.n, self, "matvec"))

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """H^{-1} rhs, shape (n,).

        Raises
        ------
        numpy.linalg.LinAlgError
            When H is singular: its smallest eigenvalue is at most ``_SINGULAR_RTOL`` times
            its largest.
        """
        rhs = _vector(rhs, self.n, self, "solve")
        if not self._lo > _SINGULAR_RTOL * self._hi:
            raise np.linalg.LinAlgError(
                f"{self!r} is singular (eigenvalues in [{self._lo:.3g}, {self._hi:.3g}])"
            )
        return self._solve(rhs)

    def max_eigenvalue(self) -> float:
        """The largest eigenvalue ||H||_2."""
        return self._hi

    def _scalar(self) -> float | None:
        """c when H = c I, else None."""
        return self._hi if self._lo == self._hi else None

    def __add__(self, other: object) -> Gram | None:
        """The Gram of H + other when it keeps a structure, else None.

        diagonal + diagonal is diagonal; c I + a Fourier (cosine) Gram is that Gram with
        eig + c; two Fourier (cosine) Grams over the same array shape add their eigenvalues.
        """
        if not isinstance(other, Gram):
            return NotImplemented
        if other.n != self.n:
            raise ValueError(f"cannot add {self!r} and {other!r}: sizes {self.n} and {other.n}")
        if isinstance(self, DiagonalGram) and isinstance(other, DiagonalGram):
            return DiagonalGram(self.d + other.d)
        for a, b in ((self, other), (other, self)):
            c = a._scalar()
            if c is not None and isinstance(b, _SpectralGram):
                return type(b)(b.eig + c, b.shape)
        if (
            isinstance(self, _SpectralGram)
            and type(self) is type(other)
            and self.shape == other.shape
        ):
            return type(self)(self.eig + other.eig, self.shape)
        return None


class DiagonalGram(Gram):
    """H = diag(d).

    Parameters
    ----------
    d : ndarray, shape (n,), or float
        The diagonal, >= 0; a scalar c means c I and needs ``n``.
    n : int, optional
        The size (required for a scalar d).
    """

    def __init__(self, d: np.ndarray | float, n: int | None = None) -> None:
        if np.ndim(d) == 0:
            if n is None:
                raise ValueError("DiagonalGram: a scalar diagonal needs the size n")
            d = np.full(_positive_int(n, "DiagonalGram n"), float(d))
        d = _real_array(d, "DiagonalGram d")
        if d.ndim != 1 or (n is not None and d.shape != (n,)):
            raise ValueError(f"DiagonalGram: d must have shape ({n or 'n'},), got {d.shape}")
        self.d = d
        self.n = d.shape[0]
        super().__init__(d)

    def eigenvalues(self) -> np.ndarray:
        return self.d

    def scaled(self, a: float) -> DiagonalGram:
        return DiagonalGram(_scale_factor(a) * self.d)

    def diagonal(self) -> np.ndarray:
        return self.d.copy()

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self.d * x

    def _solve(self, rhs: np.ndarray) -> np.ndarray:
        return rhs / self.d

    def __repr__(self) -> str:
        c = self._scalar()
        return f"DiagonalGram(n={self.n}" + ("" if c is None else f", {c:g} I") + ")"


class _SpectralGram(Gram):
    """H = Q' diag(eig) Q with Q a fast separable orthogonal transform over an array."""

    def __init__(self, eig: np.ndarray, shape: Sequence[int]) -> None:
        name = type(self).__name__
        self.shape = _array_shape(shape, f"{name} shape")
        eig = _real_array(eig, f"{name} eig")
        if eig.shape != self.shape:
            raise ValueError(f"{name}: eig has shape {eig.shape}, expected {self.shape}")
        self.eig = eig
        self.n = eig.size
        super().__init__(eig)
        self._multiplier = self._transposed_multiplier(eig)
        self._inverse: np.ndarray | None = None

    @abstractmethod
    def _transposed_multiplier(self, eig: np.ndarray) -> np.ndarray:
        """The eigenvalues laid out for ``_apply`` (on the transposed array)."""

    @abstractmethod
    def _apply(self, x: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
        """Q' diag(multiplier) Q x."""

    def eigenvalues(self) -> np.ndarray:
        return self.eig

    def scaled(self, a: float) -> _SpectralGram:
        return type(self)(_scale_factor(a) * self.eig, self.shape)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._apply(x, self._multiplier)

    def _solve(self, rhs: np.ndarray) -> np.ndarray:
        if self._inverse is None:
            self._inverse = 1.0 / self._multiplier
        return self._apply(rhs, self._inverse)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({'x'.join(map(str, self.shape))})"


class FourierGram(_SpectralGram):
    """H = F^{-1} diag(eig) F, F the unitary n-D DFT over an array of ``shape``.

    The vector x is the F-flattening of that array. eig (real, >= 0, shape ``shape``) must
    satisfy eig[k] = eig[-k] (indices modulo the shape) so that H maps real to real vectors.
    diag(H) = mean(eig).
    """

    def __init__(self, eig: np.ndarray, shape: Sequence[int]) -> None:
        super().__init__(eig, shape)
        tol = _SYMMETRY_RTOL * self._hi
        if not np.allclose(self.eig, _reflect(self.eig), rtol=0.0, atol=tol):
            raise ValueError("FourierGram: eig must satisfy eig[k] = eig[-k]")

    def _transposed_multiplier(self, eig: np.ndarray) -> np.ndarray:
        half = self.shape[0] // 2 + 1
        return np.ascontiguousarray(eig.T[..., :half])

    def _apply(self, x: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
        xt = x.reshape(self.shape[::-1])
        return sfft.irfftn(multiplier * sfft.rfftn(xt), s=xt.shape).ravel()

    def diagonal(self) -> np.ndarray:
        return np.full(self.n, float(np.mean(self.eig)))


class CosineGram(_SpectralGram):
    """H = C' diag(eig) C, C the orthonormal n-D DCT-II (``scipy.fft.dctn(norm="ortho")``).

    The vector x is the F-flattening of an array of ``shape``; eig is real, >= 0, of shape
    ``shape``. diag(H)[i] = sum_k eig[k] prod_d C_d[k_d, i_d]^2.
    """

    def _transposed_multiplier(self, eig: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(eig.T)

    def _apply(self, x: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
        xt = x.reshape(self.shape[::-1])
        return sfft.idctn(multiplier * sfft.dctn(xt, norm="ortho"), norm="ortho").ravel()

    def diagonal(self) -> np.ndarray:
        out = self.eig
        for axis in range(out.ndim):
            out = _cosine_squares(out, axis)
        return out.ravel(order="F")


# --------------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------------


class LinOp(ABC):
    """A linear map A: R^n -> R^m.

    Attributes
    ----------
    shape : tuple of int
        (m, n).
    """

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self._norm: float | None = None
        self._gram: Gram | None = None
        self._gram_known = False

    @abstractmethod
    def _matvec(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _rmatvec(self, y: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _norm_bound(self) -> float: ...

    @abstractmethod
    def to_sparse(self) -> sp.csr_array:
        """The assembled matrix, shape (m, n)."""

    @abstractmethod
    def describe(self) -> str:
        """A short name, e.g. ``"conv2d(5x5, 192x192, circular)"``."""

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """A x, shape (m,), for x of shape (n,)."""
        return self._matvec(_vector(x, self.shape[1], self, "matvec"))

    def rmatvec(self, y: np.ndarray) -> np.ndarray:
        """A'y, shape (n,), for y of shape (m,)."""
        return self._rmatvec(_vector(y, self.shape[0], self, "rmatvec"))

    #: Whether ``gram_matvec`` costs about one product (not a product with A and A').
    fast_gram: ClassVar[bool] = False

    def gram_matvec(self, x: np.ndarray) -> np.ndarray:
        """A'A x, shape (n,), for x of shape (n,)."""
        return self.rmatvec(self.matvec(x))

    def on(self, backend: Any) -> LinOp | DeviceOp:
        """The operator with products on ``backend``'s arrays (``cvxprox.backend``): itself
        on NumPy, else a ``DeviceOp`` whose data were moved to the device once.

        Raises ValueError naming the operator when it has no device products yet."""
        if backend.name == "numpy":
            return self
        products = self._device(backend)
        if products is None:
            raise ValueError(
                f"the operator {self.describe()} has no products on {backend.name} arrays yet; "
                "solve with backend='numpy'"
            )
        return DeviceOp(self, *products)

    def _device(self, backend: Any) -> tuple[Products, Products] | None:
        """(matvec, rmatvec) on ``backend``'s arrays, or None when not available."""
        return None

    def norm_bound(self) -> float:
        """An upper bound on ||A||_2 (see the module docstring for its kind); cached."""
        if self._norm is None:
            self._norm = float(self._norm_bound())
        return self._norm

    def gram(self) -> Gram | None:
        """A'A when it is diagonal, FFT-diagonal or DCT-diagonal, else None; cached."""
        if not self._gram_known:
            self._gram = self._make_gram()
            self._gram_known = True
        return self._gram

    def gram_diagonal(self) -> np.ndarray | None:
        """diag(A'A), shape (n,), when cheap to compute exactly, else None."""
        gram = self.gram()
        return None if gram is None else gram.diagonal()

    def _make_gram(self) -> Gram | None:
        return None

    def _elementwise(self) -> np.ndarray | None:
        """d with A = diag(d) when A is elementwise, else None."""
        return None

    def _gram_norm(self) -> float | None:
        """||A||_2 = sqrt(||A'A||_2) when the Gram is known, else None."""
        gram = self.gram()
        return None if gram is None else math.sqrt(gram.max_eigenvalue())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()} ({self.shape[0]}x{self.shape[1]})>"


Products = Callable[[Any], Any]


class DeviceOp:
    """A LinOp's products on a backend's arrays (``LinOp.on``): ``matvec`` (n,) -> (m,) and
    ``rmatvec`` (m,) -> (n,) take and return device vectors; ``op`` is the host operator.
    """

    def __init__(self, op: LinOp, matvec: Products, rmatvec: Products) -> None:
        self.op, self.shape = op, op.shape
        self.matvec, self.rmatvec = matvec, rmatvec

    fast_gram = False

    def gram_matvec(self, x: Any) -> Any:
        """A'A x: the two products."""
        return self.rmatvec(self.matvec(x))

    def norm_bound(self) -> float:
        """The host operator's bound on ||A||_2."""
        return self.op.norm_bound()

    def describe(self) -> str:
        return self.op.describe()


def _csr_products(matrix: sp.sparray | sp.spmatrix, backend: Any) -> tuple[Products, Products]:
    """x -> M x and y -> M'y with M and M' as device CSR matrices (``Backend.csr``)."""
    M, Mt = backend.csr(matrix), backend.csr(sp.csr_array(matrix).T)
    return (lambda x: M @ x), (lambda y: Mt @ y)


def _check_op(op: Any, name: str) -> LinOp:
    if not isinstance(op, LinOp):
        raise TypeError(f"{name} must be a LinOp, got {type(op).__name__}")
    return op


def _gram_scalar(op: LinOp) -> float | None:
    """c when A'A = c I, else None."""
    gram = op.gram()
    return None if gram is None else gram._scalar()


class Identity(LinOp):
    """x -> x on R^n. A'A = I, ||A|| = 1."""

    def __init__(self, n: int) -> None:
        super().__init__((_positive_int(n, "Identity n"),) * 2)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return x.copy()

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        return y.copy()

    def _norm_bound(self) -> float:
        return 1.0

    def _make_gram(self) -> Gram:
        return DiagonalGram(1.0, self.shape[1])

    def _elementwise(self) -> np.ndarray:
        return np.ones(self.shape[1])

    def to_sparse(self) -> sp.csr_array:
        return sp.eye_array(self.shape[1], format="csr")

    def describe(self) -> str:
        return f"identity({self.shape[1]})"

    def _device(self, backend: Any) -> tuple[Products, Products]:
        return (lambda x: x), (lambda y: y)


class Diagonal(LinOp):
    """x -> d * x (elementwise), d of shape (n,). A'A = diag(d^2), ||A|| = max |d|."""

    def __init__(self, d: np.ndarray) -> None:
        d = _real_array(d, "Diagonal d")
        if d.ndim != 1:
            raise ValueError(f"Diagonal: d must be 1-D, got shape {d.shape}")
        self.d = d
        super().__init__((d.size, d.size))

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self.d * x

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        return self.d * y

    def _norm_bound(self) -> float:
        return float(np.max(np.abs(self.d)))

    def _make_gram(self) -> Gram:
        return DiagonalGram(self.d**2)

    def _elementwise(self) -> np.ndarray:
        return self.d

    def to_sparse(self) -> sp.csr_array:
        return sp.diags_array(self.d, format="csr")

    def describe(self) -> str:
        return f"diag({self.d.size})"

    def _device(self, backend: Any) -> tuple[Products, Products]:
        d = backend.asarray(self.d)
        return (lambda x: d * x), (lambda y: d * y)


class ScalarMultiple(LinOp):
    """x -> a op(x). A'A = a^2 op'op, ||A|| <= |a| ||op||.

    Attributes
    ----------
    scale : float
        a.
    op : LinOp
    """

    def __init__(self, a: float, op: LinOp) -> None:
        self.scale = float(a)
        if not math.isfinite(self.scale):
            raise ValueError(f"ScalarMultiple: the scale must be finite, got {a}")
        self.op = _check_op(op, "ScalarMultiple op")
        super().__init__(op.shape)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self.scale * self.op.matvec(x)

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        return self.scale * self.op.rmatvec(y)

    def _norm_bound(self) -> float:
        return abs(self.scale) * self.op.norm_bound()

    def _make_gram(self) -> Gram | None:
        gram = self.op.gram()
        return None if gram is None else gram.scaled(self.scale**2)

    def gram_diagonal(self) -> np.ndarray | None:
        diag = self.op.gram_diagonal()
        return None if diag is None else self.scale**2 * diag

    def _elementwise(self) -> np.ndarray | None:
        d = self.op._elementwise()
        return None if d is None else self.scale * d

    def to_sparse(self) -> sp.csr_array:
        inner = self.op.to_sparse()
        return sp.csr_array(
            (self.scale * inner.data, inner.indices, inner.indptr), shape=self.shape
        )

    def describe(self) -> str:
        return f"{self.scale:g}*{self.op.describe()}"

    def _device(self, backend: Any) -> tuple[Products, Products] | None:
        inner = self.op._device(backend)
        if inner is None:
            return None
        a, (matvec, rmatvec) = self.scale, inner
        return (lambda x: a * matvec(x)), (lambda y: a * rmatvec(y))


class Gather(LinOp):
    """x -> x[index], index of shape (m,) with entries in [0, n), repeats allowed.

    The adjoint scatter-adds: (A'y)_j = sum_{r : index[r] = j} y_r. A'A = diag(counts) with
    counts[j] the number of times j occurs in index, so ||A|| = sqrt(max counts).

    Attributes
    ----------
    index : ndarray of intp, shape (m,)
    counts : ndarray of intp, shape (n,)
    unique : bool
        Whether no entry of index repeats.
    """

    def __init__(self, index: np.ndarray, n: int) -> None:
        n = _positive_int(n, "Gather n")
        index = np.asarray(index)
        if index.ndim != 1:
            raise ValueError(f"Gather: index must be 1-D, got shape {index.shape}")
        if index.size and not np.issubdtype(index.dtype, np.integer):
            raise ValueError(f"Gather: index must hold integers, got dtype {index.dtype}")
        index = np.asarray(index, dtype=np.intp)  # no copy when it is one already
        if index.size and (index.min() < 0 or index.max() >= n):
            raise ValueError(f"Gather: index entries must lie in [0, {n})")
        self.index = index
        self.counts = np.bincount(index, minlength=n)
        self.unique = bool(self.counts.max() <= 1)
        super().__init__((index.size, n))

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return x[self.index]

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        return np.bincount(self.index, weights=y, minlength=self.shape[1])

    def _norm_bound(self) -> float:
        return math.sqrt(float(self.counts.max()))

    def _make_gram(self) -> Gram:
        return DiagonalGram(self.counts.astype(np.float64))

    def to_sparse(self) -> sp.csr_array:
        m, n = self.shape
        return sp.csr_array((np.ones(m), self.index, np.arange(m + 1)), shape=(m, n))

    def describe(self) -> str:
        return f"gather({self.shape[0]} of {self.shape[1]})"

    def _device(self, backend: Any) -> tuple[Products, Products]:
        return _csr_products(self.to_sparse(), backend)


class MatrixOp(LinOp):
    """x -> M x for a dense ndarray or scipy sparse matrix M (stored as a CSR array).

    A sparse M's rmatvec multiplies by M' stored as a CSR array of its own, built on the
    first call (SciPy's M.T @ y builds a CSC view of M at every call and scatters).

    norm_bound: ||M||_2 by an SVD when min(m, n) <= ``_EXACT_NORM_SIZE`` and
    m n <= ``_EXACT_NORM_ENTRIES``; otherwise ``estimate_norm`` capped by the guaranteed
    min(sqrt(||M||_1 ||M||_inf), ||M||_F). diag(A'A) = the squared column norms.

    Attributes
    ----------
    matrix : ndarray or scipy.sparse.csr_array, shape (m, n)
    """

    def __init__(self, M: np.ndarray | sp.sparray | sp.spmatrix) -> None:
        if sp.issparse(M):
            matrix = sp.csr_array(M, dtype=np.float64)
            matrix.sum_duplicates()
            values = matrix.data
        else:
            matrix = np.asarray(M)
            if np.iscomplexobj(matrix):
                raise ValueError(f"MatrixOp: M must be real, got dtype {matrix.dtype}")
            matrix = matrix.astype(np.float64)
            values = matrix
        if matrix.ndim != 2:
            raise ValueError(f"MatrixOp: M must be 2-D, got shape {matrix.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError("MatrixOp: M contains NaN or inf")
        self._transpose: sp.csr_array | None = None
        self.matrix = matrix
        super().__init__(matrix.shape)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self.matrix @ x

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        matrix = self.matrix
        if isinstance(matrix, np.ndarray):
            return matrix.T @ y
        if self._transpose is None:
            self._transpose = sp.csr_array(matrix.T)
        return self._transpose @ y

    def _norm_bound(self) -> float:
        m, n = self.shape
        if m == 0 or n == 0:
            return 0.0
        dense = isinstance(self.matrix, np.ndarray)
        if min(m, n) <= _EXACT_NORM_SIZE and m * n <= _EXACT_NORM_ENTRIES:
            return float(np.linalg.norm(self.matrix if dense else self.matrix.toarray(), 2))
        absolute = abs(self.matrix)
        one = float(np.max(absolute.sum(axis=0)))
        inf = float(np.max(absolute.sum(axis=1)))
        fro = float(np.linalg.norm(self.matrix if dense else self.matrix.data))
        return min(math.sqrt(one * inf), fro, estimate_norm(self))

    def gram_diagonal(self) -> np.ndarray:
        if isinstance(self.matrix, np.ndarray):
            return np.einsum("ij,ij->j", self.matrix, self.matrix)
        # Squares summed by column index in one pass (``power(2).sum(axis=0)`` copies the
        # matrix and sums through a product: 155 ms against 23 ms on cp.tv's 4M entries).
        M = sp.csr_array(self.matrix)
        squares = np.square(M.data, dtype=np.float64)
        return np.bincount(M.indices, weights=squares, minlength=M.shape[1])

    def to_sparse(self) -> sp.csr_array:
        if not isinstance(self.matrix, np.ndarray):
            return sp.csr_array(self.matrix, copy=True)
        # The nonzeros of a dense matrix row by row (np.nonzero's order).
        rows, cols = np.nonzero(self.matrix)
        indptr = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=self.shape[0]))))
        return sp.csr_array((self.matrix[rows, cols], cols, indptr), shape=self.shape)

    def describe(self) -> str:
        m, n = self.shape
        if isinstance(self.matrix, np.ndarray):
            return f"matrix({m}x{n}, dense)"
        return f"matrix({m}x{n}, nnz={self.matrix.nnz})"

    def _device(self, backend: Any) -> tuple[Products, Products]:
        if not isinstance(self.matrix, np.ndarray):
            return _csr_products(self.matrix, backend)
        M = backend.asarray(self.matrix)
        return (lambda x: M @ x), (lambda y: y @ M)


class MatrixRows(MatrixOp):
    """x -> A[rows] x: a block of consecutive rows of a stacked sparse matrix A.

    The terms of a program built from one stacked matrix (CVXPY's cone form) are its row
    blocks; the block is sliced from A on first use (``matrix``), so a method that works
    on A itself never pays for the slices.

    Parameters
    ----------
    stacked : scipy.sparse array, shape (M, n)
    rows : slice
        Consecutive rows ``rows.start:rows.stop`` of ``stacked``.
    """

    def __init__(self, stacked: sp.sparray, rows: slice) -> None:
        LinOp.__init__(self, (rows.stop - rows.start, stacked.shape[1]))
        self._transpose = None
        self._stacked = stacked
        self._rows = rows
        self._block: sp.csr_array | None = None

    @property
    def matrix(self) -> sp.csr_array:  # type: ignore[override]
        """A[rows] as a CSR array, shape (m, n)."""
        if self._block is None:
            block = sp.csr_array(self._stacked[self._rows], dtype=np.float64)
            block.sum_duplicates()
            self._block = block
        return self._block

    def describe(self) -> str:
        m, n = self._stacked.shape
        return f"rows {self._rows.start}:{self._rows.stop} of matrix({m}x{n})"


class Compose(LinOp):
    """x -> outer(inner(x)), shape (outer.m, inner.n).

    A'A = inner' (outer'outer) inner. Its Gram is known when A is elementwise, when inner is
    the identity (outer's Gram), when outer'outer = c I (c times inner's Gram), and after
    pulling the scales of ScalarMultiple factors out (a^2 times the rest's Gram).
    norm_bound: exact from the Gram when known, else ||outer|| ||inner||.

    Attributes
    ----------
    outer, inner : LinOp
    """

    def __init__(self, outer: LinOp, inner: LinOp) -> None:
        self.outer = _check_op(outer, "Compose outer")
        self.inner = _check_op(inner, "Compose inner")
        if outer.shape[1] != inner.shape[0]:
            raise ValueError(
                f"Compose: {outer!r} takes {outer.shape[1]} entries, "
                f"{inner!r} gives {inner.shape[0]}"
            )
        super().__init__((outer.shape[0], inner.shape[1]))

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self.outer.matvec(self.inner.matvec(x))

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        return self.inner.rmatvec(self.outer.rmatvec(y))

    def _norm_bound(self) -> float:
        exact = self._gram_norm()
        if exact is not None:
            return exact
        return self.outer.norm_bound() * self.inner.norm_bound()

    def _unscaled(self) -> tuple[float, Compose] | None:
        """(a, B) with A = a B, B without ScalarMultiple factors, when A has one; else None."""
        outer, inner, a = self.outer, self.inner, 1.0
        if isinstance(outer, ScalarMultiple):
            a, outer = a * outer.scale, outer.op
        if isinstance(inner, ScalarMultiple):
            a, inner = a * inner.scale, inner.op
        if outer is self.outer and inner is self.inner:
            return None
        return a, Compose(outer, inner)

    def _make_gram(self) -> Gram | None:
        d = self._elementwise()
        if d is not None:
            return DiagonalGram(d**2)
        pulled = self._unscaled()
        if pulled is not None:
            a, rest = pulled
            gram = rest.gram()
            return None if gram is None else gram.scaled(a * a)
        if isinstance(self.inner, Identity):
            return self.outer.gram()
        c = _gram_scalar(self.outer)
        gram = self.inner.gram() if c is not None else None
        return None if gram is None else gram.scaled(c)

    def gram_diagonal(self) -> np.ndarray | None:
        """diag(A'A) from the Gram, or, with H = outer'outer: c diag(inner'inner) when
        H = c I, d^2 diag(H) when inner = diag(d), diag(H) scattered by a Gather inner with
        unique indices; None otherwise."""
        gram = self.gram()
        if gram is not None:
            return gram.diagonal()
        pulled = self._unscaled()
        if pulled is not None:
            a, rest = pulled
            diag = rest.gram_diagonal()
            return None if diag is None else a * a * diag
        if isinstance(self.inner, Identity):
            return self.outer.gram_diagonal()
        c = _gram_scalar(self.outer)
        if c is not None:
            diag = self.inner.gram_diagonal()
            return None if diag is None else c * diag
        d = self.inner._elementwise()
        unique_gather = isinstance(self.inner, Gather) and self.inner.unique
        if d is None and not unique_gather:
            return None
        outer_diag = self.outer.gram_diagonal()
        if outer_diag is None:
            return None
        if d is not None:
            return d**2 * outer_diag
        return np.bincount(self.inner.index, weights=outer_diag, minlength=self.shape[1])

    def _elementwise(self) -> np.ndarray | None:
        d_outer = self.outer._elementwise()
        d_inner = None if d_outer is None else self.inner._elementwise()
        return None if d_inner is None else d_outer * d_inner

    def to_sparse(self) -> sp.csr_array:
        """outer's matrix times inner's; a gather as either factor picks rows of inner's
        matrix or renames the columns of outer's (no sparse product)."""
        if isinstance(self.outer, Gather):
            return sp.csr_array(self.inner.to_sparse()[self.outer.index])
        if isinstance(self.inner, Gather):
            outer = self.outer.to_sparse()
            columns = self.inner.index[outer.indices]
            matrix = sp.csr_array((outer.data, columns, outer.indptr), shape=self.shape)
            if not self.inner.unique:
                matrix.sum_duplicates()
            return matrix
        return sp.csr_array(self.outer.to_sparse() @ self.inner.to_sparse())

    def describe(self) -> str:
        return f"{self.outer.describe()} o {self.inner.describe()}"

    def _device(self, backend: Any) -> tuple[Products, Products] | None:
        outer, inner = self.outer._device(backend), self.inner._device(backend)
        if outer is None or inner is None:
            return None
        return (lambda x: outer[0](inner[0](x))), (lambda y: inner[1](outer[1](y)))


class Sum(LinOp):
    """x -> sum_k op_k(x), the op_k of one shape.

    The Gram is known when every op_k is elementwise (diagonal). norm_bound: exact from the
    Gram when known, else sum_k ||op_k||.

    Attributes
    ----------
    ops : list of LinOp
    """

    def __init__(self, ops: Sequence[LinOp]) -> None:
        self.ops = [_check_op(op, "Sum term") for op in ops]
        if not self.ops:
            raise ValueError("Sum needs at least one operator")
        shapes = {op.shape for op in self.ops}
        if len(shapes) > 1:
            raise ValueError(f"Sum: operators of different shapes {sorted(shapes)}")
        super().__init__(self.ops[0].shape)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        out = self.ops[0].matvec(x)
        for op in self.ops[1:]:
            out += op.matvec(x)
        return out

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        out = self.ops[0].rmatvec(y)
        for op in self.ops[1:]:
            out += op.rmatvec(y)
        return out

    def _norm_bound(self) -> float:
        exact = self._gram_norm()
        if exact is not None:
            return exact
        return sum(op.norm_bound() for op in self.ops)

    def _make_gram(self) -> Gram | None:
        d = self._elementwise()
        return None if d is None else DiagonalGram(d**2)

    def _elementwise(self) -> np.ndarray | None:
        total = np.zeros(self.shape[1])
        for op in self.ops:
            d = op._elementwise()
            if d is None:
                return None
            total += d
        return total

    def to_sparse(self) -> sp.csr_array:
        total = self.ops[0].to_sparse()
        for op in self.ops[1:]:
            total = total + op.to_sparse()
        return sp.csr_array(total)

    def describe(self) -> str:
        return "(" + " + ".join(op.describe() for op in self.ops) + ")"

    def _device(self, backend: Any) -> tuple[Products, Products] | None:
        terms = [op._device(backend) for op in self.ops]
        if any(term is None for term in terms):
            return None

        def matvec(x: Any) -> Any:
            return sum((term[0](x) for term in terms[1:]), terms[0][0](x))

        def rmatvec(y: Any) -> Any:
            return sum((term[1](y) for term in terms[1:]), terms[0][1](y))

        return matvec, rmatvec


class VStack(LinOp):
    """x -> concatenate([op_k(x)]), the op_k with a common number of columns n.

    A'A = sum_k op_k'op_k: the Gram is the sum of the parts' Grams when they all exist and
    add (``Gram.__add__``), diag(A'A) the sum of the parts' diagonals. norm_bound: exact from
    the Gram when known, else sqrt(sum_k ||op_k||^2).

    Attributes
    ----------
    ops : list of LinOp
    """

    def __init__(self, ops: Sequence[LinOp]) -> None:
        self.ops = [_check_op(op, "VStack block") for op in ops]
        if not self.ops:
            raise ValueError("VStack needs at least one operator")
        columns = {op.shape[1] for op in self.ops}
        if len(columns) > 1:
            raise ValueError(f"VStack: operators with different column counts {sorted(columns)}")
        self._offsets = np.cumsum([0] + [op.shape[0] for op in self.ops])
        super().__init__((int(self._offsets[-1]), self.ops[0].shape[1]))

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([op.matvec(x) for op in self.ops])

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        out = np.zeros(self.shape[1])
        for op, start, stop in zip(self.ops, self._offsets[:-1], self._offsets[1:], strict=True):
            out += op.rmatvec(y[start:stop])
        return out

    def _norm_bound(self) -> float:
        exact = self._gram_norm()
        if exact is not None:
            return exact
        return math.sqrt(sum(op.norm_bound() ** 2 for op in self.ops))

    def _make_gram(self) -> Gram | None:
        total = self.ops[0].gram()
        for op in self.ops[1:]:
            gram = op.gram()
            if total is None or gram is None:
                return None
            total = total + gram
        return total

    def gram_diagonal(self) -> np.ndarray | None:
        total = np.zeros(self.shape[1])
        for op in self.ops:
            diag = op.gram_diagonal()
            if diag is None:
                return None
            total += diag
        return total

    def to_sparse(self) -> sp.csr_array:
        """The blocks' CSR arrays, their entries and row pointers concatenated."""
        blocks = [op.to_sparse() for op in self.ops]
        starts = np.cumsum([0] + [block.nnz for block in blocks[:-1]])
        indptr = np.concatenate(
            [[0]] + [block.indptr[1:] + start for block, start in zip(blocks, starts, strict=True)]
        )
        data = np.concatenate([block.data for block in blocks])
        indices = np.concatenate([block.indices for block in blocks])
        return sp.csr_array((data, indices, indptr), shape=self.shape)

    def describe(self) -> str:
        return "vstack(" + ", ".join(op.describe() for op in self.ops) + ")"

    def _device(self, backend: Any) -> tuple[Products, Products] | None:
        blocks = [op._device(backend) for op in self.ops]
        if any(block is None for block in blocks):
            return None
        xp, bounds = backend.xp, list(zip(self._offsets[:-1], self._offsets[1:], strict=True))

        def matvec(x: Any) -> Any:
            return xp.concat([block[0](x) for block in blocks])

        def rmatvec(y: Any) -> Any:
            parts = [
                block[1](y[start:stop]) for block, (start, stop) in zip(blocks, bounds, strict=True)
            ]
            out = parts[0]
            for part in parts[1:]:
                out = out + part
            return out

        return matvec, rmatvec


class BlockDiagonal(LinOp):
    """x -> concatenate([op_k(x_k)]) for x = concatenate([x_k]): diag(op_1, ..., op_K).

    The operator of a batch of programs stacked into one (``cvxprox.ir.batch``). Blocks that
    are all dense ``MatrixOp`` of one shape are kept as one (K, m, n) array and applied by
    one batched matrix product. A'A = diag(op_k'op_k): its Gram is known when every block's
    Gram is diagonal; ||A|| = max_k ||op_k|| (exact when the blocks' bounds are).

    Attributes
    ----------
    ops : list of LinOp
    """

    def __init__(self, ops: Sequence[LinOp]) -> None:
        self.ops = [_check_op(op, "BlockDiagonal block") for op in ops]
        if not self.ops:
            raise ValueError("BlockDiagonal needs at least one operator")
        self._rows = np.cumsum([0] + [op.shape[0] for op in self.ops])
        self._cols = np.cumsum([0] + [op.shape[1] for op in self.ops])
        shapes = {op.shape for op in self.ops}
        self._dense = None
        if len(shapes) == 1 and all(
            isinstance(op, MatrixOp) and isinstance(op.matrix, np.ndarray) for op in self.ops
        ):
            self._dense = np.stack([op.matrix for op in self.ops])
        super().__init__((int(self._rows[-1]), int(self._cols[-1])))

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        if self._dense is not None:
            k, _, n = self._dense.shape
            return np.matmul(self._dense, x.reshape(k, n, 1)).reshape(-1)
        return np.concatenate(
            [
                op.matvec(x[a:b])
                for op, a, b in zip(self.ops, self._cols[:-1], self._cols[1:], strict=True)
            ]
        )

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        if self._dense is not None:
            k, m, _ = self._dense.shape
            return np.matmul(y.reshape(k, 1, m), self._dense).reshape(-1)
        return np.concatenate(
            [
                op.rmatvec(y[a:b])
                for op, a, b in zip(self.ops, self._rows[:-1], self._rows[1:], strict=True)
            ]
        )

    def _norm_bound(self) -> float:
        return max(op.norm_bound() for op in self.ops)

    def _make_gram(self) -> Gram | None:
        grams = [op.gram() for op in self.ops]
        if not all(isinstance(g, DiagonalGram) for g in grams):
            return None
        return DiagonalGram(np.concatenate([g.d for g in grams]))

    def gram_diagonal(self) -> np.ndarray | None:
        if self._dense is not None:
            return np.einsum("kij,kij->kj", self._dense, self._dense).reshape(-1)
        diagonals = [op.gram_diagonal() for op in self.ops]
        return None if any(d is None for d in diagonals) else np.concatenate(diagonals)

    def _elementwise(self) -> np.ndarray | None:
        parts = [op._elementwise() for op in self.ops]
        return None if any(d is None for d in parts) else np.concatenate(parts)

    def to_sparse(self) -> sp.csr_array:
        return sp.csr_array(sp.block_diag([op.to_sparse() for op in self.ops], format="csr"))

    def describe(self) -> str:
        first = self.ops[0].describe()
        same = all(op.describe() == first for op in self.ops)
        return f"blockdiag({len(self.ops)} x {first})" if same else "blockdiag(...)"

    def _device(self, backend: Any) -> tuple[Products, Products] | None:
        blocks = [op._device(backend) for op in self.ops]
        if any(block is None for block in blocks):
            return None
        xp = backend.xp
        rows = list(zip(self._rows[:-1], self._rows[1:], strict=True))
        cols = list(zip(self._cols[:-1], self._cols[1:], strict=True))

        def matvec(x: Any) -> Any:
            return xp.concat([block[0](x[a:b]) for block, (a, b) in zip(blocks, cols, strict=True)])

        def rmatvec(y: Any) -> Any:
            return xp.concat([block[1](y[a:b]) for block, (a, b) in zip(blocks, rows, strict=True)])

        return matvec, rmatvec


class Convolve1D(LinOp):
    """x -> kernel * x, the full linear convolution (like ``cp.convolve(kernel, x)``).

    y[i] = sum_a kernel[a] x[i - a], shape (n + p - 1,) for a kernel of length p, computed by
    real FFTs of length L = next_fast_len(n + p - 1) with the kernel's transform precomputed.
    The operator is a block of the L-circulant, so ||A|| <= max |rfft(kernel, L)|; also
    ||A|| <= ||A||_F = sqrt(n) ||kernel||_2. diag(A'A) = ||kernel||^2.

    Attributes
    ----------
    kernel : ndarray, shape (p,)
    """

    fast_gram = True

    def __init__(self, kernel: np.ndarray, n: int) -> None:
        kernel = _real_array(kernel, "Convolve1D kernel")
        if kernel.ndim != 1:
            raise ValueError(f"Convolve1D: the kernel must be 1-D, got shape {kernel.shape}")
        n = _positive_int(n, "Convolve1D n")
        self.kernel = kernel
        out = n + kernel.size - 1
        self._length = sfft.next_fast_len(out, real=True)
        self._transform = sfft.rfft(kernel, self._length)
        self._adjoint_transform = np.conj(self._transform)
        self._gram_transform = np.abs(self._transform) ** 2
        super().__init__((out, n))

    def gram_matvec(self, x: np.ndarray) -> np.ndarray:
        """A'A x in one pair of real FFTs of length L: A x has no wrap-around at L, and
        A' reads it back without any either, so A'A is the L-circulant of |rfft(kernel)|^2
        cut to its first n rows and columns."""
        x = _vector(x, self.shape[1], self, "gram_matvec")
        L = self._length
        return sfft.irfft(self._gram_transform * sfft.rfft(x, L), L)[: self.shape[1]]

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        L = self._length
        return sfft.irfft(self._transform * sfft.rfft(x, L), L)[: self.shape[0]]

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        L = self._length
        return sfft.irfft(self._adjoint_transform * sfft.rfft(y, L), L)[: self.shape[1]]

    def _norm_bound(self) -> float:
        frobenius = math.sqrt(self.shape[1]) * float(np.linalg.norm(self.kernel))
        return min(float(np.max(np.abs(self._transform))), frobenius)

    def gram_diagonal(self) -> np.ndarray:
        return np.full(self.shape[1], float(self.kernel @ self.kernel))

    def to_sparse(self) -> sp.csr_array:
        n, p = self.shape[1], self.kernel.size
        cols = np.repeat(np.arange(n), p)
        rows = cols + np.tile(np.arange(p), n)
        data = np.tile(self.kernel, n)
        return sp.csr_array((data, (rows, cols)), shape=self.shape)

    def describe(self) -> str:
        return f"conv1d({self.kernel.size}, {self.shape[1]})"

    def _device(self, backend: Any) -> tuple[Products, Products]:
        """Real FFTs of length L by ``xp.fft`` with the kernel's transform on the device."""
        fft, L, (m, n) = backend.xp.fft, self._length, self.shape
        transform = fft.rfft(backend.asarray(self.kernel), n=L)
        adjoint = backend.xp.conj(transform)

        def matvec(x: Any) -> Any:
            return fft.irfft(transform * fft.rfft(x, n=L), n=L)[:m]

        def rmatvec(y: Any) -> Any:
            return fft.irfft(adjoint * fft.rfft(y, n=L), n=L)[:n]

        return matvec, rmatvec


class Conv2D(LinOp):
    """Y = K * X for an image X of ``image_shape`` (m, n) and a kernel K (p, q).

    Modes (x and y are F-flattenings):

    - ``"full"``: Y = scipy.signal.convolve2d(X, K, "full"), shape (m + p - 1, n + q - 1);
    - ``"same"``: the (m, n) block of "full" starting at ((p - 1) // 2, (q - 1) // 2),
      exactly scipy.signal.convolve2d(X, K, "same");
    - ``"circular"``: Y[i, j] = sum_{a, b} K[a, b] X[(i - a + p // 2) mod m,
      (j - b + q // 2) mod n], shape (m, n): the periodic convolution with the kernel's
      center (p // 2, q // 2) at index (0, 0).

    Products are real 2-D FFTs with the kernel's transform precomputed: on the exact (m, n)
    grid for "circular", else on a grid of at least the "full" size (next_fast_len), with the
    kernel shifted so that "same" is the leading block of the circular result.
    Circular: A'A = F^{-1} diag(|fft2(P)|^2) F (``FourierGram``) with P the kernel wrapped
    onto the (m, n) grid, ||A|| = max |fft2(P)|. Full and same: ||A|| <= max |FFT of the
    kernel| on the padded grid (A is a block of that circulant) and ||A|| <= ||A||_F; no
    Gram; diag(A'A) sums K^2 over the kernel entries that land inside the output.

    Attributes
    ----------
    kernel : ndarray, shape (p, q)
    image_shape : tuple of int
        (m, n).
    mode : str
    """

    def __init__(self, kernel: np.ndarray, shape: Sequence[int], mode: str = "full") -> None:
        kernel = _real_array(kernel, "Conv2D kernel")
        if kernel.ndim != 2:
            raise ValueError(f"Conv2D: the kernel must be 2-D, got shape {kernel.shape}")
        image_shape = _array_shape(shape, "Conv2D shape")
        if len(image_shape) != 2:
            raise ValueError(f"Conv2D: the image shape must be (m, n), got {image_shape}")
        if mode not in _CONV_MODES:
            raise ValueError(f"Conv2D: mode must be one of {_CONV_MODES}, got {mode!r}")
        self.kernel, self.image_shape, self.mode = kernel, image_shape, mode
        (m, n), (p, q) = image_shape, kernel.shape
        if mode == "circular":
            self.output_shape = (m, n)
            self._wrapped = self._wrapped_kernel()
            padded_t = self._wrapped.T
        else:
            self.output_shape = (m + p - 1, n + q - 1) if mode == "full" else (m, n)
            grid_t = (sfft.next_fast_len(n + q - 1), sfft.next_fast_len(m + p - 1, real=True))
            padded_t = np.zeros(grid_t)
            padded_t[:q, :p] = kernel.T
            if mode == "same":
                padded_t = np.roll(padded_t, (-((q - 1) // 2), -((p - 1) // 2)), axis=(0, 1))
        self._grid_t = padded_t.shape
        self._transform = sfft.rfft2(padded_t)
        self._adjoint_transform = np.conj(self._transform)
        super().__init__((self.output_shape[0] * self.output_shape[1], m * n))

    def _wrapped_kernel(self) -> np.ndarray:
        """P (m, n) with P[(a - p // 2) mod m, (b - q // 2) mod n] summing K[a, b]."""
        (m, n), (p, q) = self.image_shape, self.kernel.shape
        rows = (np.arange(p) - p // 2) % m
        cols = (np.arange(q) - q // 2) % n
        flat = (rows[:, None] * n + cols[None, :]).ravel()
        return np.bincount(flat, weights=self.kernel.ravel(), minlength=m * n).reshape(m, n)

    def _convolve(
        self,
        v: np.ndarray,
        shape: tuple[int, ...],
        transform: np.ndarray,
        out: tuple[int, ...],
    ) -> np.ndarray:
        """The F-flattened leading ``out`` block of the circular convolution on the grid of
        v (an F-flattened array of ``shape``) with the kernel of ``transform``."""
        vt = v.reshape(shape[::-1])
        result = sfft.irfft2(transform * sfft.rfft2(vt, s=self._grid_t), s=self._grid_t)
        return result[: out[1], : out[0]].ravel()

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._convolve(x, self.image_shape, self._transform, self.output_shape)

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        return self._convolve(y, self.output_shape, self._adjoint_transform, self.image_shape)

    def _norm_bound(self) -> float:
        grid_bound = float(np.max(np.abs(self._transform)))
        if self.mode == "circular":
            return grid_bound
        return min(grid_bound, math.sqrt(float(np.sum(self.gram_diagonal()))))

    def _make_gram(self) -> Gram | None:
        if self.mode != "circular":
            return None
        return FourierGram(np.abs(sfft.fft2(self._wrapped)) ** 2, self.image_shape)

    def gram_diagonal(self) -> np.ndarray:
        (m, n), (p, q) = self.image_shape, self.kernel.shape
        if self.mode == "circular":
            return np.full(m * n, float(np.sum(self._wrapped**2)))
        # Input (j1, j2) meets kernel entry (a, b) at full-output (j1 + a, j2 + b), kept when
        # inside the window [s_r, s_r + M) x [s_c, s_c + N) of the output.
        (M, N), (s_r, s_c) = self.output_shape, (0, 0)
        if self.mode == "same":
            s_r, s_c = (p - 1) // 2, (q - 1) // 2
        table = np.zeros((p + 1, q + 1))
        table[1:, 1:] = np.cumsum(np.cumsum(self.kernel**2, axis=0), axis=1)
        j1, j2 = np.arange(m), np.arange(n)
        lo_a, hi_a = np.clip(s_r - j1, 0, p), np.clip(s_r + M - j1, 0, p)
        lo_b, hi_b = np.clip(s_c - j2, 0, q), np.clip(s_c + N - j2, 0, q)
        box = (
            table[np.ix_(hi_a, hi_b)]
            - table[np.ix_(lo_a, hi_b)]
            - table[np.ix_(hi_a, lo_b)]
            + table[np.ix_(lo_a, lo_b)]
        )
        return box.ravel(order="F")

    def to_sparse(self) -> sp.csr_array:
        (m, n), (p, q) = self.image_shape, self.kernel.shape
        M, N = self.output_shape
        r, c, a, b = np.meshgrid(
            np.arange(m), np.arange(n), np.arange(p), np.arange(q), indexing="ij"
        )
        i, j = r + a, c + b
        if self.mode == "circular":
            i, j = (i - p // 2) % m, (j - q // 2) % n
        elif self.mode == "same":
            i, j = i - (p - 1) // 2, j - (q - 1) // 2
        keep = (i >= 0) & (i < M) & (j >= 0) & (j < N)
        rows = (i + j * M)[keep]
        cols = (r + c * m)[keep]
        return sp.csr_array((self.kernel[a, b][keep], (rows, cols)), shape=self.shape)

    def describe(self) -> str:
        (m, n), (p, q) = self.image_shape, self.kernel.shape
        return f"conv2d({p}x{q}, {m}x{n}, {self.mode})"

    def _device(self, backend: Any) -> tuple[Products, Products]:
        """Real 2-D FFTs on the grid by ``xp.fft`` with the kernel's transform on the device."""
        fft, grid = backend.xp.fft, self._grid_t
        padded = backend.asarray(sfft.irfft2(self._transform, s=grid))
        transform = fft.rfftn(padded, s=grid)
        adjoint = backend.xp.conj(transform)
        xp = backend.xp

        def convolve(v: Any, shape: tuple[int, ...], kernel: Any, out: tuple[int, ...]) -> Any:
            vt = xp.reshape(v, shape[::-1])
            result = fft.irfftn(kernel * fft.rfftn(vt, s=grid), s=grid)
            return xp.reshape(result[: out[1], : out[0]], (-1,))

        image, output = self.image_shape, self.output_shape
        return (
            lambda x: convolve(x, image, transform, output),
            lambda y: convolve(y, output, adjoint, image),
        )


class FourierSample(LinOp):
    """Samples of the unitary DFT of a real array X of shape mask.shape (1-D or 2-D).

    With F = fftn(X, norm="ortho") and the sampled indices k = np.nonzero(mask) (row-major
    order, K of them), A x = [Re F[k]; Im F[k]] (shape (2K,)). The adjoint is
    A'[p; q] = Re(ifftn(S, norm="ortho")) with S zero except S[k] = p + i q. A'A is
    FFT-diagonal with eigenvalues (M + M_flip) / 2, M the mask as floats and
    M_flip[i] = M[-i] (indices modulo the shape), so ||A|| = sqrt(max((M + M_flip) / 2)) and
    diag(A'A) = K / N.

    Products use real FFTs: F on the non-redundant half (axis 0 of length m cut to
    m // 2 + 1) and F[k] = conj(F[-k]) for samples outside it; the adjoint assembles the
    Hermitian part (S[k] + conj(S[-k])) / 2 of S on that half by scatter-adds.

    Attributes
    ----------
    mask : ndarray of bool
    """

    def __init__(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask)
        if mask.ndim not in (1, 2) or mask.size == 0:
            raise ValueError(
                f"FourierSample: the mask must be a 1-D or 2-D array, got {mask.shape}"
            )
        if mask.dtype != np.bool_:
            if not np.all((mask == 0) | (mask == 1)):
                raise ValueError("FourierSample: the mask must be boolean or 0/1")
            mask = mask != 0
        self.mask = mask
        shape = mask.shape
        coords = np.nonzero(mask)
        m0 = shape[0]
        mirrored = coords[0] > m0 // 2
        negated = tuple((-c) % size for c, size in zip(coords, shape, strict=True))
        half = tuple(np.where(mirrored, neg, c) for c, neg in zip(coords, negated, strict=True))
        self._half_shape_t = shape[:0:-1] + (m0 // 2 + 1,)
        self._index = np.ravel_multi_index(half[::-1], self._half_shape_t)
        self._sign = np.where(mirrored, -1.0, 1.0)
        # Samples with both k and -k in the half (first index 0 or m/2) also feed H[-k].
        self._both = np.flatnonzero(~mirrored & ((coords[0] == 0) | (2 * coords[0] == m0)))
        both_negated = tuple(neg[self._both] for neg in negated[::-1])
        self._scatter = np.concatenate(
            [self._index, np.ravel_multi_index(both_negated, self._half_shape_t)]
        )
        self._samples = coords
        k = coords[0].size
        super().__init__((2 * k, mask.size))

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        spectrum = sfft.rfftn(x.reshape(self.mask.shape[::-1]), norm="ortho").ravel()
        values = spectrum[self._index]
        return np.concatenate([values.real, self._sign * values.imag])

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        k = self.shape[0] // 2
        p, q = y[:k], y[k:]
        size = math.prod(self._half_shape_t)
        real = np.concatenate([p, p[self._both]])
        imag = np.concatenate([self._sign * q, -q[self._both]])
        spectrum = np.bincount(self._scatter, weights=real, minlength=size) + 1j * np.bincount(
            self._scatter, weights=imag, minlength=size
        )
        spectrum = 0.5 * spectrum.reshape(self._half_shape_t)
        return sfft.irfftn(spectrum, s=self.mask.shape[::-1], norm="ortho").ravel()

    def _norm_bound(self) -> float:
        return math.sqrt(self.gram().max_eigenvalue())

    def _make_gram(self) -> Gram:
        M = self.mask.astype(np.float64)
        return FourierGram(0.5 * (M + _reflect(M)), self.mask.shape)

    def to_sparse(self) -> sp.csr_array:
        shape = self.mask.shape
        pixels = np.unravel_index(np.arange(self.mask.size), shape, order="F")
        turns = np.zeros((self.shape[0] // 2, self.mask.size))
        for sample, pixel, size in zip(self._samples, pixels, shape, strict=True):
            turns += (np.outer(sample, pixel) % size) / size
        phase = 2 * np.pi * turns
        scale = 1.0 / math.sqrt(self.mask.size)
        return sp.csr_array(np.vstack([np.cos(phase), -np.sin(phase)]) * scale)

    def describe(self) -> str:
        dims = "x".join(map(str, self.mask.shape))
        return f"fourier_sample({self.shape[0] // 2} of {dims})"


class FiniteDiff(LinOp):
    """The k-th forward difference of an array along an axis, like ``cp.diff(X, k, axis)``.

    For X of ``array_shape`` (1-D (n,) or 2-D (m, n)), y is the F-flattening of
    np.diff(X, n=k, axis=axis), whose length along ``axis`` is N - k (N = array_shape[axis]):
    y[j] = sum_{i=0}^{k} (-1)^(k - i) C(k, i) X[j + i]. The adjoint is
    (-1)^k np.diff of y zero-padded by k on both sides along the axis.
    For k = 1, A'A is the Neumann Laplacian along the axis: DCT-II diagonal with
    eigenvalues 2 - 2 cos(pi j / N) (``CosineGram``). ||A|| <= prod_{i<k} 2 sin(pi (N - i - 1)
    / (2 (N - i))), the product of the first differences' norms (exact for k = 1).

    Attributes
    ----------
    array_shape : tuple of int
    axis : int
    k : int
    """

    def __init__(self, shape: int | Sequence[int], axis: int = 0, k: int = 1) -> None:
        array_shape = _array_shape(shape, "FiniteDiff shape")
        ndim = len(array_shape)
        if ndim > 2:
            raise ValueError(f"FiniteDiff: arrays must be 1-D or 2-D, got shape {array_shape}")
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"FiniteDiff: axis must be an integer, got {axis!r}")
        if not -ndim <= axis < ndim:
            raise ValueError(f"FiniteDiff: axis {axis} out of range for shape {array_shape}")
        axis = int(axis) % ndim
        k = _positive_int(k, "FiniteDiff k")
        if k >= array_shape[axis]:
            raise ValueError(
                f"FiniteDiff: k = {k} must be less than the length {array_shape[axis]} "
                f"of axis {axis}"
            )
        self.array_shape, self.axis, self.k = array_shape, axis, k
        out = list(array_shape)
        out[axis] -= k
        self.output_shape = tuple(out)
        super().__init__((math.prod(self.output_shape), math.prod(array_shape)))

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        X = x.reshape(self.array_shape, order="F")
        return np.diff(X, n=self.k, axis=self.axis).ravel(order="F")

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        Y = y.reshape(self.output_shape, order="F")
        pad = [(0, 0)] * Y.ndim
        pad[self.axis] = (self.k, self.k)
        X = np.diff(np.pad(Y, pad), n=self.k, axis=self.axis)
        return (-X if self.k % 2 else X).ravel(order="F")

    def _axis_profile(self, values: np.ndarray) -> np.ndarray:
        """``values`` (length N) along the axis, broadcast over the array and F-flattened."""
        shape = [1] * len(self.array_shape)
        shape[self.axis] = values.size
        return np.broadcast_to(values.reshape(shape), self.array_shape).ravel(order="F")

    def _norm_bound(self) -> float:
        N = self.array_shape[self.axis]
        lengths = N - np.arange(self.k)
        return float(np.prod(2.0 * np.sin(np.pi * (lengths - 1) / (2.0 * lengths))))

    def _make_gram(self) -> Gram | None:
        if self.k != 1:
            return None
        N = self.array_shape[self.axis]
        eig = 2.0 - 2.0 * np.cos(np.pi * np.arange(N) / N)
        shape = [1] * len(self.array_shape)
        shape[self.axis] = N
        return CosineGram(np.broadcast_to(eig.reshape(shape), self.array_shape), self.array_shape)

    def _coefficients(self) -> np.ndarray:
        """(-1)^(k - i) C(k, i) for i = 0..k."""
        k = self.k
        return np.array([(-1) ** (k - i) * math.comb(k, i) for i in range(k + 1)], dtype=float)

    def gram_diagonal(self) -> np.ndarray:
        N = self.array_shape[self.axis]
        column = np.convolve(np.ones(N - self.k), self._coefficients() ** 2)
        return self._axis_profile(column)

    def to_sparse(self) -> sp.csr_array:
        N = self.array_shape[self.axis]
        coefficients = self._coefficients()
        D = sp.diags_array(
            [np.full(N - self.k, c) for c in coefficients],
            offsets=list(range(self.k + 1)),
            shape=(N - self.k, N),
        )
        if len(self.array_shape) == 1:
            return sp.csr_array(D)
        m, n = self.array_shape
        if self.axis == 0:
            return sp.csr_array(sp.kron(sp.eye_array(n), D))
        return sp.csr_array(sp.kron(D, sp.eye_array(m)))

    def describe(self) -> str:
        dims = "x".join(map(str, self.array_shape))
        return f"diff({dims}, axis={self.axis}, k={self.k})"

    def _device(self, backend: Any) -> tuple[Products, Products]:
        return _csr_products(self.to_sparse(), backend)


class TVDifferences(LinOp):
    """``cp.tv``'s stacked differences of a rows x cols image X (x its column-major
    flattening, X[i, j] = x[i + rows j]): for the group g = i + (rows - 1) j (i < rows - 1,
    j < cols - 1), row 2g is X[i, j+1] - X[i, j] and row 2g + 1 is X[i+1, j] - X[i, j];
    shape (2 (rows - 1)(cols - 1), rows cols), the matrix ``tv_matrix`` (``to_sparse``)
    kept as the operator it is, so that no 4-entry-per-group matrix is built for an image
    (at 1024 x 1024: 64 MB and some 0.2 s with its column norms).

    diag(A'A) counts the rows on each pixel (2 on its own group's, 1 on its left and upper
    neighbours'). ||A||_2 is bounded as its matrix's would be (``MatrixOp``): exactly when
    small, else by sqrt(||A||_1 ||A||_inf), ||A||_F and the power iteration's estimate.

    Attributes
    ----------
    rows, cols : int
    """

    def __init__(self, rows: int, cols: int) -> None:
        rows = _positive_int(rows, "TVDifferences rows")
        cols = _positive_int(cols, "TVDifferences cols")
        if rows < 2 or cols < 2:
            raise ValueError(
                f"TVDifferences: the image must be at least 2 x 2, got {rows} x {cols}"
            )
        self.rows, self.cols = rows, cols
        super().__init__((2 * (rows - 1) * (cols - 1), rows * cols))

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        X = x.reshape((self.rows, self.cols), order="F")
        out = np.empty((2, self.rows - 1, self.cols - 1), order="F", dtype=np.result_type(x))
        np.subtract(X[:-1, 1:], X[:-1, :-1], out=out[0])
        np.subtract(X[1:, :-1], X[:-1, :-1], out=out[1])
        return out.ravel(order="F")

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        pairs = y.reshape((2, self.rows - 1, self.cols - 1), order="F")
        h, v = pairs[0], pairs[1]
        X = np.zeros((self.rows, self.cols), order="F", dtype=np.result_type(y))
        X[:-1, :-1] -= h
        X[:-1, 1:] += h
        X[:-1, :-1] -= v
        X[1:, :-1] += v
        return X.ravel(order="F")

    def _counts(self) -> np.ndarray:
        """The number of rows on each pixel, (rows, cols)."""
        count = np.zeros((self.rows, self.cols))
        count[:-1, :-1] += 2.0
        count[:-1, 1:] += 1.0
        count[1:, :-1] += 1.0
        return count

    def _norm_bound(self) -> float:
        m, n = self.shape
        if min(m, n) <= _EXACT_NORM_SIZE and m * n <= _EXACT_NORM_ENTRIES:
            return float(np.linalg.norm(self.to_sparse().toarray(), 2))
        # Every row is -1 and 1 (||A||_inf = 2, ||A||_F^2 = 2 m); ||A||_1 the most rows
        # on a pixel.
        one = float(np.max(self._counts()))
        return min(math.sqrt(2.0 * one), math.sqrt(2.0 * m), estimate_norm(self))

    def gram_diagonal(self) -> np.ndarray:
        return self._counts().ravel(order="F")

    def to_sparse(self) -> sp.csr_array:
        return tv_matrix(self.rows, self.cols)

    def describe(self) -> str:
        return f"tv({self.rows}x{self.cols})"

    def _device(self, backend: Any) -> tuple[Products, Products]:
        return _csr_products(self.to_sparse(), backend)


# --------------------------------------------------------------------------------------------
# Norm estimation
# --------------------------------------------------------------------------------------------


def tv_matrix(rows: int, cols: int) -> sp.csr_array:
    """The matrix of ``cp.tv``'s stacked differences of a rows x cols image X (x its
    column-major flattening, X[i, j] = x[i + rows j]): for the group g = i + (rows - 1) j
    (i < rows - 1, j < cols - 1, p = i + rows j), row 2g is x[p + rows] - x[p] and row
    2g + 1 is x[p + 1] - x[p]; shape (2 (rows - 1)(cols - 1), rows cols), in canonical
    CSR form, built directly (no products of the selections CVXPY writes it with)."""
    if rows < 2 or cols < 2:
        raise ValueError(f"tv_matrix: the image must be at least 2 x 2, got {rows} x {cols}")
    groups = (rows - 1) * (cols - 1)
    # 32-bit indices where they fit, as scipy would make them (after a pass over 64-bit
    # ones and a copy; 4M entries at 1024 x 1024).
    index = np.int32 if max(4 * groups, rows * cols) < np.iinfo(np.int32).max else np.int64
    i, j = np.arange(rows - 1, dtype=index), np.arange(cols - 1, dtype=index)
    p = (i[:, None] + rows * j[None, :]).ravel(order="F")
    indices = np.empty((groups, 4), dtype=index)
    indices[:, 0] = p
    indices[:, 1] = p + rows
    indices[:, 2] = p
    indices[:, 3] = p + 1
    data = np.empty((groups, 4))
    data[:, 0::2] = -1.0
    data[:, 1::2] = 1.0
    indptr = np.arange(0, 4 * groups + 1, 2, dtype=index)
    shape = (2 * groups, rows * cols)
    return sp.csr_array((data.ravel(), indices.ravel(), indptr), shape=shape)


def walk(op: LinOp) -> Iterator[LinOp]:
    """``op`` and every operator inside it (Compose, Sum, VStack, BlockDiagonal,
    ScalarMultiple), depth first."""
    yield op
    if isinstance(op, ScalarMultiple):
        yield from walk(op.op)
    elif isinstance(op, Compose):
        yield from walk(op.outer)
        yield from walk(op.inner)
    elif isinstance(op, (Sum, VStack, BlockDiagonal)):
        for child in op.ops:
            yield from walk(child)


def has_fft(op: LinOp) -> bool:
    """Whether ``op`` contains an FFT operator (a convolution or Fourier sampling).

    Such operators are what a cone solver would have to assemble as a (dense-banded or
    dense) matrix, and what a factorization of the x-update cannot take cheaply.
    """
    return any(isinstance(o, (Convolve1D, Conv2D, FourierSample)) for o in walk(op))


def estimate_norm(
    op: LinOp, iters: int = 200, tol: float = 1e-7, safety: float = 1.01, seed: int = 0
) -> float:
    """Estimate ||A||_2 by power iteration on A'A, times a safety factor.

    From a random unit v, repeat w = A'A v, lambda = ||w||, v = w / lambda until lambda
    changes by at most ``tol`` relatively (or ``iters`` times); lambda <= ||A||_2^2 always and
    converges to it, so ``safety * sqrt(lambda)`` is an upper bound once the iteration has
    converged to within the safety margin (not guaranteed: a slowly converging iteration may
    stop early).

    Parameters
    ----------
    op : LinOp, shape (m, n)
    iters : int
        The most products with A'A.
    tol : float
        Relative change of lambda at which to stop.
    safety : float
        Factor (>= 1) applied to the estimate.
    seed : int
        Seed of the starting vector.

    Returns
    -------
    float
        safety * sqrt(lambda).
    """
    m, n = op.shape
    if m == 0 or n == 0:
        return 0.0
    v = np.random.default_rng(seed).standard_normal(n)
    v /= np.linalg.norm(v)
    lam = 0.0
    for _ in range(iters):
        w = op.rmatvec(op.matvec(v))
        previous, lam = lam, float(np.linalg.norm(w))
        if lam == 0.0:
            return 0.0
        v = w / lam
        if abs(lam - previous) <= tol * lam:
            break
    return safety * math.sqrt(lam)
