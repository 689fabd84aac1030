"""Euclidean projections onto the convex cones of CVXPY's conic form.

Every cone ``K`` here is a closed convex cone in ``R^dim`` stored as one contiguous block of a
vector. ``Cone.project`` computes the Euclidean projection

    Pi_K(v) = argmin_{p in K} ||p - v||_2,

the proximal operator of the indicator of ``K``. By Moreau's decomposition
``v = Pi_K(v) + Pi_{K°}(v)`` with ``Pi_K(v) ⟂ Pi_{K°}(v)``, where ``K° = -K*`` is the polar cone and
``K* = {u : <u, p> >= 0 for all p in K}`` the dual cone; hence ``Pi_{K*}(v) = v + Pi_K(-v)`` and
``Pi_{K°}(v) = v - Pi_K(v)``. A point ``p`` equals ``Pi_K(v)`` exactly when ``p in K``,
``v - p in K°`` and ``<p, v - p> = 0``.

Conventions follow CVXPY's ``ConicSolver`` row layout for SCS-like solvers: the product cone is
ordered zero, nonneg, soc, psd, exp, p3d; PSD blocks are "svec" vectors (lower triangle in
column-major order, off-diagonal entries times sqrt(2)); exponential and power cones are triples.

All cones accept 1-D floating arrays of any namespace supported by ``array_api_compat`` (NumPy,
torch and CuPy are tested), compute in float64 on the input's device and return the input's
floating dtype: the PDHG of ``cvxprox.solvers.pdhg`` projects on its backend's device. Many
cones of one kind are projected at once with array operations; the iterative exponential- and
power-cone projections run a safeguarded Newton iteration on all unresolved cones together.

``Cone.project_derivative`` returns the Jacobian ``DPi_K(v)`` as a SciPy CSR array (NumPy, float64)
for implicit differentiation. It is symmetric with eigenvalues in ``[0, 1]`` (``Pi_K`` is the
gradient of the convex function ``||Pi_K(v)||^2 / 2``); where ``Pi_K`` is not differentiable an
element of Clarke's generalized Jacobian is returned (each cone documents its choice). By Moreau,
``DPi_{K°}(v) = I - DPi_K(v)``. Positive homogeneity gives ``DPi_K(v) v = Pi_K(v)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from array_api_compat import device, is_numpy_namespace

from cvxprox.backend import array_namespace
from cvxprox.functions.prox import _FEAS_TOL, ProxFunction, _step

__all__ = [
    "Cone",
    "ZeroCone",
    "NonnegCone",
    "SecondOrderCone",
    "PSDCone",
    "ExpCone",
    "PowCone3D",
    "ProductCone",
    "cones_from_dims",
    "svec_to_mat",
    "mat_to_svec",
]

Array = Any

_SQRT2 = math.sqrt(2.0)
_LOG2 = math.log(2.0)
# Root-finding controls shared by the exponential- and power-cone projections.
_TOL = 1e-13  # relative accuracy of the scalar unknown
_MAX_ITER = 100  # hard bound on Newton/bisection iterations
_BISECT_AFTER = 60  # after this many iterations only bisection steps are taken
# Exponential-cone bracket limits (inputs scaled to max-abs 1): for rho >= 745 the ray
# (rho, 1, e^rho) is (0, 0, 1) in double precision; when x/y < _EXP_RHO_AT_HI the root equals x/y
# to double precision, otherwise it lies above _EXP_RHO_DOWN; rho**2 must stay finite.
_EXP_RHO_UP = 800.0
_EXP_RHO_AT_HI = -800.0
_EXP_RHO_DOWN = -1600.0
_EXP_RHO_MIN = -1e100
# Distance (inputs scaled to max-abs 1) within which a point counts as on the exponential cone or
# on its polar; the root of the scalar equation is then at a bracket end to working accuracy.
_EXP_EDGE = 1e-14
_POW_U_MAX = 745.0  # |u| bound of the power-cone bracket (exp(-745) is the smallest double)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _quiet(func: Callable[..., Array]) -> Callable[..., Array]:
    """Run ``func`` with NumPy floating-point warnings off (overflow/underflow are handled)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Array:
        with np.errstate(all="ignore"):
            return func(*args, **kwargs)

    return wrapper


_NUMPY = array_namespace(np.empty(0))


def _prepare(v: Array, dim: int) -> tuple[Any, Array, Any]:
    """Return ``(xp, v64, out_dtype)`` for a 1-D input of length ``dim``.

    ``v64`` is ``v`` as float64 (not copied when already float64; never modified in place),
    ``out_dtype`` the dtype of the result (the input's floating dtype, else float64).
    """
    if type(v) is np.ndarray and v.dtype == np.float64:
        # The solvers' hot path: skip the namespace lookup and dtype dispatch.
        if v.ndim != 1 or v.shape[0] != dim:
            raise ValueError(f"expected a 1-D array of length {dim}, got shape {v.shape}")
        return _NUMPY, v, v.dtype
    xp = array_namespace(v)
    if v.ndim != 1 or v.shape[0] != dim:
        raise ValueError(f"expected a 1-D array of length {dim}, got shape {tuple(v.shape)}")
    out_dtype = v.dtype if xp.isdtype(v.dtype, "real floating") else xp.float64
    return xp, xp.astype(v, xp.float64, copy=False), out_dtype


def _host_float64(v: Array, dim: int) -> np.ndarray:
    """Validate a 1-D input of length ``dim`` (``ValueError`` otherwise) and return it as a NumPy
    float64 array (copied to the host if it lives elsewhere: Jacobians are SciPy arrays)."""
    xp, w, _ = _prepare(v, dim)
    if not is_numpy_namespace(xp) and hasattr(w, "get"):
        w = w.get()  # CuPy
    return np.asarray(w, dtype=np.float64)


def _block_diag_csr(
    dim: int,
    diag: tuple[np.ndarray, np.ndarray] | None = None,
    dense: Sequence[tuple[np.ndarray, np.ndarray]] = (),
) -> sp.csr_array:
    """Assemble a ``(dim, dim)`` block-diagonal CSR array without sorting.

    ``diag = (pos, vals)`` puts ``vals`` at the diagonal positions ``(pos, pos)``; each
    ``(idx, blocks)`` of ``dense`` puts the dense blocks ``blocks[i]`` (shape ``(count, k, k)``) at
    rows and columns ``idx[i]`` (shape ``(count, k)``, increasing along each row). Every row
    belongs to at most one of them; the other rows are empty.
    """
    row_nnz = np.zeros(dim, dtype=np.int64)
    if diag is not None:
        row_nnz[diag[0]] = 1
    for idx, _ in dense:
        row_nnz[idx] = idx.shape[1]
    indptr = np.zeros(dim + 1, dtype=np.int64)
    np.cumsum(row_nnz, out=indptr[1:])
    data = np.empty(int(indptr[-1]))
    indices = np.empty(int(indptr[-1]), dtype=np.int64)
    if diag is not None:
        data[indptr[diag[0]]] = diag[1]
        indices[indptr[diag[0]]] = diag[0]
    for idx, blocks in dense:
        dest = indptr[idx][:, :, None] + np.arange(idx.shape[1])
        data[dest] = blocks
        indices[dest] = idx[:, None, :]
    return sp.csr_array((data, indices, indptr), shape=(dim, dim))


def _triples_csr(jac: np.ndarray, general: np.ndarray) -> sp.csr_array:
    """CSR array of the ``3 x 3`` blocks ``jac`` (shape ``(count, 3, 3)``), dense where
    ``general`` and diagonal (nonzeros only) elsewhere."""
    idx = np.arange(3 * jac.shape[0]).reshape(-1, 3)
    diag_vals = np.diagonal(jac[~general], axis1=1, axis2=2).reshape(-1)
    diag_pos = idx[~general].reshape(-1)
    keep = diag_vals != 0
    return _block_diag_csr(
        idx.size, (diag_pos[keep], diag_vals[keep]), [(idx[general], jac[general])]
    )


def _block_positions(sizes: np.ndarray, lengths: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Like ``_size_groups`` but always with the ``(count, length)`` position array."""
    dim = int(lengths.sum())
    return [
        (size, np.arange(dim).reshape(-1, int(lengths[sizes == size][0])) if idx is None else idx)
        for size, idx in _size_groups(sizes, lengths)
    ]


def _unit_rows(a: np.ndarray) -> np.ndarray:
    """The rows of ``a`` divided by their Euclidean norms (scaled first: no underflow)."""
    a = a / np.max(np.abs(a), axis=1)[:, None]
    return a / np.linalg.norm(a, axis=1)[:, None]


def _ray_jacobian(ray: np.ndarray, normal: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """Jacobians ``r r^T + u u^T / (1 + kappa)`` of projections onto curved boundaries.

    Shared by the exponential and power cones (rows are cones). Where ``Pi(v) = p != 0`` lies on
    the smooth part of the boundary ``{g = 0}`` of a 3-D cone, differentiating the KKT conditions
    ``p - v + nu grad g(p) = 0``, ``g(p) = 0`` gives ``(I + nu Hess g) dp + grad g dnu = dv``,
    ``grad g^T dp = 0``, so ``DPi(v) = E (E^T (I + nu Hess g) E)^{-1} E^T`` for an orthonormal
    basis ``E`` of the tangent plane ``grad g^⊥``. For both cones ``nu Hess g = c w w^T`` is a PSD
    rank-one matrix with ``w ⟂ p``, and the tangent plane is spanned by the unit ray
    ``r = p/||p||`` and ``u = n x r`` (``n`` the unit normal), which diagonalize it:
    ``E^T (I + nu Hess g) E = diag(1, 1 + kappa)`` with ``kappa = c (w^T u)^2 >= 0``. ``ray`` and
    ``normal`` have shape ``(count, 3)`` (unit, orthogonal); ``kappa`` may be ``inf`` (NaN is
    taken as ``inf``).
    """
    u = _unit_rows(np.cross(normal, ray))
    f = np.where(np.isnan(kappa), 0.0, 1.0 / (1.0 + kappa))
    return ray[:, :, None] * ray[:, None, :] + (f[:, None, None] * u[:, :, None]) * u[:, None, :]


def _device_copy(
    copies: dict, key: Hashable, xp: Any, host: np.ndarray, like: Array, dtype: Any = None
) -> Array:
    """The NumPy array ``host`` (indices, exponents, svec factors, warm starts) as an array of
    the namespace and device of ``like`` (and of ``dtype``, if given).

    Copied to a device once per namespace, device and dtype and kept in ``copies`` under
    ``key``: a projection on a GPU moves nothing from the host. NumPy gets ``host`` itself.
    """
    if is_numpy_namespace(xp):
        return host if dtype is None else np.asarray(host, dtype=dtype)
    where = (key, xp.__name__, str(device(like)), str(dtype))
    out = copies.get(where)
    if out is None:
        out = copies[where] = xp.asarray(host, dtype=dtype, device=device(like))
    return out


def _row_norms(xp: Any, a: Array) -> Array:
    """Euclidean norms of the rows of a 2-D array, without overflow or underflow."""
    nrm = xp.sqrt(xp.sum(a * a, axis=1))
    bad = ~(nrm < 1e150) | (nrm < 1e-150)
    if a.shape[1] > 0 and bool(xp.any(bad)):
        sub = a[bad]
        scale = xp.max(xp.abs(sub), axis=1)
        safe = xp.where(scale > 0, scale, 1.0)
        nrm[bad] = scale * xp.sqrt(xp.sum((sub / safe[:, None]) ** 2, axis=1))
    return nrm


def _size_groups(sizes: np.ndarray, lengths: np.ndarray) -> list[tuple[int, np.ndarray | None]]:
    """Group the blocks by their ``sizes``; ``lengths`` are the blocks' vector lengths.

    Returns ``(size, idx)`` pairs where ``idx`` is a ``(count, length)`` integer array of the
    positions of every block of that size, or ``None`` when those blocks fill the whole vector
    contiguously (then a reshape suffices).
    """
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    groups = []
    for size in np.unique(sizes):
        members = np.flatnonzero(sizes == size)
        length = int(lengths[members[0]])
        idx = offsets[members][:, None] + np.arange(length)[None, :]
        whole = members.size == sizes.size
        groups.append((int(size), None if whole else idx))
    return groups


@functools.cache
def _svec_layout(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row and column of each svec entry (lower triangle, column-major), and the factors
    that pack (sqrt 2 off the diagonal) and unpack (1 / sqrt 2) it; computed once per n."""
    cols, rows = np.triu_indices(n)  # row-major upper == column-major lower, transposed
    off = rows != cols
    return rows, cols, np.where(off, _SQRT2, 1.0), np.where(off, 1.0 / _SQRT2, 1.0)


# The svec layouts' device copies (see _device_copy), by n.
_SVEC_COPIES: dict = {}


def svec_to_mat(v: Array, n: int) -> Array:
    """Unpack svec vectors into symmetric matrices.

    ``v`` has shape ``(..., n(n+1)/2)``: the lower triangle of an ``n x n`` symmetric matrix in
    column-major order with off-diagonal entries multiplied by sqrt(2) (so that
    ``<svec(A), svec(B)> = trace(AB)``). Returns shape ``(..., n, n)``.
    """
    xp = array_namespace(v)
    rows, cols, _, scale = _svec_layout(n)
    mat = xp.zeros((*v.shape[:-1], n, n), dtype=v.dtype, device=device(v))
    vals = v * _device_copy(_SVEC_COPIES, ("unpack", n), xp, scale, v, v.dtype)
    rows_i = _device_copy(_SVEC_COPIES, ("rows", n), xp, rows, v)
    cols_i = _device_copy(_SVEC_COPIES, ("cols", n), xp, cols, v)
    mat[..., rows_i, cols_i] = vals
    mat[..., cols_i, rows_i] = vals
    return mat


def mat_to_svec(m: Array) -> Array:
    """Pack symmetric matrices of shape ``(..., n, n)`` into svec vectors (see ``svec_to_mat``).

    Only the lower triangle of ``m`` is read. Returns shape ``(..., n(n+1)/2)``.
    """
    xp = array_namespace(m)
    n = m.shape[-1]
    rows, cols, scale, _ = _svec_layout(n)
    rows_i = _device_copy(_SVEC_COPIES, ("rows", n), xp, rows, m)
    cols_i = _device_copy(_SVEC_COPIES, ("cols", n), xp, cols, m)
    return m[..., rows_i, cols_i] * _device_copy(_SVEC_COPIES, ("pack", n), xp, scale, m, m.dtype)


# --------------------------------------------------------------------------------------------
# Base class and the polyhedral cones
# --------------------------------------------------------------------------------------------


class Cone(ProxFunction):
    """Base: the indicator of a closed convex cone ``K`` in ``R^dim``, stored as one block.

    As a ``ProxFunction`` (``cvxprox.functions.prox``) of size ``dim``: the value is 0 on
    ``K`` (up to a violation of ``1e-9 max(1, ||v||_inf)``) and ``inf`` elsewhere,
    ``prox(v, t) = Pi_K(v)`` for every step ``t``, and the conjugate is the indicator of the
    polar cone, so
    ``prox_conj(v, s) = Pi_{K°}(v)``. The support function of ``K`` is 0 on ``K°`` and
    ``inf`` elsewhere (``support``). Projections run on any array namespace, so ``on``
    returns the cone itself.

    Subclasses implement ``project``, ``project_derivative`` and ``scaling_blocks``;
    ``project_dual`` and ``project_polar`` follow from Moreau's decomposition and may be overridden
    when cheaper.
    """

    is_indicator = True
    device_arrays = ()
    dim: int
    name: str

    @property
    def size(self) -> int:  # type: ignore[override]
        """The length ``dim`` of the vectors the indicator acts on."""
        return self.dim

    def project(self, v: Array) -> Array:
        """Euclidean projection of ``v`` (shape ``(dim,)``) onto ``K``; a new ``(dim,)`` array."""
        raise NotImplementedError

    def project_derivative(self, v: Array) -> sp.csr_array:
        """The Jacobian ``DPi_K(v)`` (shape ``(dim, dim)``) of the projection at ``v``.

        A SciPy CSR array (float64) for any 1-D floating input of length ``dim``; symmetric with
        eigenvalues in ``[0, 1]``. Where ``Pi_K`` is not differentiable, an element of Clarke's
        generalized Jacobian (documented per cone).
        """
        raise NotImplementedError

    def project_dual(self, v: Array) -> Array:
        """Projection onto the dual cone ``K*``: ``Pi_{K*}(v) = v + Pi_K(-v)``."""
        return v + self.project(-v)

    def project_polar(self, v: Array) -> Array:
        """Projection onto the polar cone ``K° = -K*``: ``Pi_{K°}(v) = v - Pi_K(v)``."""
        return v - self.project(v)

    def scaling_blocks(self) -> np.ndarray:
        """Lengths of the consecutive sub-blocks inside which a diagonal scaling must be uniform.

        A positive diagonal ``diag(e)`` maps ``K`` onto itself when ``e`` is constant on each
        block. Integer array summing to ``dim``.
        """
        raise NotImplementedError

    def __call__(self, v: Array) -> float:
        """The indicator of ``K`` at ``v``: 0 when ``||v - Pi_K(v)||_inf <= 1e-9 max(1,
        ||v||_inf)``, else ``inf`` (one scalar read back from a device)."""
        xp, w, _ = _prepare(self._vector(v), self.dim)
        if self.dim == 0:
            return 0.0
        scale = max(1.0, float(xp.max(xp.abs(w))))
        gap = float(xp.max(xp.abs(w - self.project(w))))
        return 0.0 if gap <= _FEAS_TOL * scale else math.inf

    def prox(self, v: Array, t: float) -> Array:
        """``Pi_K(v)``: the prox of an indicator is the projection, whatever the step."""
        _step(t)
        return self.project(self._vector(v))

    def prox_conj(self, v: Array, s: float) -> Array:
        """``Pi_{K°}(v)``: the conjugate of the indicator of ``K`` is that of ``K°``."""
        _step(s, "s")
        return self.project_polar(self._vector(v))

    def support(self, y: Array) -> tuple[Array, float]:
        """``(Pi_{K°}(y), 0)``: the support function of ``K`` is 0 on ``K°``, ``inf`` off it."""
        return self.project_polar(y), 0.0

    def on(self, backend: Any) -> Cone:
        """The cone itself: its projections run on every backend's arrays."""
        return self

    def describe(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()}, dim={self.dim})"


class ZeroCone(Cone):
    """The zero cone ``{0} ⊂ R^dim``; its dual cone is ``R^dim``."""

    name = "zero"

    def __init__(self, dim: int) -> None:
        if dim < 0:
            raise ValueError("dim must be nonnegative")
        self.dim = int(dim)

    def project(self, v: Array) -> Array:
        """Return zeros of shape ``(dim,)``."""
        xp, _, dtype = _prepare(v, self.dim)
        return xp.zeros((self.dim,), dtype=dtype, device=device(v))

    def project_derivative(self, v: Array) -> sp.csr_array:
        """``DPi(v) = 0``: the zero ``(dim, dim)`` matrix."""
        _host_float64(v, self.dim)
        return sp.csr_array((self.dim, self.dim), dtype=np.float64)

    def project_dual(self, v: Array) -> Array:
        """The dual cone is ``R^dim``: return a copy of ``v``."""
        xp, _, _ = _prepare(v, self.dim)
        return xp.asarray(v, copy=True)

    def project_polar(self, v: Array) -> Array:
        """The polar cone is ``R^dim``: return a copy of ``v``."""
        return self.project_dual(v)

    def scaling_blocks(self) -> np.ndarray:
        return np.ones(self.dim, dtype=np.int64)


class NonnegCone(Cone):
    """The nonnegative orthant ``R_+^dim`` (self-dual): ``Pi(v) = max(v, 0)``."""

    name = "nonneg"

    def __init__(self, dim: int) -> None:
        if dim < 0:
            raise ValueError("dim must be nonnegative")
        self.dim = int(dim)

    def project(self, v: Array) -> Array:
        """Return ``max(v, 0)`` elementwise."""
        xp, _, _ = _prepare(v, self.dim)
        return xp.maximum(v, 0.0)

    def project_derivative(self, v: Array) -> sp.csr_array:
        """``DPi(v) = diag(v > 0)``; at ``v_i = 0`` (not differentiable) the entry is 0."""
        pos = np.flatnonzero(_host_float64(v, self.dim) > 0)
        return _block_diag_csr(self.dim, (pos, np.ones(pos.size)))

    def project_dual(self, v: Array) -> Array:
        """Self-dual: same as ``project``."""
        return self.project(v)

    def project_polar(self, v: Array) -> Array:
        """Return ``min(v, 0)`` elementwise."""
        xp, _, _ = _prepare(v, self.dim)
        return xp.minimum(v, 0.0)

    def scaling_blocks(self) -> np.ndarray:
        return np.ones(self.dim, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Second-order cones
# --------------------------------------------------------------------------------------------


class SecondOrderCone(Cone):
    """Product of second-order cones ``{(t, x) in R x R^(m-1) : ||x||_2 <= t}`` (self-dual).

    ``sizes`` lists the block lengths ``m >= 1`` in order; a block of size 1 is ``t >= 0``.
    For one block, with ``s = ||x||``: ``Pi(t, x) = (t, x)`` if ``s <= t``, ``0`` if
    ``s <= -t``, else ``(t + s)/2 * (1, x/s)``.
    """

    name = "soc"

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = np.asarray(sizes, dtype=np.int64).reshape(-1)
        if np.any(self.sizes < 1):
            raise ValueError("second-order cone sizes must be >= 1")
        self.dim = int(self.sizes.sum())
        self._groups = _size_groups(self.sizes, self.sizes)
        self._positions = _block_positions(self.sizes, self.sizes)
        self._copies: dict = {}  # device copies of the groups' indices (_device_copy)

    @_quiet
    def project(self, v: Array) -> Array:
        """Project every block; returns shape ``(dim,)``."""
        xp, w, dtype = _prepare(v, self.dim)
        out = xp.zeros((self.dim,), dtype=xp.float64, device=device(v))
        for size, idx in self._groups:
            if idx is None:
                out = xp.reshape(self._project_blocks(xp, xp.reshape(w, (-1, size))), (-1,))
            else:
                flat = _device_copy(self._copies, size, xp, idx.reshape(-1), w)
                proj = self._project_blocks(xp, xp.reshape(w[flat], idx.shape))
                out[flat] = xp.reshape(proj, (-1,))
        return xp.astype(out, dtype, copy=False)

    @staticmethod
    def _project_blocks(xp: Any, blocks: Array) -> Array:
        """Project the rows ``(t, x)`` of a ``(count, m)`` array onto the SOC of size ``m``."""
        t, x = blocks[:, 0], blocks[:, 1:]
        s = _row_norms(xp, x)
        inside = s <= t
        polar = s <= -t
        safe_s = xp.where(s > 0, s, 1.0)
        coef_t = xp.where(inside, t, xp.where(polar, 0.0, 0.5 * t + 0.5 * s))
        coef_x = xp.where(inside, 1.0, xp.where(polar, 0.0, 0.5 * (t / safe_s + 1.0)))
        return xp.concat([coef_t[:, None], x * coef_x[:, None]], axis=1)

    @_quiet
    def project_derivative(self, v: Array) -> sp.csr_array:
        """Block-diagonal Jacobian; for a block ``(t, x)`` with ``s = ||x||``:

            I                                               if s < t,
            0                                               if s < -t,
            1/2 [[1, x^T/s], [x/s, (1 + t/s) I - (t/s) x x^T/s^2]]   if s > |t|.

        On the nondifferentiable set the limit from the interior of ``K`` is used at
        ``s = t > 0`` (``I``) and the limit from the polar cone at ``s = -t >= 0`` (``0``, also at
        ``(t, x) = 0``); a block of size 1 gives ``[t > 0]``. Each distinct block size is handled
        with array operations (identity blocks contribute only their diagonal); each block is
        scaled to max-abs 1 first (the Jacobian is invariant under positive scaling).
        """
        w = _host_float64(v, self.dim)
        diag, dense = [], []
        for size, idx in self._positions:
            blocks = w[idx]
            scale = np.max(np.abs(blocks), axis=1)
            blocks = blocks / np.where(scale > 0, scale, 1.0)[:, None]
            t, x = blocks[:, 0], blocks[:, 1:]
            s = _row_norms(np, x)
            inside = (s <= t) & (t > 0)
            general = ~inside & ~(s <= -t)  # there s > |t| >= 0
            diag.append(idx[inside].reshape(-1))
            if size > 1 and np.any(general):
                t, s, unit = t[general], s[general], x[general] / s[general][:, None]
                ratio = t / s
                jac = np.empty((t.size, size, size))
                jac[:, 0, 0] = 0.5
                jac[:, 0, 1:] = jac[:, 1:, 0] = 0.5 * unit
                jac[:, 1:, 1:] = (-0.5 * ratio)[:, None, None] * unit[:, :, None] * unit[:, None, :]
                rng = np.arange(1, size)
                jac[:, rng, rng] += (0.5 + 0.5 * ratio)[:, None]
                dense.append((idx[general], jac))
        pos = np.concatenate(diag)
        return _block_diag_csr(self.dim, (pos, np.ones(pos.size)), dense)

    def project_dual(self, v: Array) -> Array:
        """Self-dual: same as ``project``."""
        return self.project(v)

    def scaling_blocks(self) -> np.ndarray:
        return self.sizes.copy()

    def __repr__(self) -> str:
        return f"SecondOrderCone(sizes={self.sizes.tolist()})"


# --------------------------------------------------------------------------------------------
# Positive semidefinite cones
# --------------------------------------------------------------------------------------------


class PSDCone(Cone):
    """Product of PSD cones of ``n x n`` symmetric matrices, each stored as an svec vector.

    ``sizes`` lists the matrix orders ``n``; a block has length ``n(n+1)/2`` (see
    ``svec_to_mat``; the svec map is an isometry, so the projection is the matrix one). The cone is
    self-dual. ``Pi(A) = Q diag(max(lambda, 0)) Q^T`` from the eigendecomposition ``A = Q diag
    (lambda) Q^T``, computed with one batched ``eigh`` per distinct order ``n``.
    """

    name = "psd"

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = np.asarray(sizes, dtype=np.int64).reshape(-1)
        if np.any(self.sizes < 1):
            raise ValueError("PSD matrix orders must be >= 1")
        self._lengths = self.sizes * (self.sizes + 1) // 2
        self.dim = int(self._lengths.sum())
        self._groups = _size_groups(self.sizes, self._lengths)
        self._positions = _block_positions(self.sizes, self._lengths)
        self._copies: dict = {}  # device copies of the groups' indices (_device_copy)

    @_quiet
    def project(self, v: Array) -> Array:
        """Project every svec block onto the PSD cone; returns shape ``(dim,)``."""
        xp, w, dtype = _prepare(v, self.dim)
        out = xp.zeros((self.dim,), dtype=xp.float64, device=device(v))
        for n, idx in self._groups:
            if idx is None:
                out = xp.reshape(
                    self._project_blocks(xp, xp.reshape(w, (-1, n * (n + 1) // 2)), n), (-1,)
                )
            else:
                flat = _device_copy(self._copies, n, xp, idx.reshape(-1), w)
                proj = self._project_blocks(xp, xp.reshape(w[flat], idx.shape), n)
                out[flat] = xp.reshape(proj, (-1,))
        return xp.astype(out, dtype, copy=False)

    @staticmethod
    def _project_blocks(xp: Any, blocks: Array, n: int) -> Array:
        """Project the svec rows of a ``(count, n(n+1)/2)`` array onto the PSD cone."""
        scale = xp.max(xp.abs(blocks), axis=1)
        scale = xp.where(scale > 0, scale, 1.0)[:, None]
        mats = svec_to_mat(blocks / scale, n)
        lam, vecs = xp.linalg.eigh(mats)
        lam_pos = xp.maximum(lam, 0.0)
        proj = (vecs * lam_pos[:, None, :]) @ xp.matrix_transpose(vecs)
        return mat_to_svec(proj) * scale

    @_quiet
    def project_derivative(self, v: Array) -> sp.csr_array:
        """Block-diagonal Jacobian in svec coordinates, one batched ``eigh`` per distinct order.

        With ``A = Q diag(lambda) Q^T`` (Daleckii-Krein),

            DPi(A)[H] = Q (B ∘ (Q^T H Q)) Q^T,
            B_ij = (max(lambda_i, 0) - max(lambda_j, 0)) / (lambda_i - lambda_j),

        where ``B_ij = 1`` if ``lambda_i, lambda_j > 0`` and ``0`` if both are ``<= 0`` (this also
        covers ``lambda_i = lambda_j``). As svec is an isometry, the block is ``J = T^T diag(b) T``
        with ``T`` the orthogonal matrix of ``svec(H) -> svec(Q^T H Q)`` and ``b`` the svec-ordered
        entries of ``B``; hence symmetric with eigenvalues ``B_ij in [0, 1]``. ``Pi`` is
        differentiable iff ``A`` has no zero eigenvalue; a zero eigenvalue is treated as negative
        (the limit from ``lambda -> 0^-``, an element of Clarke's generalized Jacobian).
        """
        w = _host_float64(v, self.dim)
        diag, dense = [], []
        for n, idx in self._positions:
            blocks = w[idx]
            scale = np.max(np.abs(blocks), axis=1)
            mats = svec_to_mat(blocks / np.where(scale > 0, scale, 1.0)[:, None], n)
            lam, q = np.linalg.eigh(mats)
            full = np.all(lam > 0, axis=1)  # J = I
            mixed = ~full & np.any(lam > 0, axis=1)  # (J = 0 for the remaining blocks)
            diag.append(idx[full].reshape(-1))
            idx, lam, q = idx[mixed], lam[mixed], q[mixed]
            length = n * (n + 1) // 2
            step = max(1, 2**22 // length**2)  # bounds the temporaries to ~32 MB each
            for start in range(0, idx.shape[0], step):
                part = slice(start, start + step)
                dense.append((idx[part], self._svec_jacobians(lam[part], q[part], n)))
        pos = np.concatenate(diag)
        return _block_diag_csr(self.dim, (pos, np.ones(pos.size)), dense)

    @staticmethod
    def _svec_jacobians(lam: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
        """The svec Jacobians ``T^T diag(b) T`` (shape ``(count, k, k)``, ``k = n(n+1)/2``) for
        eigendecompositions ``lam`` (``(count, n)``) and ``q`` (``(count, n, n)``)."""
        li, lj = lam[:, :, None], lam[:, None, :]
        pos_i, pos_j = li > 0, lj > 0
        split = pos_i != pos_j
        frac = (np.maximum(li, 0.0) - np.maximum(lj, 0.0)) / np.where(split, li - lj, 1.0)
        bmat = np.where(pos_i & pos_j, 1.0, np.where(split, frac, 0.0))
        rows, cols, pack, _ = _svec_layout(n)
        b = bmat[:, rows, cols]
        # t[:, a, c] = svec(Q^T E_a Q)_c for the orthonormal svec basis E_a of entry a = (i, j):
        # (Q^T E_a Q)_kl = (Q_ik Q_jl + Q_jk Q_il) / sqrt(2), or Q_ik Q_il when i = j.
        # The upper triangle of a symmetric (k, l) matrix in row-major order is svec's order.
        outer = q[:, rows, :, None] * q[:, cols, None, :]  # [:, a, k, l] = Q_ik Q_jl
        upper = np.triu(np.ones((n, n), dtype=bool))
        t = outer[:, :, upper] + np.swapaxes(outer, 2, 3)[:, :, upper]
        half = np.where(rows != cols, 1.0 / _SQRT2, 0.5)
        t *= half[None, :, None] * pack[None, None, :]
        jac = (t * b[:, None, :]) @ np.swapaxes(t, 1, 2)
        return 0.5 * (jac + np.swapaxes(jac, 1, 2))

    def project_dual(self, v: Array) -> Array:
        """Self-dual: same as ``project``."""
        return self.project(v)

    def scaling_blocks(self) -> np.ndarray:
        return self._lengths.copy()

    def __repr__(self) -> str:
        return f"PSDCone(sizes={self.sizes.tolist()})"


# --------------------------------------------------------------------------------------------
# Exponential cones
# --------------------------------------------------------------------------------------------


def _exp_residual(xp: Any, rho: Array, x: Array, y: Array, z: Array) -> tuple[Array, Array]:
    """Scalar optimality residual ``G(rho)`` of the exponential-cone projection and ``G'(rho)``.

    For a point ``v = (x, y, z)`` outside ``K ∪ K°``, write the projection ``p = s (rho, 1, e^rho)``
    and the polar part ``v - p = mu (1, 1 - rho, -e^-rho)`` (the rays are orthogonal). The first
    two coordinates give ``s = S/q`` and ``mu = M/q`` with ``S = (rho - 1) x + y``,
    ``M = x - rho y``, ``q = rho^2 - rho + 1``; the third holds iff
    ``S e^rho - M e^-rho - q z = 0``. On the bracket where ``S, M > 0`` this is equivalent to

        G(rho) = log(S e^rho + q z_-) - log(M e^-rho + q z_+) = 0,

    which is evaluated with ``e^{±rho}`` factored out (no overflow). ``G`` has one sign change
    there, from negative to positive. Returns ``(G, G')``; ``G = -inf`` (``+inf``) where ``S``
    (``M``) rounds to a nonpositive value.
    """
    e_a = xp.exp(-xp.maximum(rho, 0.0))
    e_b = xp.exp(xp.minimum(rho, 0.0))
    s_num = (rho - 1.0) * x + y
    m_num = x - rho * y
    q = rho * rho - rho + 1.0
    dq = 2.0 * rho - 1.0
    z_neg = xp.maximum(-z, 0.0)
    z_pos = xp.maximum(z, 0.0)
    t1 = s_num * e_b + q * z_neg * e_a
    t2 = m_num * e_a + q * z_pos * e_b
    ok1 = t1 > 0
    ok2 = t2 > 0
    t1s = xp.where(ok1, t1, 1.0)
    t2s = xp.where(ok2, t2, 1.0)
    g = rho + xp.log(t1s) - xp.log(t2s)
    g = xp.where(ok1, xp.where(ok2, g, xp.inf), -xp.inf)
    dg = ((x + s_num) * e_b + dq * z_neg * e_a) / t1s - (dq * z_pos * e_b - (y + m_num) * e_a) / t2s
    return g, dg


def _exp_solve(xp: Any, x: Array, y: Array, z: Array, start: Array | None = None) -> Array:
    """Find the root ``rho`` of ``_exp_residual`` for every point (general case, max-abs 1).

    ``start`` (optional, NaN where unknown) is a guess per point, used where it lies
    strictly inside the bracket: a solver projecting nearby points again and again passes
    the previous roots, and Newton then converges in one or two steps.

    The bracket is ``{S > 0, M > 0}``: ``rho > 1 - y/x`` when ``x > 0`` and ``rho < x/y`` when
    ``y > 0`` (at least one holds since not both ``x, y <= 0``), intersected with
    ``[_EXP_RHO_DOWN, _EXP_RHO_UP]`` (see there). Safeguarded Newton: a Newton step is taken when
    it stays inside the bracket, otherwise a Newton step in ``log(distance to the bracket end)``
    (exact for the logarithmic singularities of ``G`` at the ends), otherwise bisection.
    """
    inf = float("inf")
    lo = xp.where(x > 0, 1.0 - y / xp.where(x > 0, x, 1.0), -inf)
    hi = xp.where(y > 0, x / xp.where(y > 0, y, 1.0), inf)
    # G is (nearly) logarithmically singular at the analytic ends when z is (nearly) 0 there.
    end_lo, end_hi = lo, hi
    hi = xp.minimum(xp.maximum(hi, _EXP_RHO_MIN), _EXP_RHO_UP)
    lo = xp.minimum(xp.maximum(lo, xp.where(hi < _EXP_RHO_AT_HI, hi, _EXP_RHO_DOWN)), _EXP_RHO_UP)
    # Start one unit inside the end of smaller magnitude (the other may be far away).
    mid = 0.5 * (lo + hi)
    rho = xp.where(hi - lo <= 2.0, mid, xp.where(xp.abs(lo) < xp.abs(hi), lo + 1.0, hi - 1.0))
    if start is not None:
        rho = xp.where((start > lo) & (start < hi), start, rho)

    result = xp.asarray(rho, copy=True)
    act = xp.arange(x.shape[0], device=device(x))
    for it in range(_MAX_ITER):
        if act.shape[0] == 0:
            break
        g, dg = _exp_residual(xp, rho, x, y, z)
        lo = xp.where(g < 0, rho, lo)
        hi = xp.where(g > 0, rho, hi)
        scale = xp.maximum(xp.abs(rho), 1.0)
        step = g / dg
        newton = rho - step
        good = (dg > 0) & xp.isfinite(step)
        # Newton step in log(distance to the end the root lies towards).
        dist = xp.where(g > 0, rho - lo, hi - rho)
        shrink = xp.maximum(dist * xp.exp(-xp.abs(step) / dist), 0.5 * _TOL * scale)
        log_step = xp.where(g > 0, lo + shrink, hi - shrink)
        inside = good & (newton > lo) & (newton < hi)
        log_ok = good & (log_step > lo) & (log_step < hi)
        cand = xp.where(inside, newton, xp.where(log_ok, log_step, 0.5 * (lo + hi)))
        if it >= _BISECT_AFTER:
            cand = 0.5 * (lo + hi)
        # A short Newton step means convergence unless it is short only because G is steep near
        # a (near) logarithmic singularity at an analytic end.
        room = 0.5 * xp.minimum(rho - end_lo, end_hi - rho)
        small = (g == 0) | (good & (xp.abs(step) <= xp.minimum(_TOL * scale, room)))
        final = xp.where(g == 0, rho, xp.minimum(xp.maximum(newton, lo), hi))
        rho = xp.where(small, final, cand)
        done = small | (hi - lo <= _TOL * scale)
        if bool(xp.any(done)):
            result[act[done]] = rho[done]
            keep = ~done
            act, rho, lo, hi, end_lo, end_hi, x, y, z = (
                a[keep] for a in (act, rho, lo, hi, end_lo, end_hi, x, y, z)
            )
    if act.shape[0] > 0:
        result[act] = rho
    return result


class ExpCone(Cone):
    """Product of ``count`` exponential cones in CVXPY's order, laid out ``[x0,y0,z0, x1,...]``.

    ``K = cl{(x, y, z) : y > 0, y exp(x/y) <= z}
        = {y > 0, y exp(x/y) <= z} ∪ {x <= 0, y = 0, z >= 0}``, with polar cone
    ``K° = {x > 0, x exp(y/x - 1) <= -z} ∪ {x = 0, y <= 0, z <= 0}``.

    Projection of ``v = (x, y, z)`` (Friberg 2021, "Projection onto the exponential cone: a
    univariate root-finding problem"): ``v`` itself if ``v in K``; ``0`` if ``v in K°`` (points
    within ``1e-14 max|v|`` of ``K`` or ``K°`` count as inside and are snapped onto it);
    ``(x, 0, max(z, 0))`` if ``x <= 0`` and ``y <= 0``; otherwise the projection lies on the
    curved boundary at ``p = s (rho, 1, e^rho)`` where ``rho`` is the root of a scalar equation
    (see ``_exp_residual``), found by safeguarded Newton for all such cones at once, and ``p`` is
    taken as the projection of ``v`` onto that ray (so ``p in K`` and ``p ⟂ v - p`` hold to
    rounding). Each triple is divided by its largest magnitude first (the projection is
    positively homogeneous), so any finite magnitude is handled.
    """

    name = "exp"

    def __init__(self, count: int) -> None:
        if count < 0:
            raise ValueError("count must be nonnegative")
        self.count = int(count)
        self.dim = 3 * self.count
        # The last root found for each cone: the starting guess of the next projection.
        self._last_rho = np.full(self.count, np.nan)
        self._copies: dict = {}  # _last_rho on each device (_device_copy)

    def _cases(self, xp: Any, w: Array) -> tuple[Array, ...]:
        """Split the float64 vector ``w`` into the projection's cases.

        Returns ``(scale, x, y, z, x_bd, in_k, in_polar, face, general)``: the max-abs of each
        triple, the scaled coordinates, ``y log(z/y)`` (where ``y, z > 0``) and the case masks.
        """
        trip = xp.reshape(w, (-1, 3))
        scale = xp.max(xp.abs(trip), axis=1)
        unit = trip / xp.where(scale > 0, scale, 1.0)[:, None]
        x, y, z = unit[:, 0], unit[:, 1], unit[:, 2]
        # Membership up to a horizontal move of _EXP_EDGE: x <= y log(z/y) for K,
        # y <= x (1 + log(-z/x)) for K°; such points are snapped onto the cone (resp. to 0).
        log_z = xp.log(xp.where(z != 0, xp.abs(z), 1.0))
        pos_x = xp.where(x > 0, x, 1.0)
        pos_y = xp.where(y > 0, y, 1.0)
        x_bd = pos_y * (log_z - xp.log(pos_y))
        y_bd = pos_x * (1.0 + log_z - xp.log(pos_x))
        in_k = ((y > 0) & (z > 0) & (x <= x_bd + _EXP_EDGE)) | ((x <= 0) & (y == 0) & (z >= 0))
        in_polar = ((x > 0) & (z < 0) & (y <= y_bd + _EXP_EDGE)) | ((x == 0) & (y <= 0) & (z <= 0))
        in_polar = in_polar | (scale == 0)
        in_k = in_k & ~in_polar
        face = (x <= 0) & (y <= 0) & ~in_k & ~in_polar
        general = ~(in_k | in_polar | face)
        return scale, x, y, z, x_bd, in_k, in_polar, face, general

    def _roots(self, xp: Any, gx: Array, gy: Array, gz: Array, general: Array) -> Array:
        """``rho`` for the ``general`` triples ``(gx, gy, gz)``, warm-started from the last
        roots found on the same device (``_last_rho`` on the host, a copy per device)."""
        last = _device_copy(self._copies, "last_rho", xp, self._last_rho, gx)
        rho = _exp_solve(xp, gx, gy, gz, last[general])
        last[general] = rho
        return rho

    @_quiet
    def project(self, v: Array) -> Array:
        """Project every triple onto the exponential cone; returns shape ``(dim,)``."""
        xp, w, dtype = _prepare(v, self.dim)
        scale, x, y, z, x_bd, in_k, _, face, general = self._cases(xp, w)
        px = xp.where(in_k & (y > 0), xp.minimum(x, x_bd), xp.where(in_k | face, x, 0.0))
        py = xp.where(in_k, y, 0.0)
        pz = xp.where(in_k, z, xp.where(face, xp.maximum(z, 0.0), 0.0))
        if bool(xp.any(general)):
            gx, gy, gz = x[general], y[general], z[general]
            rho = self._roots(xp, gx, gy, gz, general)
            cap = xp.maximum(rho, 0.0)
            rx, ry, rz = rho * xp.exp(-cap), xp.exp(-cap), xp.exp(rho - cap)
            nrm2 = rx * rx + ry * ry + rz * rz  # in [1, 1 + 1e200]: no overflow
            coef = xp.maximum(gx * rx + gy * ry + gz * rz, 0.0) / nrm2
            px[general], py[general], pz[general] = coef * rx, coef * ry, coef * rz
        out = xp.stack([px, py, pz], axis=1)
        return xp.astype(xp.reshape(out * scale[:, None], (-1,)), dtype, copy=False)

    @_quiet
    def project_derivative(self, v: Array) -> sp.csr_array:
        """Block-diagonal Jacobian with one ``3 x 3`` block per cone, by the projection's cases.

        ``I`` in ``K`` and ``0`` in ``K°`` (also for the points within ``1e-14 max|v|`` that
        ``project`` snaps, and at ``v = 0``); ``diag(1, 0, [z > 0])`` where ``x <= 0, y <= 0``
        and ``Pi(v) = (x, 0, max(z, 0))``. On the curved boundary, ``p = s r`` with the ray
        ``r = (rho, 1, e^rho)`` and ``v - p = mu n``, ``n = (1, 1 - rho, -e^-rho)`` (see
        ``_exp_residual``). With ``g(p) = p_y exp(p_x/p_y) - p_z``, ``grad g(p) = e^rho n``,
        ``v - p = (mu e^-rho) grad g(p)`` and ``Hess g(p) = (e^rho / s) w w^T``, ``w = (1, -rho,
        0)``, so ``mu e^-rho Hess g = (mu/s) w w^T`` with ``mu/s = M/S`` (``M = x - rho y``,
        ``S = (rho - 1) x + y``). Implicit differentiation of the KKT system (``_ray_jacobian``)
        gives, with the unit vectors ``r^ = r/||r||``, ``n^ = n/||n||`` and ``u = n^ x r^``,

            DPi(v) = r^ r^^T + u u^T / (1 + (M/S) (w^T u)^2),
            (w^T u)^2 = (e^rho + (1 + rho^2) e^-rho)^2 / (||n||^2 ||r||^2)

        (evaluated with ``e^{-2|rho|}`` factored out: no overflow, no cancellation). The Jacobian
        is invariant under positive scaling of ``v``; it is computed from the triples scaled to
        max-abs 1, like ``project``.
        """
        w = _host_float64(v, self.dim)
        _, x, y, z, _, in_k, _, face, general = self._cases(_NUMPY, w)
        jac = np.zeros((self.count, 3, 3))
        jac[in_k] = np.eye(3)
        jac[face, 0, 0] = 1.0
        jac[face, 2, 2] = z[face] > 0
        if np.any(general):
            gx, gy, gz = x[general], y[general], z[general]
            rho = self._roots(_NUMPY, gx, gy, gz, general)
            e_hi, e_lo = np.exp(-np.maximum(rho, 0.0)), np.exp(np.minimum(rho, 0.0))
            ray = np.stack([rho * e_hi, e_hi, e_lo], axis=1)  # r e^-max(rho, 0)
            normal = np.stack([e_lo, (1.0 - rho) * e_lo, -e_hi], axis=1)  # n e^min(rho, 0)
            ray, normal = _unit_rows(ray), _unit_rows(normal)
            s_num = np.maximum((rho - 1.0) * gx + gy, 0.0)
            m_num = np.maximum(gx - rho * gy, 0.0)
            e2 = np.exp(-2.0 * np.abs(rho))
            wu2 = np.where(
                rho >= 0,
                (1.0 + e2 * (1.0 + rho * rho)) / (1.0 + (1.0 - rho) ** 2 + e2),
                (1.0 + rho * rho + e2) / (1.0 + e2 * (1.0 + (1.0 - rho) ** 2)),
            )
            jac[general] = _ray_jacobian(ray, normal, m_num / s_num * wu2)
        return _triples_csr(jac, general)

    def scaling_blocks(self) -> np.ndarray:
        return np.full(self.count, 3, dtype=np.int64)

    def __repr__(self) -> str:
        return f"ExpCone(count={self.count})"


# --------------------------------------------------------------------------------------------
# Power cones
# --------------------------------------------------------------------------------------------


def _logistic(xp: Any, u: Array) -> tuple[Array, Array, Array]:
    """Return ``(e^-|u|, sigma(u), sigma(-u))`` with ``sigma(u) = 1 / (1 + e^-u)``, no overflow."""
    e = xp.exp(-xp.abs(u))
    return e, xp.where(u >= 0, 1.0, e) / (1.0 + e), xp.where(u >= 0, e, 1.0) / (1.0 + e)


def _pow_coordinate(xp: Any, c: Array, a: Array, r: Array, d: Array) -> Array:
    """``x = (c + sqrt(c^2 + 4 a r d)) / 2``, the positive root of ``x^2 - c x - a r d = 0``.

    Evaluated without cancellation (``x = 2 a r d / (sqrt(c^2 + 4 a r d) - c)`` when ``c < 0``).
    """
    sq = xp.hypot(c, 2.0 * xp.sqrt(a * r) * xp.sqrt(d))
    return xp.where(c > 0, 0.5 * (c + sq), xp.where(c < 0, 2.0 * a * r * d / (sq - c), 0.5 * sq))


def _pow_branch(
    xp: Any,
    c: Array,
    a: Array,
    log_a: Array,
    r: Array,
    d: Array,
    sqrt_rd: Array,
    log_rd: Array,
    dmr: Array,
) -> tuple[Array, Array]:
    """``log x`` and its scaled derivative for ``x = _pow_coordinate(c, a, r, d)``.

    ``sqrt_rd = sqrt(r) sqrt(d)``, ``log_rd = log(r d)`` and ``dmr = (d - r) / |z|`` are shared by
    both coordinates. Returns ``(log x, (dx/dr) / x * r d / |z|)``, computed without cancellation
    or underflow.
    """
    sq = xp.hypot(c, 2.0 * xp.sqrt(a) * sqrt_rd)  # sqrt(c^2 + 4 a r d)
    pos = c > 0
    neg = c < 0
    arg = xp.where(pos, 0.5 * (c + sq), xp.where(neg, sq - c, 1.0))
    log_arg = xp.log(arg)
    log_x = xp.where(
        pos, log_arg, xp.where(neg, _LOG2 + log_a + log_rd - log_arg, 0.5 * (log_a + log_rd))
    )
    safe_sq = xp.where(sq > 0, sq, 1.0)
    # For c > 0: r d / (sq x) <= 1 / (2a) since sq >= 2 sqrt(a r d) and x >= sq / 2.
    ratio = (r / safe_sq) * (d / arg)
    ratio = xp.where(ratio < 0.5 / a, ratio, 0.5 / a)
    dlog = dmr * xp.where(pos, a * ratio, xp.where(neg, 0.5 - 0.5 * c / safe_sq, 0.5))
    return log_x, dlog


def _pow_eval(
    xp: Any,
    u: Array,
    x0: Array,
    y0: Array,
    zz: Array,
    a: Array,
    log_zz: Array,
    log_a: Array,
    log_b: Array,
) -> tuple[Array, Array, Array, Array]:
    """Residual of the power-cone projection in the logistic variable ``u``.

    ``r = |z| sigma(u)`` and ``d = |z| - r = |z| sigma(-u)`` (both with full relative accuracy).
    ``g(u) = a log x(r) + (1-a) log y(r) - log r`` is positive left of the root, negative right of
    it; ``log_a, log_b`` are ``log a, log(1 - a)``. Returns ``(g, dg/du, r, d)``.
    """
    e, sig_p, sig_m = _logistic(xp, u)
    soft = xp.log1p(e)
    r = zz * sig_p
    d = zz * sig_m
    log_r = log_zz + xp.minimum(u, 0.0) - soft
    log_rd = 2.0 * (log_zz - soft) - xp.abs(u)
    sqrt_rd = xp.sqrt(r) * xp.sqrt(d)
    dmr = sig_m - sig_p
    b = 1.0 - a
    log_x, dx = _pow_branch(xp, x0, a, log_a, r, d, sqrt_rd, log_rd, dmr)
    log_y, dy = _pow_branch(xp, y0, b, log_b, r, d, sqrt_rd, log_rd, dmr)
    g = a * log_x + b * log_y - log_r
    dg = a * dx + b * dy - sig_m
    return g, dg, r, d


def _pow_solve(xp: Any, x0: Array, y0: Array, zz: Array, a: Array) -> Array:
    """Solve the power-cone KKT equation for all points (general case, scaled to max-abs 1).

    The unknown ``r = |z_p| in (0, |z|)`` is parametrized as ``r = |z| sigma(u)``, which makes the
    logarithmic singularities of ``g`` at both ends linear in ``u``. Safeguarded Newton in ``u``;
    when ``x0 < 0`` and ``y0 < 0`` (then ``g`` is flat in ``u`` as ``r -> 0``) the Newton step is
    taken in ``r`` instead, with the other variable as a fallback, then damped bisection.
    Returns ``u`` at the root.
    """
    big = _POW_U_MAX
    trust = 16.0  # largest fallback move in u (a factor e^16 in r or |z| - r)
    log_zz = xp.log(zz)
    log_a = xp.log(a)
    log_b = xp.log1p(-a)
    lin = (x0 < 0) & (y0 < 0)
    u = xp.zeros_like(zz)
    lo = xp.full(zz.shape, -big, dtype=zz.dtype, device=device(zz))
    hi = xp.full(zz.shape, big, dtype=zz.dtype, device=device(zz))
    result = xp.asarray(u, copy=True)
    act = xp.arange(zz.shape[0], device=device(zz))
    for it in range(_MAX_ITER):
        if act.shape[0] == 0:
            break
        g, dg, r, d = _pow_eval(xp, u, x0, y0, zz, a, log_zz, log_a, log_b)
        lo = xp.where(g > 0, u, lo)
        hi = xp.where(g < 0, u, hi)
        step = g / dg
        newton_u = u - step
        dr = -step * r * d / zz
        newton_r = xp.log(r + dr) - xp.log(d - dr)
        first = xp.where(lin, newton_r, newton_u)
        second = xp.where(lin, newton_u, newton_r)
        ok1 = (first > lo) & (first < hi)
        ok2 = (second > lo) & (second < hi)
        toward = xp.where(g < 0, lo, hi)
        move = 0.5 * (toward - u)
        if it < _BISECT_AFTER:
            move = xp.minimum(xp.maximum(move, -trust), trust)
            # A Newton step past an end of the initial bracket: the root is (numerically) there.
            beyond = ((g < 0) & (lo == -big) & ~(newton_u > -big)) | (
                (g > 0) & (hi == big) & ~(newton_u < big)
            )
            fallback = xp.where(beyond, toward, u + move)
            cand = xp.where(ok1, first, xp.where(ok2, second, fallback))
        else:
            cand = u + move
        scale = xp.maximum(xp.abs(u), 1.0)
        small = (g == 0) | (xp.isfinite(step) & (xp.abs(step) <= _TOL * scale))
        at_end = ((u == -big) & (g > 0)) | ((u == big) & (g < 0))
        final = xp.where(g == 0, u, xp.minimum(xp.maximum(newton_u, lo), hi))
        u = xp.where(small, final, xp.where(at_end, u, cand))
        done = small | at_end | (hi - lo <= _TOL * scale)
        if bool(xp.any(done)):
            result[act[done]] = u[done]
            keep = ~done
            act, u, lo, hi, x0, y0, zz, a, log_zz, log_a, log_b, lin = (
                arr[keep] for arr in (act, u, lo, hi, x0, y0, zz, a, log_zz, log_a, log_b, lin)
            )
    if act.shape[0] > 0:
        result[act] = u
    return result


class PowCone3D(Cone):
    """Product of 3-D power cones in CVXPY's order, laid out as triples ``(x, y, z)``.

    ``K_a = {(x, y, z) : x^a y^(1-a) >= |z|, x >= 0, y >= 0}`` with one ``a in (0, 1)`` per cone;
    dual cone ``K_a* = {(u, v, w) : (u/a)^a (v/(1-a))^(1-a) >= |w|, u >= 0, v >= 0}``.

    Projection of ``v = (x0, y0, z0)`` (Hien 2015, "Differential properties of Euclidean
    projection onto power cone"): ``v`` if ``v in K``; ``0`` if ``v in K° = -K*``;
    ``(max(x0,0), max(y0,0), 0)`` if ``z0 = 0``; otherwise ``(x(r), y(r), sign(z0) r)`` with
    ``x(r) = (x0 + sqrt(x0^2 + 4 a r (|z0| - r)))/2``, ``y(r)`` likewise with ``1 - a``, and
    ``r in (0, |z0|)`` the unique root of ``x(r)^a y(r)^(1-a) = r`` (safeguarded Newton for all
    such cones at once, see ``_pow_solve``). Each triple is divided by its largest magnitude
    first.
    """

    name = "pow3d"

    def __init__(self, alphas: Sequence[float]) -> None:
        self.alphas = np.asarray(alphas, dtype=np.float64).reshape(-1)
        if not np.all((self.alphas > 0) & (self.alphas < 1)):
            raise ValueError("power cone exponents must lie in (0, 1)")
        self.dim = 3 * self.alphas.size
        self._copies: dict = {}  # device copies of the exponents (_device_copy)

    def _cases(self, xp: Any, w: Array) -> tuple[Array, ...]:
        """Split the float64 vector ``w`` into the projection's cases.

        Returns ``(scale, alpha, x, y, z, in_k, in_polar, flat, general)``: the max-abs of each
        triple, the exponents, the scaled coordinates and the case masks.
        """
        alpha = _device_copy(self._copies, "alphas", xp, self.alphas, w)
        trip = xp.reshape(w, (-1, 3))
        scale = xp.max(xp.abs(trip), axis=1)
        unit = trip / xp.where(scale > 0, scale, 1.0)[:, None]
        x, y, z = unit[:, 0], unit[:, 1], unit[:, 2]
        az = xp.abs(z)
        safe_az = xp.where(az > 0, az, 1.0)
        both_pos = (x > 0) & (y > 0)
        both_neg = (x < 0) & (y < 0)
        log_prod = alpha * xp.log(xp.where(both_pos, x, 1.0)) + (1.0 - alpha) * xp.log(
            xp.where(both_pos, y, 1.0)
        )
        log_dual = alpha * xp.log(xp.where(both_neg, -x / alpha, 1.0)) + (1.0 - alpha) * xp.log(
            xp.where(both_neg, -y / (1.0 - alpha), 1.0)
        )
        in_k = (x >= 0) & (y >= 0) & ((az == 0) | (both_pos & (log_prod >= xp.log(safe_az))))
        in_polar = (x <= 0) & (y <= 0) & ((az == 0) | (both_neg & (log_dual >= xp.log(safe_az))))
        in_polar = (in_polar | (scale == 0)) & ~in_k
        flat = (az == 0) & ~in_k & ~in_polar
        general = ~(in_k | in_polar | flat)
        return scale, alpha, x, y, z, in_k, in_polar, flat, general

    @staticmethod
    def _boundary(xp: Any, gx: Array, gy: Array, gz: Array, ga: Array) -> tuple[Array, ...]:
        """``(u, r, d, x(r), y(r))`` for the general case: ``r = |z_p| = |z| sigma(u)`` and
        ``d = |z| - r = |z| sigma(-u)`` (so ``d / r = e^-u``)."""
        gzz = xp.abs(gz)
        u = _pow_solve(xp, gx, gy, gzz, ga)
        _, sig_p, sig_m = _logistic(xp, u)
        r, d = gzz * sig_p, gzz * sig_m
        px, py = _pow_coordinate(xp, gx, ga, r, d), _pow_coordinate(xp, gy, 1.0 - ga, r, d)
        return u, r, d, px, py

    @_quiet
    def project(self, v: Array) -> Array:
        """Project every triple onto its power cone; returns shape ``(dim,)``."""
        xp, w, dtype = _prepare(v, self.dim)
        scale, alpha, x, y, z, in_k, _, flat, general = self._cases(xp, w)
        unit = xp.stack([x, y, z], axis=1)
        out = xp.where(in_k[:, None], unit, 0.0)
        flat_p = xp.stack([xp.maximum(x, 0.0), xp.maximum(y, 0.0), xp.zeros_like(z)], axis=1)
        out = xp.where(flat[:, None], flat_p, out)
        if bool(xp.any(general)):
            gx, gy, gz, ga = x[general], y[general], z[general], alpha[general]
            _, r, _, px, py = self._boundary(xp, gx, gy, gz, ga)
            out[general] = xp.stack([px, py, xp.where(gz > 0, r, -r)], axis=1)
        return xp.astype(xp.reshape(out * scale[:, None], (-1,)), dtype, copy=False)

    @_quiet
    def project_derivative(self, v: Array) -> sp.csr_array:
        """Block-diagonal Jacobian with one ``3 x 3`` block per cone, by the projection's cases.

        ``I`` in ``K`` (except ``0`` at ``v = 0``) and ``0`` in ``K°``. Where ``z = 0`` and
        exactly one of ``x, y`` is positive, ``Pi(v) = (x^+, y^+, 0)`` and (by the asymptotics
        of the general case as ``z -> 0``: ``z_p / z -> 1`` iff the positive coordinate's exponent
        exceeds 1/2)

            DPi(v) = diag([x > 0], [y > 0], k),   k = 1 if e > 1/2, 0 if e < 1/2,
                                                  k = c / (c + 2 |c'|) if e = 1/2,

        with ``e`` the exponent (``a`` or ``1 - a``) and ``c`` the value of the positive
        coordinate, ``c'`` that of the negative one. On the curved boundary,
        ``p = (x_p, y_p, sign(z) r)`` with ``g(p) = x_p^a y_p^(1-a) - sign(z) z_p = 0``,
        ``grad g(p) = (a r / x_p, (1-a) r / y_p, -sign(z))`` (orthogonal to ``p``),
        ``v - p = -d grad g(p)`` and ``Hess g(p) = -a (1-a) r q q^T``,
        ``q = (1/x_p, -1/y_p, 0)``, so the KKT system (``_ray_jacobian``) gives, with the unit
        ray ``t = p/||p||``, the unit normal ``n`` and ``u = n x t``,

            DPi(v) = t t^T + u u^T / (1 + kappa),
            kappa = a (1-a) r d (q^T u)^2
                  = a (1-a) (d/r) ||p||^2 / (a^2 y_p^2 + (1-a)^2 x_p^2 + (x_p y_p / r)^2),

        evaluated with ``p`` divided by its largest entry (no underflow or cancellation). Where
        this is not finite (``|z|`` or ``p`` below ~1e-300 ``max|v|``: ``z_p`` underflows) the
        ``z = 0`` formula is used (``0`` when ``x, y <= 0``). Computed on the triples scaled to
        max-abs 1 (the Jacobian is invariant under positive scaling).
        """
        w = _host_float64(v, self.dim)
        scale, alpha, x, y, z, in_k, _, flat, general = self._cases(_NUMPY, w)
        jac = np.zeros((self.alphas.size, 3, 3))
        jac[in_k & (scale > 0)] = np.eye(3)
        jac[flat] = self._flat_jacobian(x[flat], y[flat], alpha[flat])
        if np.any(general):
            gx, gy, gz, ga = x[general], y[general], z[general], alpha[general]
            u, r, _, px, py = self._boundary(_NUMPY, gx, gy, gz, ga)
            sign = np.where(gz > 0, 1.0, -1.0)
            big = np.maximum(np.maximum(px, py), r)
            px, py, r = px / big, py / big, r / big
            gb = 1.0 - ga
            ray = np.stack([px, py, sign * r], axis=1)
            # grad g(p) times x_p y_p (positive), in the scaled coordinates: no division.
            normal = np.stack([ga * r * py, gb * r * px, -sign * px * py], axis=1)
            ray, normal = _unit_rows(ray), _unit_rows(normal)
            den = (ga * py) ** 2 + (gb * px) ** 2 + (px * py / r) ** 2
            kappa = ga * gb * np.exp(-u) * (px * px + py * py + r * r) / den
            block = _ray_jacobian(ray, normal, kappa)
            bad = ~np.all(np.isfinite(block), axis=(1, 2))
            block[bad] = self._flat_jacobian(gx[bad], gy[bad], ga[bad])
            jac[general] = block
        return _triples_csr(jac, general)

    @staticmethod
    def _flat_jacobian(x: np.ndarray, y: np.ndarray, a: np.ndarray) -> np.ndarray:
        """``diag([x > 0], [y > 0], k)``: the Jacobian at ``z = 0`` (see ``project_derivative``).

        ``k = 0`` unless exactly one of ``x, y`` is positive.
        """
        x_pos, y_pos = x > 0, y > 0
        e_big = np.where(x_pos, a > 0.5, a < 0.5)  # exponent of the positive coordinate > 1/2
        c, c_neg = np.where(x_pos, x, y), np.abs(np.where(x_pos, y, x))
        safe = np.where(c > 0, c + 2.0 * c_neg, 1.0)
        k = np.where(e_big, 1.0, np.where(a == 0.5, c / safe, 0.0))
        jac = np.zeros((x.size, 3, 3))
        jac[:, 0, 0] = x_pos
        jac[:, 1, 1] = y_pos
        jac[:, 2, 2] = np.where(x_pos != y_pos, k, 0.0)
        return jac

    def scaling_blocks(self) -> np.ndarray:
        return np.full(self.alphas.size, 3, dtype=np.int64)

    def __repr__(self) -> str:
        return f"PowCone3D(alphas={self.alphas.tolist()})"


# --------------------------------------------------------------------------------------------
# Products
# --------------------------------------------------------------------------------------------


class ProductCone(Cone):
    """Cartesian product of cones, concatenated in the given order.

    ``offsets[i]:offsets[i+1]`` is the slice of member ``i``; every operation is applied member
    by member on its slice and the results are concatenated.
    """

    name = "product"

    def __init__(self, cones: Sequence[Cone]) -> None:
        self.cones = list(cones)
        self.offsets = np.concatenate([[0], np.cumsum([c.dim for c in self.cones])]).astype(
            np.int64
        )
        self.dim = int(self.offsets[-1])

    def _apply(self, v: Array, method: str) -> Array:
        xp, _, dtype = _prepare(v, self.dim)
        if len(self.cones) == 1:
            return getattr(self.cones[0], method)(v)
        parts = [
            getattr(c, method)(v[int(a) : int(b)])
            for c, a, b in zip(self.cones, self.offsets[:-1], self.offsets[1:], strict=True)
        ]
        if not parts:
            return xp.zeros((0,), dtype=dtype, device=device(v))
        return xp.concat(parts)

    def project(self, v: Array) -> Array:
        """Project each member's slice onto that member; returns shape ``(dim,)``."""
        return self._apply(v, "project")

    def project_derivative(self, v: Array) -> sp.csr_array:
        """Block-diagonal Jacobian: the members' ``project_derivative`` on their slices."""
        w = _host_float64(v, self.dim)
        blocks = [
            c.project_derivative(w[int(a) : int(b)])
            for c, a, b in zip(self.cones, self.offsets[:-1], self.offsets[1:], strict=True)
        ]
        if len(blocks) == 1:
            return blocks[0]
        if not blocks:
            return sp.csr_array((0, 0), dtype=np.float64)
        return sp.csr_array(sp.block_diag(blocks, format="csr"))

    def project_dual(self, v: Array) -> Array:
        """Project each member's slice onto that member's dual cone."""
        return self._apply(v, "project_dual")

    def project_polar(self, v: Array) -> Array:
        """Project each member's slice onto that member's polar cone."""
        return self._apply(v, "project_polar")

    def scaling_blocks(self) -> np.ndarray:
        if not self.cones:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([c.scaling_blocks() for c in self.cones]).astype(np.int64)

    def __repr__(self) -> str:
        return f"ProductCone({self.cones!r})"


def cones_from_dims(dims: Any) -> ProductCone:
    """Build the product cone from a CVXPY ``ConeDims``-like object.

    Reads ``zero`` (int), ``nonneg`` (int), ``soc`` (sizes), ``psd`` (matrix orders), ``exp``
    (count) and ``p3d`` (alphas), in that order, which is the row order CVXPY's ``ConicSolver``
    uses for SCS-like solvers; empty members are skipped. ``pnd`` (n-dimensional power cones) must
    be empty, else ``ValueError``.
    """
    pnd = getattr(dims, "pnd", None)
    if pnd is not None and len(pnd) > 0:
        raise ValueError("n-dimensional power cones (pnd) are not supported")
    members: list[Cone] = []
    if dims.zero:
        members.append(ZeroCone(dims.zero))
    if dims.nonneg:
        members.append(NonnegCone(dims.nonneg))
    if len(dims.soc):
        members.append(SecondOrderCone(dims.soc))
    if len(dims.psd):
        members.append(PSDCone(dims.psd))
    if dims.exp:
        members.append(ExpCone(dims.exp))
    p3d = getattr(dims, "p3d", None)
    if p3d is not None and len(p3d):
        members.append(PowCone3D(p3d))
    return ProductCone(members)
