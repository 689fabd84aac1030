"""The iterations of FISTA on the dual (``cvxprox.solvers.dual_fista``) for 2-D total
variation, fused into one pass over the image.

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
is one pass over the image, column by column (``_sweep``). At column j it forms
x~ = clip(-(q + K'y~) / H, l, u) on column j + 1 (K'y~ = K'y + beta (K'y - K'y_prev), so
x~ is never stored whole), then on the rows of K that column j starts y~ = y + beta (y -
y_prev) and y+ = prox_{g*/L}(y~ + K x~ / L), summing ||d||^2 and d'(y+ - y) (d = y+ - y~),
then K'y+ on column j (which reads y+ of columns j - 1 and j, both just written) and the
descent test's left side. Each array is read once per iteration, and what column j
writes is read again while it is still in cache.

The isotropic dual vectors are kept planar: the first components of all groups, then
the second ones (row 2g + c of the term is entry c G + g, G the number of groups), so
that every loop reads consecutive entries; ``y`` and ``z`` are handed back in the
term's order. The loops are compiled with reassociation
(``fastmath``), so sums run in a different order than NumPy's: the iterates agree with
the plain ones to rounding.

Images of at least ``PARALLEL_FROM`` pixels are cut into blocks of columns swept in
parallel on Numba's threads; the first column of each block but the first needs y+ of
the block before it, so its K'y+ follows once all blocks are done. The blocks depend on
the image only and their sums are added in block order, so the iterates are the same on
any number of threads. Three slots of the dual vectors and of their products K'y rotate:
the current one, the previous one, and the one a trial writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from cvxprox.functions.prox import GroupL2, Norm1
from cvxprox.ir.program import Term
from cvxprox.operators.linops import FiniteDiff, MatrixOp

# prox_conj of GroupL2 divides by max(||v||, w, _TINY) (``cvxprox.functions.prox``).
_TINY = float(np.finfo(np.float64).tiny)
# Images of at least PARALLEL_FROM pixels are swept in column blocks on Numba's threads,
# one block per _BLOCK_COLUMNS columns, at most _BLOCKS_MAX; smaller ones in one pass.
PARALLEL_FROM = 512 * 512
_BLOCK_COLUMNS = 16
_BLOCKS_MAX = 32
# Reassociation lets the sums of a column run in SIMD lanes; with NumPy's error model a
# division by zero is IEEE's, not an exception (no check in the loops).
_FAST = {"reassoc", "contract", "arcp", "nsz"}
_JIT = {"cache": True, "fastmath": _FAST, "error_model": "numpy"}


@njit(**_JIT, inline="always")
def _x_at(q_p, kty_p, kty_prev_p, h_inv_p, beta):  # noqa: ANN001, ANN202
    """-(q_p + K'y~_p) / H_p, K'y~ = K'y + beta (K'y - K'y_prev)."""
    return -(q_p + (kty_p + beta * (kty_p - kty_prev_p))) * h_inv_p


@njit(**_JIT)
def _x_column(j, rows, q, h_inv, kty, kty_prev, lower, upper, bounded, beta, out):  # noqa: ANN001, ANN202, PLR0913
    """x~ on column j of the image into ``out`` (rows,)."""
    base = rows * j
    if bounded:
        for i in range(rows):
            p = base + i
            v = _x_at(q[p], kty[p], kty_prev[p], h_inv[p], beta)
            out[i] = min(max(v, lower[p]), upper[p])
    else:
        for i in range(rows):
            p = base + i
            out[i] = _x_at(q[p], kty[p], kty_prev[p], h_inv[p], beta)


@njit(**_JIT, inline="always")
def _disc_step(w_g, a0, a1, y0, y1, p0, p1, beta, L):  # noqa: ANN001, ANN202, PLR0913
    """One group's y+: (y~ + a / L) projected onto the disc of radius w_g, a = (K x~)_g,
    y~ = y + beta (y - y_prev); returns y+ and y~ (scalars in and out: a helper that takes
    arrays costs a reference count per call)."""
    t0 = y0 + beta * (y0 - p0)
    t1 = y1 + beta * (y1 - p1)
    v0 = t0 + a0 / L
    v1 = t1 + a1 / L
    scale = w_g / max(max(math.sqrt(v0 * v0 + v1 * v1), w_g), _TINY)
    return v0 * scale, v1 * scale, t0, t1


@njit(**_JIT)
def _dual_column_iso(  # noqa: ANN202, PLR0913
    j, rows, w, x_here, x_next, y0, y1, p0, p1, n0, n1, z0, z1, beta, L, last,
):  # fmt: skip
    """y+ on group column j (groups g = i + (rows - 1) j) from x~ on image columns j
    (``x_here``) and j + 1 (``x_next``); (y0, y1), (p0, p1), (n0, n1), (z0, z1): the
    halves of y, y_prev, y+ and z in the planar layout (module docstring). Returns the
    column's shares of ||d||^2 and d'(y+ - y), d = y+ - y~. When ``last``, also
    z = L (y~ - y+) + K x~."""
    base = (rows - 1) * j
    one_weight = w.shape[0] == 1
    dd = 0.0
    rd = 0.0
    for i in range(rows - 1):
        g = base + i
        a0 = x_next[i] - x_here[i]
        a1 = x_here[i + 1] - x_here[i]
        w_g = w[0] if one_weight else w[g]
        m0, m1, t0, t1 = _disc_step(w_g, a0, a1, y0[g], y1[g], p0[g], p1[g], beta, L)
        n0[g] = m0
        n1[g] = m1
        d0 = m0 - t0
        d1 = m1 - t1
        dd += d0 * d0 + d1 * d1
        rd += d0 * (m0 - y0[g]) + d1 * (m1 - y1[g])
        if last:
            z0[g] = L * (t0 - m0) + a0
            z1[g] = L * (t1 - m1) + a1
    return dd, rd


@njit(**_JIT, inline="always")
def _clip_step(w_e, a, y_e, p_e, beta, L):  # noqa: ANN001, ANN202, PLR0913
    """One row's y+ = clip(y~ + a / L, -w_e, w_e) and y~ (scalars, as ``_disc_step``)."""
    t = y_e + beta * (y_e - p_e)
    return min(max(t + a / L, -w_e), w_e), t


@njit(**_JIT)
def _dual_column_aniso(  # noqa: ANN202, PLR0913
    j, rows, cols, offset0, offset1, w0, w1, x_here, x_next,
    y, y_prev, y_new, z, beta, L, last,
):  # fmt: skip
    """y+ on the rows of the two Norm1 terms that column j of the image starts (as
    ``_dual_column_iso``): the axis-0 rows offset0 + i + (rows - 1) j, then (j < cols - 1)
    the axis-1 rows offset1 + i + rows j."""
    dd = 0.0
    rd = 0.0
    one_w0 = w0.shape[0] == 1
    one_w1 = w1.shape[0] == 1
    base = (rows - 1) * j
    for i in range(rows - 1):
        e = offset0 + base + i
        a = x_here[i + 1] - x_here[i]
        n_e, t = _clip_step(w0[0] if one_w0 else w0[base + i], a, y[e], y_prev[e], beta, L)
        y_new[e] = n_e
        d = n_e - t
        dd += d * d
        rd += d * (n_e - y[e])
        if last:
            z[e] = L * (t - n_e) + a
    if j < cols - 1:
        base = rows * j
        for i in range(rows):
            e = offset1 + base + i
            a = x_next[i] - x_here[i]
            n_e, t = _clip_step(w1[0] if one_w1 else w1[base + i], a, y[e], y_prev[e], beta, L)
            y_new[e] = n_e
            d = n_e - t
            dd += d * d
            rd += d * (n_e - y[e])
            if last:
                z[e] = L * (t - n_e) + a
    return dd, rd


@njit(**_JIT, inline="always")
def _pixel_descent(s, q_p, h_p, h_inv_p, l_p, u_p, bounded, kty_p, kty_prev_p, beta):  # noqa: ANN001, ANN202, PLR0913
    """Pixel p's share of the descent test's left side (module docstring of
    ``dual_fista``) at K'y+_p = s: (K'(y+ - y~))_p^2 / H_p, or with bounds
    H_p dx_p (dx_p / 2 + v+_p - x+_p) (scalars, as ``_disc_step``)."""
    kty_t = kty_p + beta * (kty_p - kty_prev_p)
    if bounded:
        x_t = min(max(-(q_p + kty_t) * h_inv_p, l_p), u_p)
        v_new = -(q_p + s) * h_inv_p
        x_new = min(max(v_new, l_p), u_p)
        dx = x_new - x_t
        return h_p * (dx * (0.5 * dx + v_new - x_new))
    ktd = s - kty_t
    return ktd * (ktd * h_inv_p)


@njit(**_JIT)
def _kty_iso(i, j, rows, cols, y):  # noqa: ANN001, ANN202
    """(K'y)_p at pixel p = i + rows j, isotropic, y planar: the rows of K in order,
    2 g_left, 2 g_up + 1, 2 g, 2 g + 1."""
    groups = y.shape[0] // 2
    g = i + (rows - 1) * j
    s = 0.0
    if j > 0 and i < rows - 1:
        s += y[g - (rows - 1)]
    if i > 0 and j < cols - 1:
        s += y[groups + g - 1]
    if i < rows - 1 and j < cols - 1:
        s -= y[g]
        s -= y[groups + g]
    return s


@njit(**_JIT)
def _kty_aniso(i, j, rows, cols, offset0, offset1, order, y):  # noqa: ANN001, ANN202, PLR0913
    """(K'y)_p at pixel p = i + rows j, anisotropic: each term's -(y_k - y_{k-1}) along
    its axis, the terms in their order."""
    p = i + rows * j
    e0 = offset0 + i + (rows - 1) * j
    down = -((y[e0] if i < rows - 1 else 0.0) - (y[e0 - 1] if i > 0 else 0.0))
    e1 = offset1 + p
    right = -((y[e1] if j < cols - 1 else 0.0) - (y[e1 - rows] if j > 0 else 0.0))
    return (0.0 + down) + right if order == 0 else (0.0 + right) + down


@njit(**_JIT)
def _primal_column(  # noqa: ANN202, PLR0913
    j, rows, cols, iso, offset0, offset1, order, q, h, h_inv, lower, upper, bounded,
    y_new, kty, kty_prev, kty_new, beta,
):  # fmt: skip
    """K'y+ on column j of the image, and the column's share of the descent test's
    left side (``_pixel_descent``). It reads y+ on the rows that columns j - 1 and j
    start. The interior of a column (0 < i < rows - 1, 0 < j < cols - 1) is a loop
    without branches; its first and last pixels and the first and last columns take the
    general formula (``_kty_iso``, ``_kty_aniso``)."""
    descent = 0.0
    base = rows * j
    groups = y_new.shape[0] // 2
    interior = 0 < j < cols - 1 and rows > 2
    for i in range(rows):
        if interior and 0 < i < rows - 1:
            continue
        p = base + i
        if iso:
            s = _kty_iso(i, j, rows, cols, y_new)
        else:
            s = _kty_aniso(i, j, rows, cols, offset0, offset1, order, y_new)
        kty_new[p] = s
        descent += _pixel_descent(
            s, q[p], h[p], h_inv[p], lower[p] if bounded else 0.0,
            upper[p] if bounded else 0.0, bounded, kty[p], kty_prev[p], beta,
        )  # fmt: skip
    if not interior:
        return descent
    g0 = (rows - 1) * j
    e0 = offset0 + (rows - 1) * j
    e1 = offset1 + base
    for i in range(1, rows - 1):
        p = base + i
        if iso:
            g = g0 + i
            s = ((y_new[g - (rows - 1)] + y_new[groups + g - 1]) - y_new[g]) - y_new[groups + g]
        else:
            down = -(y_new[e0 + i] - y_new[e0 + i - 1])
            right = -(y_new[e1 + i] - y_new[e1 + i - rows])
            s = (0.0 + down) + right if order == 0 else (0.0 + right) + down
        kty_new[p] = s
        descent += _pixel_descent(
            s, q[p], h[p], h_inv[p], lower[p] if bounded else 0.0,
            upper[p] if bounded else 0.0, bounded, kty[p], kty_prev[p], beta,
        )  # fmt: skip
    return descent


@njit(**_JIT)
def _sweep(  # noqa: ANN202, PLR0913
    j0, j1, rows, cols, iso, offsets, order, w0, w1, q, h, h_inv, lower, upper, bounded,
    y, y_prev, y_new, kty, kty_prev, kty_new, beta, L, z, last, columns,
):  # fmt: skip
    """One trial step on the image columns j0 <= j < j1 in one pass: for each column,
    x~ on the next one, y+ on the rows the column starts, then K'y+ and the descent
    share of the column (of column j0 only when j0 = 0: it reads y+ of column j0 - 1,
    another sweep's). Returns (||d||^2, d'(y+ - y), descent) over these columns.
    ``columns`` (2, rows): x~ on a column and on the next one."""
    dd = 0.0
    rd = 0.0
    descent = 0.0
    groups = y.shape[0] // 2
    x_here, x_next = columns[0], columns[1]
    _x_column(j0, rows, q, h_inv, kty, kty_prev, lower, upper, bounded, beta, x_here)
    for j in range(j0, j1):
        if j < cols - 1:
            _x_column(j + 1, rows, q, h_inv, kty, kty_prev, lower, upper, bounded, beta, x_next)
        if iso:
            if j < cols - 1:
                a, b = _dual_column_iso(
                    j, rows, w0, x_here, x_next, y[:groups], y[groups:], y_prev[:groups],
                    y_prev[groups:], y_new[:groups], y_new[groups:], z[:groups], z[groups:],
                    beta, L, last,
                )  # fmt: skip
                dd += a
                rd += b
        else:
            a, b = _dual_column_aniso(
                j, rows, cols, offsets[0], offsets[1], w0, w1, x_here, x_next,
                y, y_prev, y_new, z, beta, L, last,
            )  # fmt: skip
            dd += a
            rd += b
        if j > j0 or j0 == 0:
            descent += _primal_column(
                j, rows, cols, iso, offsets[0], offsets[1], order, q, h, h_inv, lower, upper,
                bounded, y_new, kty, kty_prev, kty_new, beta,
            )  # fmt: skip
        x_here, x_next = x_next, x_here
    return dd, rd, descent


@njit(**_JIT)
def _rmatvec(  # noqa: ANN202, PLR0913
    rows, cols, iso, offsets, order, q, h, h_inv, lower, upper, bounded, y, zero, out,
):  # fmt: skip
    """K'y into ``out`` (n,), y planar, column by column (``_primal_column`` at beta = 0
    with y as y+; ``zero`` (n,) zeros stand for K'y and K'y_prev)."""
    for j in range(cols):
        _primal_column(
            j, rows, cols, iso, offsets[0], offsets[1], order, q, h, h_inv, lower, upper,
            bounded, y, zero, zero, out, 0.0,
        )  # fmt: skip


@njit(cache=True, parallel=True, fastmath=_FAST, error_model="numpy")
def _parallel_step(  # noqa: ANN202, PLR0913
    starts, rows, cols, iso, offsets, order, w0, w1, q, h, h_inv, lower, upper, bounded,
    y, y_prev, y_new, kty, kty_prev, kty_new, beta, L, z, last, columns, partial,
):  # fmt: skip
    """The sweeps of the column blocks [starts[c], starts[c+1]) in parallel, each
    block's sums into ``partial[c]`` (blocks, 3)."""
    for c in prange(starts.shape[0] - 1):
        dd, rd, descent = _sweep(
            starts[c], starts[c + 1], rows, cols, iso, offsets, order, w0, w1, q, h, h_inv,
            lower, upper, bounded, y, y_prev, y_new, kty, kty_prev, kty_new, beta, L, z,
            last, columns[c],
        )  # fmt: skip
        partial[c, 0] = dd
        partial[c, 1] = rd
        partial[c, 2] = descent


@njit(**_JIT)
def _trial_step(  # noqa: ANN202, PLR0913
    starts, rows, cols, iso, offsets, order, w0, w1, q, h, h_inv, lower, upper, bounded,
    y, y_prev, y_new, kty, kty_prev, kty_new, beta, L, z, last, columns, partial, threads,
):  # fmt: skip
    """One trial step over the whole image: the sweeps of the column blocks (in
    parallel when there are several and Numba has more than one thread; one after the
    other, without the threading layer, on one thread), then K'y+ on the first column of
    every block but the first. Returns (||d||^2, d'(y+ - y), descent test's left side),
    each summed over the blocks in their order (so the result does not depend on the
    threads).
    ``partial`` (blocks, 3) and ``columns`` (blocks, 2, rows) are workspace."""
    blocks = starts.shape[0] - 1
    if blocks == 1:
        dd, rd, descent = _sweep(
            0, cols, rows, cols, iso, offsets, order, w0, w1, q, h, h_inv, lower, upper,
            bounded, y, y_prev, y_new, kty, kty_prev, kty_new, beta, L, z, last, columns[0],
        )  # fmt: skip
    else:
        if threads > 1:
            _parallel_step(
                starts, rows, cols, iso, offsets, order, w0, w1, q, h, h_inv, lower, upper,
                bounded, y, y_prev, y_new, kty, kty_prev, kty_new, beta, L, z, last, columns,
                partial,
            )  # fmt: skip
        else:
            for c in range(blocks):
                partial[c] = _sweep(
                    starts[c], starts[c + 1], rows, cols, iso, offsets, order, w0, w1, q, h,
                    h_inv, lower, upper, bounded, y, y_prev, y_new, kty, kty_prev, kty_new,
                    beta, L, z, last, columns[c],
                )  # fmt: skip
        dd = 0.0
        rd = 0.0
        descent = 0.0
        for c in range(blocks):
            dd += partial[c, 0]
            rd += partial[c, 1]
            descent += partial[c, 2]
            if c > 0:
                descent += _primal_column(
                    starts[c], rows, cols, iso, offsets[0], offsets[1], order, q, h, h_inv,
                    lower, upper, bounded, y_new, kty, kty_prev, kty_new, beta,
                )  # fmt: skip
    return dd, rd, (2.0 * descent if bounded else descent)


@njit(**_JIT)
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
    starts: np.ndarray,
    threads: int,
) -> None:
    """Run ``iterations`` iterations of dual FISTA on the image ``rows x cols``.

    ``iso``: one GroupL2 term (weights ``w0``, one per group or one for all), else two
    Norm1 terms, the axis-0 rows at ``offsets[0]`` (weights ``w0``), the axis-1 rows at
    ``offsets[1]`` (``w1``), ``order`` 0 when the axis-0 term comes first. ``q``, ``h``,
    ``h_inv`` (n,): F's gradient at 0, its diagonal Hessian and its inverse; ``lower``,
    ``upper`` (n,) the bounds, or empty arrays without bounds. ``Y`` (3, m), ``KTY``
    (3, n): the slots of y (planar layout, module docstring) and K'y, ``slots`` (3,) int64
    the current, previous and trial slot (rotated in place). ``state`` = [t, L, L_min],
    updated in place; ``counts`` = [restarts, backtracks], added to. ``z`` (m,): the last
    iteration's z (planar). ``step_rule`` = [decrease, backtrack] as in ``dual_fista``.
    ``starts`` (blocks + 1,) int64: the column blocks (``column_blocks``), swept in
    parallel when ``threads`` (Numba's thread count, read by the caller: a compiled read
    would keep the function out of the disk cache) exceeds 1.
    """
    bounded = lower.shape[0] > 0
    blocks = starts.shape[0] - 1
    columns = np.empty((blocks, 2, rows))
    partial = np.empty((blocks, 3))
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
            dd, rd, descent = _trial_step(
                starts, rows, cols, iso, offsets, order, w0, w1, q, h, h_inv, lower, upper,
                bounded, y, y_prev, y_new, kty, kty_prev, kty_new, beta, L_try, z, last,
                columns, partial, threads,
            )  # fmt: skip
            if descent <= L_try * dd:
                break
        if rd < 0.0:
            t_next = 1.0
            counts[0] += 1
        slots[0], slots[1], slots[2] = new, cur, prev
        t, L = t_next, L_try
    state[0], state[1] = t, L


def column_blocks(rows: int, cols: int, blocks: int | None = None) -> np.ndarray:
    """The starts of the column blocks of a ``rows x cols`` image (blocks + 1,) int64,
    ending with ``cols``: ``blocks`` of them; by default one under ``PARALLEL_FROM``
    pixels, else one per ``_BLOCK_COLUMNS`` columns, at most ``_BLOCKS_MAX`` (a function
    of the image only, so the iterates do not depend on the number of threads)."""
    if blocks is None:
        parallel = rows * cols >= PARALLEL_FROM
        blocks = min(max(cols // _BLOCK_COLUMNS, 1), _BLOCKS_MAX) if parallel else 1
    if not 1 <= blocks <= cols:
        raise ValueError(f"column_blocks: blocks must be in [1, {cols}], got {blocks}")
    return np.linspace(0, cols, blocks + 1).round().astype(np.int64)


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
    blocks : int, optional
        Column blocks swept in parallel (``column_blocks``' default when None).
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
        blocks: int | None = None,
    ) -> None:
        self.grid = grid
        self.starts = column_blocks(grid.rows, grid.cols, blocks)
        self.q, self.H, self.H_inv = q, H, 1.0 / H
        empty = np.zeros(0)
        self.lower, self.upper = bounds if bounds is not None else (empty, empty)
        m, n = y.shape[0], q.shape[0]
        self.Y = np.empty((3, m))
        self.Y[0] = self._planar(y)
        self.Y[1] = self.Y[0]
        self.KTY = np.empty((3, n))
        self.KTY[0] = self._rmatvec(self.Y[0])
        self.KTY[1] = self.KTY[0]
        # (y, K'y) at the start; zeros as the scalar 0 (no copies of zero vectors).
        fresh = not np.any(y)
        self.start = (0.0, 0.0) if fresh else (np.array(y, copy=True), self.KTY[0].copy())
        self.slots = np.array([0, 1, 2], dtype=np.int64)
        self.state = np.array([1.0, L, L_min])
        self.counts = np.zeros(2, dtype=np.int64)
        self._z = np.zeros(m)
        self.step_rule = np.array(step_rule[:2], dtype=np.float64)
        self.max_backtracks = int(step_rule[2])

    def clip(self, v: np.ndarray) -> np.ndarray:
        """v clipped to the bounds (v itself without bounds)."""
        if self.lower.shape[0] == 0:
            return v
        return np.minimum(np.maximum(v, self.lower), self.upper)

    def _planar(self, v: np.ndarray) -> np.ndarray:
        """v (m,) in the terms' order -> the kernel's planar layout (module docstring)."""
        return v.reshape(-1, 2).T.ravel() if self.grid.iso else v

    def _interleaved(self, v: np.ndarray) -> np.ndarray:
        """The inverse of ``_planar``."""
        return v.reshape(2, -1).T.ravel() if self.grid.iso else v

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        """K'y (y planar), by the compiled ``_rmatvec``."""
        n = self.q.shape[0]
        out, zero = np.zeros(n), np.zeros(n)
        g = self.grid
        _rmatvec(
            g.rows, g.cols, g.iso, g.offsets, g.order, self.q, self.H, self.H_inv, self.lower,
            self.upper, self.lower.shape[0] > 0, y, zero, out,
        )  # fmt: skip
        return out

    def run(self, count: int) -> None:
        """``count`` iterations."""
        g = self.grid
        dual_tv_iterations(
            g.rows, g.cols, g.iso, g.offsets, g.order, g.w0, g.w1, self.q, self.H, self.H_inv,
            self.lower, self.upper, self.Y, self.KTY, self.slots, self.state, self.counts,
            count, self._z, self.step_rule, self.max_backtracks, self.starts,
            numba.get_num_threads(),
        )  # fmt: skip

    @property
    def y(self) -> np.ndarray:
        """The current y (m,) in the terms' order (anisotropic: a view of its slot, valid
        until the next ``run``)."""
        return self._interleaved(self.Y[self.slots[0]])

    @property
    def z(self) -> np.ndarray:
        """The last iteration's z (m,) in the terms' order (as ``y``)."""
        return self._interleaved(self._z)

    @property
    def Kty(self) -> np.ndarray:
        """K'y (n,) (a view of its slot, valid until the next ``run``)."""
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
