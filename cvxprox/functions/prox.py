"""Closed convex functions with cheap proximal operators.

Every function here is a closed convex ``f: R^m -> R u {+inf}`` acting on one 1-D float64
vector. Its proximal operator with step ``t > 0`` is

    prox_{tf}(v) = argmin_u  t f(u) + 1/2 ||u - v||_2^2,

characterized by ``(v - u) / t in df(u)``. The proximal operator of the conjugate follows from
Moreau's decomposition ``v = prox_{tf}(v) + t prox_{f*/t}(v / t)``:

    prox_{s f*}(v) = v - s prox_{f/s}(v / s).

The functions are the indicators of simple sets (their prox is the Euclidean projection; the
cones of ``cvxprox.functions.cones``, zero and nonnegative orthant included, are ProxFunctions
too), norms, separable losses, and 1-D total variation (``TV1D``, exact prox by Condat's
direct method).
Separable functions take an elementwise nonnegative weight ``w`` (a scalar
or an array of length m); the prox of ``sum_i w_i g(v_i)`` with step ``t`` applies the scalar prox
of ``g`` with step ``t w_i`` to each entry. Closed forms are used where they exist (soft and block
soft thresholding, sort-based projections onto the simplex and the l1 ball); the logistic loss,
the negative entropy and the KL divergence solve their scalar optimality equations with a
vectorized, bracketed Newton iteration started from a Lambert-W estimate (Wright's omega
function, omega(x) = W(e^x), which never forms e^x).

Indicator values are 0 when the point lies in the set up to a violation of
``1e-9 max(1, scale)``, where ``scale`` is the size of the data (the point, the bounds, the
radius), and ``inf`` otherwise. No function modifies its input.
"""

from __future__ import annotations

import copy
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import scipy.linalg
from array_api_compat import is_array_api_obj, is_numpy_array
from numpy.typing import ArrayLike
from scipy.special import expit, kl_div, wrightomega, xlogy

from cvxprox.backend import array_namespace
from cvxprox.backend.jit.group import group_shrink
from cvxprox.backend.jit.tv import tv1d_prox

__all__ = [
    "ProxFunction",
    "OnHost",
    "Box",
    "Simplex",
    "L2Ball",
    "LinfBall",
    "L1Ball",
    "Norm1",
    "SumSquares",
    "Quadratic",
    "Norm2",
    "NormInf",
    "Huber",
    "Pos",
    "GroupL2",
    "TV1D",
    "BlockSum",
    "Logistic",
    "NegEntropy",
    "KLDiv",
]

Weight = float | np.ndarray

_FEAS_TOL = 1e-9  # relative violation up to which a point counts as inside an indicator's set
_EPS = np.finfo(np.float64).eps
_TINY = float(np.finfo(np.float64).tiny)
_NEWTON_MAX_ITER = 60  # cap of the safeguarded Newton iterations (a few suffice in practice)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _size(m: Any, name: str = "m") -> int:
    """A positive integer size."""
    try:
        size = operator.index(m)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {m!r}") from None
    if size < 1:
        raise ValueError(f"{name} must be a positive integer, got {size}")
    return size


def _scalar(value: Any, name: str, *, positive: bool = False) -> float:
    """A finite nonnegative (or positive) scalar."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    x = float(arr)
    if not np.isfinite(x) or x < 0 or (positive and x == 0):
        kind = "positive" if positive else "nonnegative"
        raise ValueError(f"{name} must be finite and {kind}, got {x}")
    return x


def _weights(
    weight: ArrayLike, count: int, name: str = "weight", *, positive: bool = False
) -> Weight:
    """A finite nonnegative (or positive) scalar, or a 1-D array of ``count`` such entries."""
    arr = np.asarray(weight, dtype=np.float64)
    if arr.ndim == 0:
        return _scalar(arr, name, positive=positive)
    if arr.shape != (count,):
        raise ValueError(f"{name} must be a scalar or have shape ({count},), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or (positive and np.any(arr == 0)):
        kind = "positive" if positive else "nonnegative"
        raise ValueError(f"{name} must be finite and {kind}")
    return arr.copy()


def _step(t: Any, name: str = "t") -> float:
    """A finite positive step."""
    return _scalar(t, name, positive=True)


def _weighted_name(name: str, weight: Weight) -> str:
    if not isinstance(weight, float):
        return f"w*{name}"
    return name if weight == 1.0 else f"{weight:g}*{name}"


# --------------------------------------------------------------------------------------------
# Closed-form building blocks
# --------------------------------------------------------------------------------------------


def _clip(v: Any, low: Any, high: Any) -> Any:
    """min(max(v, low), high) elementwise, bounds scalars or arrays of v's namespace."""
    if type(v) is np.ndarray:
        return np.minimum(np.maximum(v, low), high)
    return array_namespace(v).clip(v, low, high)


def _soft_threshold(v: Any, a: Any) -> Any:
    """v - clip(v, -a, a) = sign(v) max(|v| - a, 0): the prox of a ||.||_1 (elementwise a)."""
    return v - _clip(v, -a, a)


def _block_soft_threshold(v: Any, a: float) -> Any:
    """max(1 - a / ||v||_2, 0) v: the prox of a ||.||_2 (one scalar read back)."""
    nrm = float(array_namespace(v).linalg.vector_norm(v))
    if nrm <= a:
        return 0.0 * v
    return v * (1.0 - a / nrm)


def _project_l2_ball(v: Any, radius: float) -> Any:
    """Projection onto {u : ||u||_2 <= radius} (one scalar read back)."""
    nrm = float(array_namespace(v).linalg.vector_norm(v))
    if nrm <= radius:
        return 1.0 * v
    return v * (radius / nrm)


def _simplex_threshold(v: np.ndarray, total: float) -> float:
    """The theta with sum_i max(v_i - theta, 0) = total > 0, by sorting (O(m log m)).

    With u = v sorted decreasingly and S_j = u_1 + ... + u_j, theta = (S_rho - total) / rho for
    the largest rho with rho u_rho > S_rho - total.
    """
    u = np.sort(v)[::-1]
    excess = np.cumsum(u) - total
    count = np.arange(1, u.size + 1)
    rho = np.flatnonzero(count * u > excess)[-1]
    return float(excess[rho] / (rho + 1))


def _project_simplex(v: np.ndarray, total: float) -> np.ndarray:
    """Projection onto {u >= 0 : sum u = total}: max(v - theta, 0)."""
    if total == 0.0:
        return np.zeros_like(v)
    return np.maximum(v - _simplex_threshold(v, total), 0.0)


def _project_l1_ball(v: np.ndarray, radius: float) -> np.ndarray:
    """Projection onto {u : ||u||_1 <= radius}: sign(v) max(|v| - theta, 0), theta >= 0."""
    a = np.abs(v)
    if a.sum() <= radius:
        return v.copy()
    if radius == 0.0:
        return np.zeros_like(v)
    theta = max(_simplex_threshold(a, radius), 0.0)
    return np.sign(v) * np.maximum(a - theta, 0.0)


def _group_norms(groups: Any) -> Any:
    """Euclidean norms of the rows of a 2-D array (g, k): sqrt((groups * groups) 1_k).

    The row sums are a product with the ones vector: NumPy's sum over the short axis of a
    (g, 2) array (the gradient pairs of 2-D TV) costs about seven times as much."""
    xp = array_namespace(groups)
    ones = xp.ones(groups.shape[1], dtype=groups.dtype, device=groups.device)
    return xp.sqrt((groups * groups) @ ones)


def _newton_increasing(
    residual: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]],
    x0: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *params: np.ndarray,
) -> np.ndarray:
    """Solve g_i(x_i) = 0 for increasing scalar functions g_i, all entries at once.

    ``residual(x, *params)`` returns ``(g, g', scale)`` for the entries given (``params`` are
    indexed like ``x``), where ``scale`` bounds the magnitude of the terms summed in g. The roots
    must lie in [lo, hi]. Newton steps that leave the bracket (which shrinks with the sign of g)
    are replaced by bisection. An entry stops when |g| is at the rounding level
    (4 eps scale), when the Newton step is below 4 eps |x|, or when the bracket has collapsed;
    the iteration stops after a fixed cap.
    """
    x = np.clip(x0, lo, hi)
    lo = lo.copy()
    hi = hi.copy()
    active = np.arange(x.size)
    for _ in range(_NEWTON_MAX_ITER):
        xa, la, ha = x[active], lo[active], hi[active]
        g, dg, scale = residual(xa, *(p[active] for p in params))
        la = np.where(g < 0, xa, la)
        ha = np.where(g > 0, xa, ha)
        xn = xa - g / dg
        outside = ~((xn >= la) & (xn <= ha))
        xn = np.where(outside, 0.5 * (la + ha), xn)
        small_residual = np.abs(g) <= 4 * _EPS * scale
        xn = np.where(small_residual, xa, xn)
        done = (
            small_residual
            | (~outside & (np.abs(xn - xa) <= 4 * _EPS * np.abs(xn)))
            | (ha - la <= 4 * _EPS * np.maximum(np.abs(la), np.abs(ha)))
        )
        x[active], lo[active], hi[active] = xn, la, ha
        active = active[~done]
        if active.size == 0:
            break
    return x


# --------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------


class ProxFunction(ABC):
    """A closed convex function f: R^m -> R u {+inf} with a cheap proximal operator.

    Attributes
    ----------
    size : int
        m, the length of the vectors f acts on.
    smooth : bool
        True when f is differentiable with a Lipschitz gradient (then ``grad`` and
        ``lipschitz`` are available).
    is_indicator : bool
        True when f is the indicator of a closed convex set (its prox is the projection).
    """

    smooth: ClassVar[bool] = False
    is_indicator: ClassVar[bool] = False
    #: The array attributes ``on`` moves to a backend's device; None when prox, prox_conj
    #: and grad take NumPy arrays only (``on`` then evaluates them on the host: ``OnHost``).
    device_arrays: ClassVar[tuple[str, ...] | None] = None
    size: int

    @abstractmethod
    def __call__(self, v: np.ndarray) -> float:
        """f(v) for v of shape (m,); inf outside the domain."""

    @abstractmethod
    def prox(self, v: np.ndarray, t: float) -> np.ndarray:
        """argmin_u t f(u) + 1/2 ||u - v||^2 for v of shape (m,), t > 0; a new (m,) array."""

    @abstractmethod
    def describe(self) -> str:
        """A short name, e.g. "norm1" or "huber(M=1)"."""

    def prox_conj(self, v: np.ndarray, s: float) -> np.ndarray:
        """The prox of s f* (f* the convex conjugate), by Moreau: v - s prox_{f/s}(v / s).

        Parameters
        ----------
        v : ndarray, shape (m,)
        s : float, > 0

        Returns
        -------
        ndarray, shape (m,)
        """
        v = self._vector(v)
        s = _step(s, "s")
        return v - s * self.prox(v / s, 1.0 / s)

    def support(self, y: Any) -> tuple[Any, float] | None:
        """(y', sigma_C(y')) for Farkas certificates, or None when not known here.

        C is the set of an indicator, or the domain of any other function (the whole
        space unless a subclass says otherwise: then None); sigma_C(y) = sup_{z in C} y'z
        is its support function and y' the projection of y onto the set where sigma_C is
        finite. A y with sum_i sigma_{C_i}(y_i) + b_i'y_i < 0 and sum_i A_i'y_i = 0
        proves that no x has A_i x - b_i in C_i for every i.

        y (m,) is an array of any namespace (NumPy, torch, CuPy) on the side of the
        function's arrays (``on``); y' is on that side too and sigma_C(y') is read back
        as a float. A function's support uses scalar parameters or ``device_arrays`` only,
        so that ``OnHost`` evaluates it on the device.
        """
        return None

    def grad(self, v: np.ndarray) -> np.ndarray:
        """The gradient of f at v, shape (m,); only for smooth functions."""
        raise NotImplementedError(f"{self.describe()} is not smooth")

    def lipschitz(self) -> float:
        """A Lipschitz constant of the gradient; only for smooth functions."""
        raise NotImplementedError(f"{self.describe()} is not smooth")

    def on(self, backend: Any) -> ProxFunction:
        """The function with prox, prox_conj and grad on ``backend``'s arrays
        (``cvxprox.backend``): itself on NumPy, else a copy whose array attributes
        (``device_arrays``) were moved to the device once. A function whose prox takes
        NumPy arrays only (``device_arrays`` None: a sequential walk such as tv1d's, or
        SciPy's special functions) is wrapped in ``OnHost``: each evaluation copies its
        argument to the host and the result back."""
        if backend.name == "numpy":
            return self
        if self.device_arrays is None:
            return OnHost(self, backend)
        moved = copy.copy(self)
        for name in self.device_arrays:
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                setattr(moved, name, backend.asarray(value))
        return moved

    def _vector(self, v: Any) -> Any:
        """v as a float64 array of shape (m,) (not copied when it already is one); a
        backend's device array is only checked for its shape."""
        if type(v) is np.ndarray and v.dtype == np.float64 and v.shape == (self.size,):
            return v
        if is_array_api_obj(v) and not is_numpy_array(v):
            if tuple(v.shape) != (self.size,):
                raise ValueError(
                    f"{self.describe()}: expected shape ({self.size},), got {tuple(v.shape)}"
                )
            return v
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (self.size,):
            raise ValueError(f"{self.describe()}: expected shape ({self.size},), got {v.shape}")
        return v

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()}, size={self.size})"


class OnHost(ProxFunction):
    """A NumPy-only function used from a backend's device arrays: every evaluation copies
    v (m,) to the host (``backend.to_host``), evaluates ``function`` there and copies the
    (m,) result back (``backend.asarray``). Two transfers of m numbers per prox; the
    iterations around it stay on the device.

    Parameters
    ----------
    function : ProxFunction
        The function, with NumPy arrays.
    backend : Backend
        The device's backend (``cvxprox.backend``).
    """

    def __init__(self, function: ProxFunction, backend: Any) -> None:
        self.function = function
        self.backend = backend
        self.size = function.size
        self.smooth = function.smooth
        self.is_indicator = function.is_indicator

    def __call__(self, v: Any) -> float:
        return self.function(self.backend.to_host(self._vector(v)))

    def prox(self, v: Any, t: float) -> Any:
        backend = self.backend
        return backend.asarray(self.function.prox(backend.to_host(self._vector(v)), t))

    def prox_conj(self, v: Any, s: float) -> Any:
        backend = self.backend
        return backend.asarray(self.function.prox_conj(backend.to_host(self._vector(v)), s))

    def grad(self, v: Any) -> Any:
        backend = self.backend
        return backend.asarray(self.function.grad(backend.to_host(self._vector(v))))

    def lipschitz(self) -> float:
        return self.function.lipschitz()

    def support(self, y: Any) -> tuple[Any, float] | None:
        """The wrapped function's support on the device vector y itself (no copy: a
        support uses scalar parameters only, see ``ProxFunction.support``)."""
        return self.function.support(self._vector(y))

    def describe(self) -> str:
        return self.function.describe()

    def __getattr__(self, name: str) -> Any:
        """The wrapped function's parameters (``weight``, ``radius``, ...)."""
        if name == "function":
            raise AttributeError(name)
        return getattr(self.function, name)


class _Separable(ProxFunction):
    """Base of f(v) = sum_i w_i g(v_i) with weights w_i >= 0 (a scalar or an (m,) array)."""

    name: ClassVar[str]

    def __init__(self, m: int, weight: ArrayLike = 1.0) -> None:
        self.size = _size(m)
        self.weight: Weight = _weights(weight, self.size)

    def _steps(self, t: float) -> Weight:
        """The elementwise steps t w_i."""
        return _step(t) * self.weight

    def _max_weight(self) -> float:
        return float(np.max(self.weight))

    def describe(self) -> str:
        return _weighted_name(self.name, self.weight)


class _ScalarWeighted(ProxFunction):
    """Base of f(v) = w g(v) with one weight w >= 0 for the whole vector."""

    def __init__(self, m: int, weight: float = 1.0) -> None:
        self.size = _size(m)
        self.weight = _scalar(weight, "weight")


# --------------------------------------------------------------------------------------------
# Indicators
# --------------------------------------------------------------------------------------------


def _indicator(inside: bool) -> float:
    return 0.0 if inside else np.inf


class Box(ProxFunction):
    """The indicator of {lower <= v <= upper}; prox(v) = clip(v, lower, upper).

    Parameters
    ----------
    lower, upper : float or ndarray, shape (m,)
        Bounds; -inf and +inf are allowed, lower <= upper, lower < inf, upper > -inf.
    m : int, optional
        The size; needed only when both bounds are scalars.
    """

    is_indicator = True

    def __init__(self, lower: ArrayLike, upper: ArrayLike, m: int | None = None) -> None:
        lo = np.asarray(lower, dtype=np.float64)
        up = np.asarray(upper, dtype=np.float64)
        lengths = {a.shape[0] for a in (lo, up) if a.ndim == 1}
        if lo.ndim > 1 or up.ndim > 1 or len(lengths) > 1:
            raise ValueError(
                f"bounds must be scalars or 1-D of one length, got {lo.shape} and {up.shape}"
            )
        if m is not None:
            lengths.add(_size(m))
        if len(lengths) != 1:
            raise ValueError(
                "the size m must be given when both bounds are scalars"
                if not lengths
                else f"bound lengths {sorted(lengths)} disagree with m"
            )
        self.size = _size(lengths.pop())
        if np.any(np.isnan(lo)) or np.any(np.isnan(up)):
            raise ValueError("bounds must not be NaN")
        if np.any(lo > up) or np.any(lo == np.inf) or np.any(up == -np.inf):
            raise ValueError("the box is empty: need lower <= upper, lower < inf, upper > -inf")
        self.lower: Weight = lo.copy() if lo.ndim else float(lo)
        self.upper: Weight = up.copy() if up.ndim else float(up)
        finite = np.concatenate([np.ravel(lo), np.ravel(up)])
        finite = np.abs(finite[np.isfinite(finite)])
        self._scale = max(1.0, float(finite.max())) if finite.size else 1.0

    def __call__(self, v: np.ndarray) -> float:
        v = self._vector(v)
        scale = max(self._scale, float(np.max(np.abs(v))))
        violation = max(float(np.max(self.lower - v)), float(np.max(v - self.upper)))
        return _indicator(violation <= _FEAS_TOL * scale)

    device_arrays = ("lower", "upper")

    def prox(self, v: Any, t: float) -> Any:
        _step(t)
        return _clip(self._vector(v), self.lower, self.upper)

    def support(self, y: Any) -> tuple[Any, float]:
        """sum_i max(y_i u_i, y_i l_i), with y_i set to 0 where it would meet an infinite
        bound (sigma is finite only there)."""
        xp = array_namespace(y)
        lower, upper = (
            xp.full_like(y, bound) if isinstance(bound, float) else bound
            for bound in (self.lower, self.upper)
        )
        yp = xp.where((y > 0) & xp.isinf(upper), 0.0, y)
        yp = xp.where((yp < 0) & xp.isinf(lower), 0.0, yp)
        value = xp.where(yp > 0, yp * xp.where(xp.isinf(upper), 0.0, upper), 0.0)
        value = value + xp.where(yp < 0, yp * xp.where(xp.isinf(lower), 0.0, lower), 0.0)
        return yp, float(xp.sum(value))

    def describe(self) -> str:
        if isinstance(self.lower, float) and isinstance(self.upper, float):
            return f"box({self.lower:g}, {self.upper:g})"
        return "box"


class Simplex(ProxFunction):
    """The indicator of {v >= 0 : sum v = total}; prox by sorting (O(m log m)).

    Parameters
    ----------
    m : int
    total : float, >= 0
    """

    is_indicator = True

    def __init__(self, m: int, total: float = 1.0) -> None:
        self.size = _size(m)
        self.total = _scalar(total, "total")

    def __call__(self, v: np.ndarray) -> float:
        v = self._vector(v)
        scale = max(1.0, self.total, float(np.sum(np.abs(v))))
        inside = np.min(v) >= -_FEAS_TOL * scale and abs(np.sum(v) - self.total) <= (
            _FEAS_TOL * scale
        )
        return _indicator(bool(inside))

    def prox(self, v: np.ndarray, t: float) -> np.ndarray:
        _step(t)
        return _project_simplex(self._vector(v), self.total)

    def support(self, y: Any) -> tuple[Any, float]:
        """total max(max_i y_i, 0)."""
        top = float(array_namespace(y).max(y)) if y.shape[0] else 0.0
        return y, self.total * max(top, 0.0)

    def describe(self) -> str:
        return f"simplex(total={self.total:g})"


class _Ball(ProxFunction):
    """Base of the indicator of {||v|| <= radius} for a norm ||.||; its conjugate is
    radius ||.||_*, the dual norm.

    Subclasses give the norm (``_norm``), the projection onto the ball (``_project``) and
    the prox of the conjugate (``prox_conj``).

    Parameters
    ----------
    m : int
    radius : float, >= 0
    """

    is_indicator = True
    name: ClassVar[str]

    def __init__(self, m: int, radius: float) -> None:
        self.size = _size(m)
        self.radius = _scalar(radius, "radius")

    @abstractmethod
    def _norm(self, v: np.ndarray) -> float:
        """||v|| for a float64 vector v of shape (m,)."""

    @abstractmethod
    def _project(self, v: np.ndarray) -> np.ndarray:
        """The projection of a float64 vector v of shape (m,) onto the ball; a new array."""

    def __call__(self, v: np.ndarray) -> float:
        nrm = self._norm(self._vector(v))
        return _indicator(nrm - self.radius <= _FEAS_TOL * max(1.0, self.radius))

    def prox(self, v: np.ndarray, t: float) -> np.ndarray:
        _step(t)
        return self._project(self._vector(v))

    def support(self, y: Any) -> tuple[Any, float]:
        """radius ||y||_* (the dual norm)."""
        return y, self.radius * self._dual_norm(y)

    @abstractmethod
    def _dual_norm(self, y: Any) -> float:
        """||y||_*, the dual norm of the ball's norm (y of any array namespace)."""

    def describe(self) -> str:
        return f"{self.name}(r={self.radius:g})"


class L2Ball(_Ball):
    """The indicator of {||v||_2 <= radius}; its conjugate is radius ||.||_2.

    Parameters
    ----------
    m : int
    radius : float, >= 0
    """

    name = "l2_ball"

    def _norm(self, v: np.ndarray) -> float:
        return float(np.linalg.norm(v))

    def _project(self, v: np.ndarray) -> np.ndarray:
        return _project_l2_ball(v, self.radius)

    def _dual_norm(self, y: Any) -> float:
        return float(array_namespace(y).linalg.vector_norm(y))

    def prox_conj(self, v: np.ndarray, s: float) -> np.ndarray:
        return _block_soft_threshold(self._vector(v), _step(s, "s") * self.radius)


class LinfBall(_Ball):
    """The indicator of {||v||_inf <= radius}; its conjugate is radius ||.||_1.

    Parameters
    ----------
    m : int
    radius : float, >= 0
    """

    name = "linf_ball"

    def _norm(self, v: np.ndarray) -> float:
        return float(np.max(np.abs(v)))

    def _project(self, v: np.ndarray) -> np.ndarray:
        return np.clip(v, -self.radius, self.radius)

    def _dual_norm(self, y: Any) -> float:
        xp = array_namespace(y)
        return float(xp.sum(xp.abs(y)))

    def prox_conj(self, v: np.ndarray, s: float) -> np.ndarray:
        return _soft_threshold(self._vector(v), _step(s, "s") * self.radius)


class L1Ball(_Ball):
    """The indicator of {||v||_1 <= radius}; prox by sorting (O(m log m)).

    Its conjugate is radius ||.||_inf.

    Parameters
    ----------
    m : int
    radius : float, >= 0
    """

    name = "l1_ball"

    def _norm(self, v: np.ndarray) -> float:
        return float(np.sum(np.abs(v)))

    def _project(self, v: np.ndarray) -> np.ndarray:
        return _project_l1_ball(v, self.radius)

    def _dual_norm(self, y: Any) -> float:
        xp = array_namespace(y)
        return float(xp.max(xp.abs(y))) if y.shape[0] else 0.0

    def prox_conj(self, v: np.ndarray, s: float) -> np.ndarray:
        v = self._vector(v)
        return v - _project_l1_ball(v, _step(s, "s") * self.radius)


# --------------------------------------------------------------------------------------------
# Norms and piecewise-linear or piecewise-quadratic functions
# --------------------------------------------------------------------------------------------


class Norm1(_Separable):
    """f(v) = sum_i w_i |v_i|; prox is soft thresholding at t w_i.

    Its conjugate is the indicator of {|v_i| <= w_i}, so prox_conj(v) = clip(v, -w, w).

    Parameters
    ----------
    m : int
    weight : float or ndarray, shape (m,), >= 0
    """

    name = "norm1"
    device_arrays = ("weight",)

    def __call__(self, v: Any) -> float:
        v = self._vector(v)
        xp = array_namespace(v)
        return float(xp.sum(self.weight * xp.abs(v)))

    def prox(self, v: Any, t: float) -> Any:
        return _soft_threshold(self._vector(v), self._steps(t))

    def prox_conj(self, v: Any, s: float) -> Any:
        _step(s, "s")
        return _clip(self._vector(v), -self.weight, self.weight)


class SumSquares(_Separable):
    """f(v) = sum_i w_i v_i^2; prox(v) = v / (1 + 2 t w), gradient 2 w v, L = 2 max w.

    Parameters
    ----------
    m : int
    weight : float or ndarray, shape (m,), >= 0
    """

    name = "sum_squares"
    smooth = True
    device_arrays = ("weight",)

    def __call__(self, v: Any) -> float:
        v = self._vector(v)
        return float(array_namespace(v).sum(self.weight * v * v))

    def prox(self, v: Any, t: float) -> Any:
        return self._vector(v) / (1.0 + 2.0 * self._steps(t))

    def grad(self, v: Any) -> Any:
        return 2.0 * self.weight * self._vector(v)

    def lipschitz(self) -> float:
        return 2.0 * self._max_weight()


class Quadratic(ProxFunction):
    """f(v) = w v'Qv with Q symmetric positive semidefinite (``quad_form``).

    prox(v) solves (I + 2 t w Q) u = v (a Cholesky factorization, kept for the last
    step, and one step of iterative refinement), gradient 2 w Q v, L = 2 w lambda_max(Q).

    Parameters
    ----------
    Q : ndarray, shape (m, m), symmetric positive semidefinite
    weight : float, >= 0
    """

    smooth = True

    def __init__(self, Q: ArrayLike, weight: float = 1.0) -> None:
        Q = np.asarray(Q, dtype=np.float64)
        if Q.ndim != 2 or Q.shape[0] != Q.shape[1]:
            raise ValueError(f"Q must be a square matrix, got shape {Q.shape}")
        if not np.all(np.isfinite(Q)):
            raise ValueError("Q contains NaN or inf")
        self.size = Q.shape[0]
        self.Q = 0.5 * (Q + Q.T)
        self.weight = _scalar(weight, "weight")
        self._factor: tuple[float, tuple] | None = None
        self._lipschitz: float | None = None

    def __call__(self, v: np.ndarray) -> float:
        v = self._vector(v)
        return self.weight * float(v @ self.Q @ v)

    def prox(self, v: np.ndarray, t: float) -> np.ndarray:
        v = self._vector(v)
        a = 2.0 * _step(t) * self.weight
        if self._factor is None or self._factor[0] != a:
            system = np.eye(self.size) + a * self.Q
            self._factor = (a, scipy.linalg.cho_factor(system, lower=True))
        u = scipy.linalg.cho_solve(self._factor[1], v)
        # One step of iterative refinement: with a large t w the system is ill-conditioned.
        return u + scipy.linalg.cho_solve(self._factor[1], v - u - a * (self.Q @ u))

    def grad(self, v: np.ndarray) -> np.ndarray:
        return 2.0 * self.weight * (self.Q @ self._vector(v))

    def lipschitz(self) -> float:
        if self._lipschitz is None:
            top = np.linalg.eigvalsh(self.Q)[-1] if self.size else 0.0
            self._lipschitz = 2.0 * self.weight * max(float(top), 0.0)
        return self._lipschitz

    def describe(self) -> str:
        return _weighted_name("quad_form", self.weight)


class Huber(_Separable):
    """CVXPY's Huber loss f(v) = sum_i w_i h(v_i), h(x) = x^2 for |x| <= M, 2M|x| - M^2 else.

    With a = t w_i the prox is v / (1 + 2a) when |v| <= M (1 + 2a), else v - 2aM sign(v).
    The gradient is 2 w clip(v, -M, M); L = 2 max w.

    Parameters
    ----------
    m : int
    M : float, > 0
    weight : float or ndarray, shape (m,), >= 0
    """

    name = "huber"
    smooth = True
    device_arrays = ("weight",)

    def __init__(self, m: int, M: float = 1.0, weight: ArrayLike = 1.0) -> None:
        super().__init__(m, weight)
        self.M = _scalar(M, "M", positive=True)

    def __call__(self, v: Any) -> float:
        v = self._vector(v)
        xp = array_namespace(v)
        a = xp.abs(v)
        h = xp.where(a <= self.M, a * a, 2.0 * self.M * a - self.M**2)
        return float(xp.sum(self.weight * h))

    def prox(self, v: Any, t: float) -> Any:
        v = self._vector(v)
        a = self._steps(t)
        xp = array_namespace(v)
        quadratic = xp.abs(v) <= self.M * (1.0 + 2.0 * a)
        return xp.where(quadratic, v / (1.0 + 2.0 * a), v - 2.0 * a * self.M * xp.sign(v))

    def grad(self, v: Any) -> Any:
        return 2.0 * self.weight * _clip(self._vector(v), -self.M, self.M)

    def lipschitz(self) -> float:
        return 2.0 * self._max_weight()

    def describe(self) -> str:
        return _weighted_name(f"huber(M={self.M:g})", self.weight)


class Pos(_Separable):
    """f(v) = sum_i w_i max(v_i, 0); prox(v) = v - clip(v, 0, t w).

    Its conjugate is the indicator of {0 <= v <= w}, so prox_conj(v) = clip(v, 0, w).

    Parameters
    ----------
    m : int
    weight : float or ndarray, shape (m,), >= 0
    """

    name = "pos"

    def __call__(self, v: np.ndarray) -> float:
        return float(np.sum(self.weight * np.maximum(self._vector(v), 0.0)))

    def prox(self, v: np.ndarray, t: float) -> np.ndarray:
        v = self._vector(v)
        return v - np.clip(v, 0.0, self._steps(t))

    def prox_conj(self, v: np.ndarray, s: float) -> np.ndarray:
        _step(s, "s")
        return np.clip(self._vector(v), 0.0, self.weight)


class Norm2(_ScalarWeighted):
    """f(v) = w ||v||_2; prox is block soft thresholding, prox_conj the projection onto the
    ball of radius w.

    Parameters
    ----------
    m : int
    weight : float, >= 0
    """

    def __call__(self, v: Any) -> float:
        v = self._vector(v)
        return self.weight * float(array_namespace(v).linalg.vector_norm(v))

    device_arrays = ()

    def prox(self, v: Any, t: float) -> Any:
        return _block_soft_threshold(self._vector(v), _step(t) * self.weight)

    def prox_conj(self, v: Any, s: float) -> Any:
        _step(s, "s")
        return _project_l2_ball(self._vector(v), self.weight)

    def describe(self) -> str:
        return _weighted_name("norm2", self.weight)


class NormInf(_ScalarWeighted):
    """f(v) = w ||v||_inf; its conjugate is the indicator of the l1 ball of radius w.

    By Moreau, prox(v) = v - P(v) with P the projection onto the l1 ball of radius t w,
    and prox_conj(v) is the projection onto the l1 ball of radius w.

    Parameters
    ----------
    m : int
    weight : float, >= 0
    """

    def __call__(self, v: np.ndarray) -> float:
        return self.weight * float(np.max(np.abs(self._vector(v))))

    def prox(self, v: np.ndarray, t: float) -> np.ndarray:
        v = self._vector(v)
        return v - _project_l1_ball(v, _step(t) * self.weight)

    def prox_conj(self, v: np.ndarray, s: float) -> np.ndarray:
        _step(s, "s")
        return _project_l1_ball(self._vector(v), self.weight)

    def describe(self) -> str:
        return _weighted_name("norm_inf", self.weight)


class GroupL2(ProxFunction):
    """f(v) = sum_g w_g ||v[g k:(g+1) k]||_2 over the m / k consecutive groups of size k.

    The prox is block soft thresholding of each group at t w_g; prox_conj projects each group
    onto the ball of radius w_g.

    Parameters
    ----------
    m : int
        A multiple of group_size.
    group_size : int
        k.
    weight : float or ndarray, shape (m // k,), >= 0
        One weight for all groups, or one per group.
    """

    def __init__(self, m: int, group_size: int, weight: ArrayLike = 1.0) -> None:
        self.size = _size(m)
        self.group_size = _size(group_size, "group_size")
        if self.size % self.group_size:
            raise ValueError(f"m = {self.size} is not a multiple of group_size = {group_size}")
        self.groups = self.size // self.group_size
        self.weight: Weight = _weights(weight, self.groups)

    device_arrays = ("weight",)

    def _split(self, v: Any) -> Any:
        v = self._vector(v)
        return array_namespace(v).reshape(v, (self.groups, self.group_size))

    def __call__(self, v: Any) -> float:
        groups = self._split(v)
        return float(array_namespace(groups).sum(self.weight * _group_norms(groups)))

    def prox(self, v: Any, t: float) -> Any:
        """Each group times max(1 - a_g / ||v_g||, 0), a_g = t w_g (on NumPy's float64
        vectors by the compiled ``cvxprox.backend.jit.group.group_shrink``)."""
        v = self._vector(v)
        a = _step(t) * self.weight
        if type(v) is np.ndarray and v.dtype == np.float64:
            v = np.ascontiguousarray(v)
            out = np.empty_like(v)
            group_shrink(v, self.group_size, np.atleast_1d(np.asarray(a, dtype=np.float64)), out)
            return out
        groups = self._split(v)
        xp = array_namespace(groups)
        nrm = _group_norms(groups)
        scale = xp.where(nrm > a, 1.0 - a / xp.where(nrm > a, nrm, 1.0), 0.0)
        return xp.reshape(groups * scale[:, None], (-1,))

    def prox_conj(self, v: Any, s: float) -> Any:
        """Each group times min(w_g / ||v_g||, 1) = w_g / max(||v_g||, w_g) (0 where
        w_g = 0)."""
        _step(s, "s")
        groups = self._split(v)
        xp = array_namespace(groups)
        nrm = _group_norms(groups)
        scale = self.weight / xp.maximum(xp.maximum(nrm, self.weight), _TINY)
        return xp.reshape(groups * scale[:, None], (-1,))

    def describe(self) -> str:
        return _weighted_name(f"group_l2({self.group_size})", self.weight)


class TV1D(_ScalarWeighted):
    """f(v) = w sum_{i<m-1} |v_{i+1} - v_i|: the (anisotropic) total variation of a signal.

    The prox, argmin_u t w TV(u) + 1/2 ||u - v||^2, is exact: Condat's direct method
    (``cvxprox.backend.jit.tv``), which walks the signal once on typical data. Its optimality
    conditions are u = v - D'p with D the forward difference and p in R^(m-1),
    |p_i| <= t w, p_i = t w sign(u_{i+1} - u_i) where u jumps; when t w is at least every
    |sum_{j<=i} (mean(v) - v_j)| the prox is the constant mean(v). The conjugate is the
    indicator of {D'p : ||p||_inf <= w}; prox_conj follows from Moreau's decomposition.

    Parameters
    ----------
    m : int
    weight : float, >= 0
    """

    def __call__(self, v: np.ndarray) -> float:
        return self.weight * float(np.sum(np.abs(np.diff(self._vector(v)))))

    def prox(self, v: np.ndarray, t: float) -> np.ndarray:
        v = np.ascontiguousarray(self._vector(v))
        out = np.empty_like(v)
        tv1d_prox(v, _step(t) * self.weight, out)
        return out

    def describe(self) -> str:
        return _weighted_name("tv1d", self.weight)


class BlockSum(ProxFunction):
    """f(v) = sum_b f_b(v_b) over consecutive blocks v_b of v, one function f_b each.

    The prox (and the prox of the conjugate) acts block by block; f is smooth or an
    indicator when every f_b is. A batch of programs stacked into one
    (``cvxprox.ir.batch``) holds a function that does not merge entrywise (1-D TV,
    norm_inf, a ball, a quadratic form) as such a sum, one block per element.

    Parameters
    ----------
    functions : list of ProxFunction
        f_1, ..., f_B; v has length m = sum_b m_b.
    """

    def __init__(self, functions: list[ProxFunction]) -> None:
        if not functions or not all(isinstance(f, ProxFunction) for f in functions):
            raise ValueError("BlockSum needs a nonempty list of ProxFunctions")
        self.functions = list(functions)
        self.starts = np.cumsum([0] + [f.size for f in self.functions])
        self.size = int(self.starts[-1])
        self.smooth = all(f.smooth for f in self.functions)
        self.is_indicator = all(f.is_indicator for f in self.functions)

    def blocks(self, v: np.ndarray) -> list[np.ndarray]:
        """v (m,) as its blocks v_b (m_b,)."""
        return [v[a:e] for a, e in zip(self.starts[:-1], self.starts[1:], strict=True)]

    def __call__(self, v: np.ndarray) -> float:
        parts = self.blocks(self._vector(v))
        return float(sum(f(vb) for f, vb in zip(self.functions, parts, strict=True)))

    def prox(self, v: np.ndarray, t: float) -> np.ndarray:
        parts = self.blocks(self._vector(v))
        return np.concatenate([f.prox(vb, t) for f, vb in zip(self.functions, parts, strict=True)])

    def prox_conj(self, v: np.ndarray, s: float) -> np.ndarray:
        parts = self.blocks(self._vector(v))
        return np.concatenate(
            [f.prox_conj(vb, s) for f, vb in zip(self.functions, parts, strict=True)]
        )

    def grad(self, v: np.ndarray) -> np.ndarray:
        parts = self.blocks(self._vector(v))
        return np.concatenate([f.grad(vb) for f, vb in zip(self.functions, parts, strict=True)])

    def lipschitz(self) -> float:
        return max(f.lipschitz() for f in self.functions)

    def support(self, y: Any) -> tuple[Any, float] | None:
        """The blocks' supports summed (None when one of them is not known)."""
        parts = [f.support(yb) for f, yb in zip(self.functions, self.blocks(y), strict=True)]
        if any(part is None for part in parts):
            return None
        xp = array_namespace(y)
        return xp.concat([part[0] for part in parts]), float(sum(part[1] for part in parts))

    def describe(self) -> str:
        return f"block_sum({len(self.functions)} x {self.functions[0].describe()})"


# --------------------------------------------------------------------------------------------
# Functions whose prox solves a scalar equation
# --------------------------------------------------------------------------------------------


def _logistic_residual(
    u: np.ndarray, a: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """g(u) = u + a sigma(u) - r, its derivative, and the size of its terms."""
    s = expit(u)
    return u + a * s - r, 1.0 + a * s * (1.0 - s), np.abs(u) + a * s + np.abs(r)


def _log_root_residual(
    ell: np.ndarray, a: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """phi(l) = e^l + a l - r (u + a log u = r with u = e^l), its derivative, term sizes."""
    u = np.exp(ell)
    return u + a * ell - r, u + a, u + a * np.abs(ell) + np.abs(r)


def _solve_u_plus_a_log_u(a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The root u > 0 of u + a log u = r for a > 0 (elementwise), by Newton on l = log u.

    The root is u = a W(e^x) with x = r / a - log a (W(e^x) is Wright's omega(x)), so
    log u = log a + log W(e^x), where log W(e^x) = x - W(e^x) is used for small W. The bracket:
    l <= log max(1, r) (if u > 1 then u < r) and l >= min(0, (r - 1) / a) (if u < 1 then
    a log u > r - 1).
    """
    x = r / a - np.log(a)
    w = wrightomega(x)
    log_w = np.where(w > 0.5, np.log(np.maximum(w, 0.5)), x - w)
    ell0 = np.log(a) + log_w
    lo = np.minimum(0.0, (r - 1.0) / a)
    hi = np.log(np.maximum(1.0, r))
    with np.errstate(under="ignore"):
        ell = _newton_increasing(_log_root_residual, ell0, lo, hi, a, r)
        return np.exp(ell)


class Logistic(_Separable):
    """f(v) = sum_i w_i log(1 + exp(v_i)); gradient w sigma(v), L = max w / 4.

    The prox solves u + a sigma(u) = v (a = t w_i, sigma the logistic sigmoid). Since
    prox(v) = -prox(a - v), the equation is solved for r = min(v, a - v) <= a / 2, whose root
    lies in [r - a, 0] where g(u) = u + a sigma(u) - r is convex; Newton starts from the root of
    u + (a / 2) e^u = r, that is r - W((a / 2) e^r), which lies between the root and 0.

    Parameters
    ----------
    m : int
    weight : float or ndarray, shape (m,), >= 0
    """

    name = "logistic"
    smooth = True

    def __call__(self, v: np.ndarray) -> float:
        return float(np.sum(self.weight * np.logaddexp(0.0, self._vector(v))))

    def prox(self, v: np.ndarray, t: float) -> np.ndarray:
        v = self._vector(v)
        a = np.broadcast_to(self._steps(t), v.shape)
        flip = v > 0.5 * a
        r = np.where(flip, a - v, v)
        with np.errstate(divide="ignore", under="ignore"):
            u0 = r - wrightomega(np.log(0.5 * a) + r)
            u = _newton_increasing(_logistic_residual, u0, r - a, np.zeros_like(r), a, r)
        return np.where(flip, -u, u)

    def grad(self, v: np.ndarray) -> np.ndarray:
        return self.weight * expit(self._vector(v))

    def lipschitz(self) -> float:
        return 0.25 * self._max_weight()


class _EntropyLike(_Separable):
    """Base of f(v) = sum_i w_i (v_i log v_i + linear terms), domain v >= 0.

    The prox solves u + a log u = r(v, a) (a = t w_i); where w_i = 0 the domain remains and
    the prox is max(v_i, 0).
    """

    def support(self, y: Any) -> tuple[Any, float]:
        """(min(y, 0), 0): the domain is v >= 0."""
        return array_namespace(y).where(y < 0, y, 0.0), 0.0

    @abstractmethod
    def _rhs(self, v: np.ndarray, a: np.ndarray) -> np.ndarray:
        """r in the prox equation u + a log u = r, for entries with a > 0."""

    def prox(self, v: np.ndarray, t: float) -> np.ndarray:
        v = self._vector(v)
        a = np.broadcast_to(self._steps(t), v.shape)
        u = np.maximum(v, 0.0)
        active = a > 0
        if np.any(active):
            u[active] = _solve_u_plus_a_log_u(a[active], self._rhs(v, a)[active])
        return u


class NegEntropy(_EntropyLike):
    """f(v) = sum_i w_i v_i log v_i (CVXPY's -entr), 0 log 0 = 0, domain v >= 0.

    The prox solves a (log u + 1) + u - v = 0, i.e. u + a log u = v - a, so
    u = a W(e^{v/a - 1} / a).

    Parameters
    ----------
    m : int
    weight : float or ndarray, shape (m,), >= 0
    """

    name = "neg_entropy"

    def __call__(self, v: np.ndarray) -> float:
        v = self._vector(v)
        if np.any(v < 0):
            return np.inf
        return float(np.sum(self.weight * xlogy(v, v)))

    def _rhs(self, v: np.ndarray, a: np.ndarray) -> np.ndarray:
        return v - a


class KLDiv(_EntropyLike):
    """f(v) = sum_i w_i (v_i log(v_i / c_i) - v_i + c_i) (CVXPY's kl_div(v, c)), domain v >= 0.

    The prox solves a log(u / c) + u - v = 0, i.e. u + a log u = v + a log c.

    Parameters
    ----------
    m : int
    c : float or ndarray, shape (m,), > 0
    weight : float or ndarray, shape (m,), >= 0
    """

    name = "kl_div"

    def __init__(self, m: int, c: ArrayLike, weight: ArrayLike = 1.0) -> None:
        super().__init__(m, weight)
        self.c = _weights(c, self.size, "c", positive=True)
        self._log_c = np.log(self.c)

    def __call__(self, v: np.ndarray) -> float:
        v = self._vector(v)
        if np.any(v < 0):
            return np.inf
        return float(np.sum(self.weight * kl_div(v, self.c)))

    def _rhs(self, v: np.ndarray, a: np.ndarray) -> np.ndarray:
        return v + a * self._log_c
