"""The iterations of FISTA on the dual (``cvxprox.solvers.dual_fista``) for 2-D total
variation, fused into two passes over the image.

The program is 1/2 x'Hx + q'x + g(K x) with l <= x <= u (H diagonal, positive; the bounds
optional), x the column-major (F-order) flattening of an r x c image, X[i, j] = x[i + r j],
and K one of the finite-difference operators CVXPY builds for total variation:

* isotropic (``cp.tv``): one ``GroupL2`` term of group size 2 on the (r-1)(c-1) pixels
  p = i + r j, i < r - 1, j < c - 1, group g = i + (r-1) j, with the rows
  (K x)_{2g} = x_{p+r} - x_p and (K x)_{2g+1} = x_{p+1} - x_p; g*'s prox projects each
  pair onto the disc of radius w_g;
* anisotropic (``sum(abs(diff(X, axis=0))) + sum(abs(diff(X, axis=1)))``): two ``Norm1``
  terms on ``FiniteDiff`` operators, axis 0 with the rows i + (r-1) j (i < r - 1) equal
  to x_{p+1} - x_p, axis 1 with the rows p (j < c - 1) equal to x_{p+r} - x_p, stacked in
  the terms' order; g*'s prox clips each row to [-w, w].

One iteration of the method (the module docstring of ``dual_fista``: extrapolation, the
dual step at the constant L, the exact descent test, backtracking, the gradient restart)
is two passes here. The dual pass walks the rows of K column by column: it forms
x~ = clip(-(q + K'y~) / H, l, u) on the next column of the image (K'y~ = K'y + beta (K'y -
K'y_prev), so x~ is never stored whole), y~ = y + beta (y - y_prev) and
y+ = prox_{g*/L}(y~ + K x~ / L), and sums ||d||^2 and d'(y+ - y) (d = y+ - y~). The
primal pass walks the pixels: it forms K'y+ and sums the descent test's left side. The
arithmetic is that of the plain iteration, operation for operation (the sums are
sequential here, pairwise in NumPy, so the two agree to rounding). Three slots of the
dual vectors and of their products K'y rotate: the current one, the previous one, and
the one a trial writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numba import njit

from cvxprox.functions.prox import GroupL2, Norm1
from cvxprox.ir.program import Term
from cvxprox.operators.linops import FiniteDiff, MatrixOp

# prox_conj of GroupL2 divides by max(||v||, w, _TINY) (``cvxprox.functions.prox``).
_TINY = float(np.finfo(np.float64).tiny)


@njit(cache=True, inline="always")
def _x_at(q_p, kty_p, kty_prev_p, h_inv_p, beta):  # noqa: ANN001, ANN202
    """-(q_p + K'y~_p) / H_p, K'y~ = K'y + beta (K'y - K'y_prev) (scalars: a helper that
    takes arrays costs a reference count per call)."""
    return -(q_p + (kty_p + beta * (kty_p - kty_prev_p))) * h_inv_p


@njit(cache=True)
def _x_column(j, rows, q, h_inv, kty, kty_prev, lower, upper, bounded, beta, out):  # noqa: ANN001, ANN202, PLR0913
    """x~ on column j of the image into ``out`` (rows,), each pixel's once per pass."""
    for i in range(rows):
        p = i + rows * j
        v = _x_at(q[p], kty[p], kty_prev[p], h_inv[p], beta)
        if bounded:
            v = min(max(v, lower[p]), upper[p])
        out[i] = v


@njit(cache=True)
def _dual_pass_iso(  # noqa: ANN202, PLR0913
    rows, cols, w, q, h_inv, lower, upper, bounded,
    y, y_prev, y_new, kty, kty_prev, beta, L, z, last, columns,
):  # fmt: skip
    """y+ over the GroupL2 pairs; returns (||y+ - y~||^2, (y+ - y~)'(y+ - y)). When
    ``last``, also z = L (y~ - y+) + K x~. ``columns`` (2, rows): x~ on the column and
    on the next one."""
    dd = 0.0
    rd = 0.0
    one_weight = w.shape[0] == 1
    x_here, x_next = columns[0], columns[1]
    _x_column(0, rows, q, h_inv, kty, kty_prev, lower, upper, bounded, beta, x_here)
    for j in range(cols - 1):
        _x_column(j + 1, rows, q, h_inv, kty, kty_prev, lower, upper, bounded, beta, x_next)
        for i in range(rows - 1):
            x_p = x_here[i]
            a0 = x_next[i] - x_p
            a1 = x_here[i + 1] - x_p
            g = i + (rows - 1) * j
            k0 = 2 * g
            k1 = k0 + 1
            t0 = y[k0] + beta * (y[k0] - y_prev[k0])
            t1 = y[k1] + beta * (y[k1] - y_prev[k1])
            v0 = t0 + a0 / L
            v1 = t1 + a1 / L
            w_g = w[0] if one_weight else w[g]
            nrm = math.sqrt(v0 * v0 + v1 * v1)
            scale = w_g / max(max(nrm, w_g), _TINY)
            n0 = v0 * scale
            n1 = v1 * scale
            y_new[k0] = n0
            y_new[k1] = n1
            d0 = n0 - t0
            d1 = n1 - t1
            dd += d0 * d0
            dd += d1 * d1
            rd += d0 * (n0 - y[k0])
            rd += d1 * (n1 - y[k1])
            if last:
                z[k0] = L * (t0 - n0) + a0
                z[k1] = L * (t1 - n1) + a1
        x_here, x_next = x_next, x_here
    return dd, rd


@njit(cache=True)
def _dual_pass_aniso(  # noqa: ANN202, PLR0913
    rows, cols, offset0, offset1, w0, w1, q, h_inv, lower, upper, bounded,
    y, y_prev, y_new, kty, kty_prev, beta, L, z, last, columns,
):  # fmt: skip
    """y+ over the rows of the two Norm1 terms (as ``_dual_pass_iso``)."""
    dd = 0.0
    rd = 0.0
    one_w0 = w0.shape[0] == 1
    one_w1 = w1.shape[0] == 1
    x_here, x_next = columns[0], columns[1]
    _x_column(0, rows, q, h_inv, kty, kty_prev, lower, upper, bounded, beta, x_here)
    for j in range(cols):
        right = j < cols - 1
        if right:
            _x_column(j + 1, rows, q, h_inv, kty, kty_prev, lower, upper, bounded, beta, x_next)
        for i in range(rows):
            p = i + rows * j
            down = i < rows - 1
            x_p = x_here[i]
            if down:
                e = offset0 + i + (rows - 1) * j
                a = x_here[i + 1] - x_p
                t = y[e] + beta * (y[e] - y_prev[e])
                w = w0[0] if one_w0 else w0[e - offset0]
                n_e = min(max(t + a / L, -w), w)
                y_new[e] = n_e
                d = n_e - t
                dd += d * d
                rd += d * (n_e - y[e])
                if last:
                    z[e] = L * (t - n_e) + a
            if right:
                e = offset1 + p
                a = x_next[i] - x_p
                t = y[e] + beta * (y[e] - y_prev[e])
                w = w1[0] if one_w1 else w1[p]
                n_e = min(max(t + a / L, -w), w)
                y_new[e] = n_e
                d = n_e - t
                dd += d * d
                rd += d * (n_e - y[e])
                if last:
                    z[e] = L * (t - n_e) + a
        x_here, x_next = x_next, x_here
    return dd, rd


@njit(cache=True)
def _primal_pass(  # noqa: ANN202, PLR0913
    rows, cols, iso, offset0, offset1, order, q, h, h_inv, lower, upper, bounded,
    y_new, kty, kty_prev, kty_new, beta,
):  # fmt: skip
    """K'y+ at every pixel, and the left side of the descent test (module docstring of
    ``dual_fista``): ||K'(y+ - y~)||^2_{H^-1}, or with bounds
    2 sum_p H_p dx_p (dx_p / 2 + v+_p - x+_p). The sums of K'y+ run in the order of the
    plain products: the rows of the matrix in order (isotropic), the terms in order, each
    -(y_k - y_{k-1}) along its axis (anisotropic, ``FiniteDiff``)."""
    descent = 0.0
    r = rows
    for j in range(cols):
        for i in range(rows):
            p = i + r * j
            s = 0.0
            if iso:
                g = i + (rows - 1) * j
                if j > 0 and i < rows - 1:
                    s += y_new[2 * (g - (rows - 1))]
                if i > 0 and j < cols - 1:
                    s += y_new[2 * (g - 1) + 1]
                if i < rows - 1 and j < cols - 1:
                    s -= y_new[2 * g]
                    s -= y_new[2 * g + 1]
            else:
                e0 = offset0 + i + (rows - 1) * j
                ahead = y_new[e0] if i < rows - 1 else 0.0
                behind = y_new[e0 - 1] if i > 0 else 0.0
                down = -(ahead - behind)
                ahead = y_new[offset1 + p] if j < cols - 1 else 0.0
                behind = y_new[offset1 + p - r] if j > 0 else 0.0
                right = -(ahead - behind)
                if order == 0:
                    s = (s + down) + right
                else:
                    s = (s + right) + down
            kty_new[p] = s
            kty_t = kty[p] + beta * (kty[p] - kty_prev[p])
            if bounded:
                x_t = min(max(-(q[p] + kty_t) * h_inv[p], lower[p]), upper[p])
                v_new = -(q[p] + s) * h_inv[p]
                x_new = min(max(v_new, lower[p]), upper[p])
                dx = x_new - x_t
                descent += h[p] * (dx * (0.5 * dx + v_new - x_new))
            else:
                ktd = s - kty_t
                descent += ktd * (ktd * h_inv[p])
    return 2.0 * descent if bounded else descent


@njit(cache=True)
def dual_tv_iterations(  # noqa: PLR0913
    rows: int,
    cols: int,
    iso: bool,
    offsets: np.ndarray,
    order: int,
    w0: np.ndarray,
    w1: np.ndarray,
    q: np.ndarray,
    h: np.ndarray,
    h_inv: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    Y: np.ndarray,
    KTY: np.ndarray,
    slots: np.ndarray,
    state: np.ndarray,
    counts: np.ndarray,
    iterations: int,
    z: np.ndarray,
    step_rule: np.ndarray,
    max_backtracks: int,
) -> None:
    """Run ``iterations`` iterations of dual FISTA on the image ``rows x cols``.

    ``iso``: one GroupL2 term (weights ``w0``, one per group or one for all), else two
    Norm1 terms, the axis-0 rows at ``offsets[0]`` (weights ``w0``), the axis-1 rows at
    ``offsets[1]`` (``w1``), ``order`` 0 when the axis-0 term comes first. ``q``, ``h``,
    ``h_inv`` (n,): F's gradient at 0, its diagonal Hessian and its inverse; ``lower``,
    ``upper`` (n,) the bounds, or empty arrays without bounds. ``Y`` (3, m), ``KTY``
    (3, n): the slots of y and K'y, ``slots`` (3,) int64 the current, previous and trial
    slot (rotated in place). ``state`` = [t, L, L_min], updated in place; ``counts`` =
    [restarts, backtracks], added to. ``z`` (m,): the last iteration's z.
    ``step_rule`` = [decrease, backtrack] as in ``dual_fista``.
    """
    bounded = lower.shape[0] > 0
    columns = np.empty((2, rows))
    decrease, backtrack = step_rule[0], step_rule[1]
    t, L, L_min = state[0], state[1], state[2]
    for k in range(iterations):
        cur, prev, new = slots[0], slots[1], slots[2]
        y, y_prev, y_new = Y[cur], Y[prev], Y[new]
        kty, kty_prev, kty_new = KTY[cur], KTY[prev], KTY[new]
        last = k == iterations - 1
        L_try = max(decrease * L, L_min)
        t_next = t
        rd = 0.0
        for trial in range(max_backtracks):
            if trial:
                L_try *= backtrack
                counts[1] += 1
            t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * (L_try / L) * t * t))
            beta = (t - 1.0) / t_next
            if iso:
                dd, rd = _dual_pass_iso(
                    rows, cols, w0, q, h_inv, lower, upper, bounded,
                    y, y_prev, y_new, kty, kty_prev, beta, L_try, z, last, columns,
                )  # fmt: skip
            else:
                dd, rd = _dual_pass_aniso(
                    rows, cols, offsets[0], offsets[1], w0, w1, q, h_inv, lower, upper,
                    bounded, y, y_prev, y_new, kty, kty_prev, beta, L_try, z, last, columns,
                )  # fmt: skip
            descent = _primal_pass(
                rows, cols, iso, offsets[0], offsets[1], order, q, h, h_inv, lower, upper,
                bounded, y_new, kty, kty_prev, kty_new, beta,
            )  # fmt: skip
            if descent <= L_try * dd:
                break
        if rd < 0.0:
            t_next = 1.0
            counts[0] += 1
        slots[0], slots[1], slots[2] = new, cur, prev
        t, L = t_next, L_try
    state[0], state[1] = t, L


@dataclass
class TVGrid:
    """The prox terms as ``dual_tv_iterations`` reads them (its docstring): the image
    ``rows x cols``, the form, the offsets of the axis-0 and axis-1 rows and the terms'
    order (anisotropic), the weights."""

    rows: int
    cols: int
    iso: bool
    offsets: np.ndarray
    order: int
    w0: np.ndarray
    w1: np.ndarray


def tv_grid(terms: list[Term], n: int) -> TVGrid | None:
    """The grid of the prox terms when they are one of the two forms of the module
    docstring (with b = 0) on an image of n pixels, else None."""
    if any(np.any(term.b != 0) for term in terms):
        return None
    if len(terms) == 1:
        return _isotropic(terms[0], n)
    if len(terms) == 2:
        return _anisotropic(terms, n)
    return None


def _isotropic(term: Term, n: int) -> TVGrid | None:
    """The grid of one GroupL2(2) term whose matrix is ``cp.tv``'s (module docstring)."""
    function, op = term.function, term.op
    if not (isinstance(function, GroupL2) and function.group_size == 2):
        return None
    if not isinstance(op, MatrixOp) or op.shape[1] != n or op.shape[0] < 2:
        return None
    M = sp.csr_array(op.matrix)
    if not M.has_canonical_format:
        M = M.copy()
        M.sum_duplicates()
    if M.nnz < 2 or M.indptr[1] != 2:
        return None
    rows = int(M.indices[1])
    cols = n // rows if rows > 1 else 0
    groups = (rows - 1) * (cols - 1)
    if rows < 2 or cols < 2 or rows * cols != n or op.shape[0] != 2 * groups:
        return None
    g = np.arange(groups, dtype=np.int64)
    p = g % (rows - 1) + rows * (g // (rows - 1))
    indices = np.stack([p, p + rows, p, p + 1], axis=1).ravel()
    data = np.tile([-1.0, 1.0], 2 * groups)
    if not (
        np.array_equal(M.indptr, 2 * np.arange(2 * groups + 1))
        and np.array_equal(M.indices, indices)
        and np.array_equal(M.data, data)
    ):
        return None
    weight = np.atleast_1d(np.asarray(function.weight, dtype=np.float64))
    return TVGrid(rows, cols, True, np.zeros(2, dtype=np.int64), 0, weight, weight)


def _anisotropic(terms: list[Term], n: int) -> TVGrid | None:
    """The grid of two Norm1 terms on first differences along the two axes of one image."""
    ops = [term.op for term in terms]
    if not all(isinstance(term.function, Norm1) for term in terms):
        return None
    if not all(isinstance(op, FiniteDiff) and op.k == 1 for op in ops):
        return None
    shape = ops[0].array_shape
    if len(shape) != 2 or ops[1].array_shape != shape or shape[0] * shape[1] != n:
        return None
    if {ops[0].axis, ops[1].axis} != {0, 1}:
        return None
    order = 0 if ops[0].axis == 0 else 1
    offsets = np.zeros(2, dtype=np.int64)
    offsets[ops[1].axis] = ops[0].shape[0]
    weights = [np.atleast_1d(np.asarray(t.function.weight, dtype=np.float64)) for t in terms]
    w0, w1 = (weights[0], weights[1]) if order == 0 else (weights[1], weights[0])
    return TVGrid(int(shape[0]), int(shape[1]), False, offsets, order, w0, w1)


class FusedTVIterations:
    """The iterations of ``dual_fista`` (its ``DualIterations``: the same attributes and
    ``run``) on a ``TVGrid``, by ``dual_tv_iterations``, on NumPy arrays.

    Parameters
    ----------
    grid : TVGrid
    q, H : ndarray (n,)
        F's gradient at 0 and its diagonal Hessian.
    bounds : (ndarray (n,), ndarray (n,)) or None
        l and u (infinite entries where a side is free).
    y : ndarray (m,)
        The starting point.
    L, L_min : float
        The first trial constant and its floor.
    step_rule : (decrease, backtrack, max_backtracks)
    """

    def __init__(
        self,
        grid: TVGrid,
        q: np.ndarray,
        H: np.ndarray,
        bounds: tuple[np.ndarray, np.ndarray] | None,
        y: np.ndarray,
        L: float,
        L_min: float,
        step_rule: tuple[float, float, int],
    ) -> None:
        self.grid = grid
        self.q, self.H, self.H_inv = q, H, 1.0 / H
        empty = np.zeros(0)
        self.lower, self.upper = bounds if bounds is not None else (empty, empty)
        m, n = y.shape[0], q.shape[0]
        self.Y = np.empty((3, m))
        self.Y[0] = y
        self.Y[1] = y
        self.KTY = np.empty((3, n))
        self.KTY[0] = self._rmatvec(y)
        self.KTY[1] = self.KTY[0]
        # (y, K'y) at the start; zeros as the scalar 0 (no copies of zero vectors).
        fresh = not np.any(y)
        self.start = (0.0, 0.0) if fresh else (self.Y[0].copy(), self.KTY[0].copy())
        self.slots = np.array([0, 1, 2], dtype=np.int64)
        self.state = np.array([1.0, L, L_min])
        self.counts = np.zeros(2, dtype=np.int64)
        self.z = np.zeros(m)
        self.step_rule = np.array(step_rule[:2], dtype=np.float64)
        self.max_backtracks = int(step_rule[2])

    def clip(self, v: np.ndarray) -> np.ndarray:
        """v clipped to the bounds (v itself without bounds)."""
        if self.lower.shape[0] == 0:
            return v
        return np.minimum(np.maximum(v, self.lower), self.upper)

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        """K'y, by the kernel's primal pass (at beta = 0, with y as y+)."""
        n = self.q.shape[0]
        out, zero = np.zeros(n), np.zeros(n)
        g = self.grid
        _primal_pass(
            g.rows, g.cols, g.iso, g.offsets[0], g.offsets[1], g.order, self.q, self.H, self.H_inv,
            self.lower, self.upper, self.lower.shape[0] > 0, y, zero, zero, out, 0.0,
        )  # fmt: skip
        return out

    def run(self, count: int) -> None:
        """``count`` iterations."""
        g = self.grid
        dual_tv_iterations(
            g.rows, g.cols, g.iso, g.offsets, g.order, g.w0, g.w1, self.q, self.H, self.H_inv,
            self.lower, self.upper, self.Y, self.KTY, self.slots, self.state, self.counts,
            count, self.z, self.step_rule, self.max_backtracks,
        )  # fmt: skip

    @property
    def y(self) -> np.ndarray:
        """The current y (m,) (a view of its slot: valid until the next ``run``)."""
        return self.Y[self.slots[0]]

    @property
    def Kty(self) -> np.ndarray:
        """K'y (n,) (a view, as ``y``)."""
        return self.KTY[self.slots[0]]

    @property
    def L(self) -> float:
        """The last accepted constant."""
        return float(self.state[1])

    @property
    def restarts(self) -> int:
        return int(self.counts[0])

    @property
    def backtracks(self) -> int:
        return int(self.counts[1])
