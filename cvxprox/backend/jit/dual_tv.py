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

Dual columns. Column j of the image starts the rows h_{i,j} = x_{i,j+1} - x_{i,j} (j < c - 1)
and v_{i,j} = x_{i+1,j} - x_{i,j} (i < r - 1; isotropic: also j < c - 1, as a pair with
h_{i,j}); ``_load`` copies them into a (2, r) column, zeros where a row is absent, so that
(K'y)_{i,j} = h_{i,j-1} - h_{i,j} + v_{i-1,j} - v_{i,j} reads dual columns j - 1 and j
only (``_kty_column``), the same formula for both forms.

One iteration of the method (the module docstring of ``dual_fista``: extrapolation, the
dual step at the constant L, the exact descent test, backtracking, the gradient restart)
is one pass over the image, column by column (``_sweep``), with y and y_prev the only
arrays read and y+ the only one written (with q, and H where it is not uniform: a
uniform H is one number). At column j it forms y~ = y + beta (y - y_prev) on dual column
j + 1, K'y~ and x~ = clip(-(q + K'y~) / H, l, u) on image column j + 1, then y+ =
prox_{g*/L}(y~ + K x~ / L) on dual column j, summing ||d||^2 and d'(y+ - y) (d = y+ - y~),
then K'y+ on image column j (from y+ on dual columns j - 1 and j, kept in the sweep's
workspace) and the descent test's left side. K'y is not stored: it costs as much to
recompute on a column as to read, and three fewer n-vectors move per iteration (TV
denoising 1024 x 1024 on one thread: 10 ms an iteration against 12.7 ms when the
products were stored; 4.5 against 6.3 ms on two).

The isotropic dual vectors are kept planar: the first components of all groups, then
the second ones (row 2g + c of the term is entry c G + g, G the number of groups), so
that every loop reads consecutive entries; y' and z' (``FusedTVIterations.probe``) are
handed back in the term's order. The loops are compiled with reassociation
(``fastmath``), so sums run in a different order than NumPy's: the iterates agree with
the plain ones to rounding.

Images of at least ``PARALLEL_FROM`` pixels are cut into blocks of columns swept in
parallel on Numba's threads; the first column of each block but the first needs y+ of
the block before it, so its descent share follows once all blocks are done
(``_first_column_descent``). The blocks depend on the image only and their sums are added
in block order, so the iterates are the same on any number of threads. Three slots of
the dual vector rotate: the current one, the previous one, and the one a trial writes.

The loops are written once for both precisions: with the slots, the data and the
workspace in float32 (``FusedTVIterations(single=True)``), a trial's arithmetic is in
float32 (the step's scalars are cast to it); a column's sums of the step rule accumulate
in the arrays' precision, and the columns' sums in float64 (each term converted to
float64 cost a fifth of the pass: 2.1 ms against 1.7 ms). The pass is bound by
arithmetic, not memory traffic (float32 slots with float64 arithmetic: 2.9 ms a pass at
1024 x 1024 on two threads against 3.0 ms), so the float32 lanes bring it from 3.1 ms to
1.7 ms.
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
from cvxprox.operators.linops import FiniteDiff, MatrixOp, TVDifferences

# Images of at least PARALLEL_FROM pixels are swept in column blocks on Numba's threads,
# one block per _BLOCK_COLUMNS columns, at most _BLOCKS_MAX; smaller ones in one pass.
PARALLEL_FROM = 512 * 512
_BLOCK_COLUMNS = 16
_BLOCKS_MAX = 32
# Single-precision iterations take data whose nonzero magnitudes lie in this range.
SINGLE_RANGE = (1e-15, 1e15)
# Reassociation lets the sums of a column run in SIMD lanes; with NumPy's error model a
# division by zero is IEEE's, not an exception (no check in the loops).
_FAST = {"reassoc", "contract", "arcp", "nsz"}
_JIT = {"cache": True, "fastmath": _FAST, "error_model": "numpy", "nogil": True}
# The loops over one column run without Numba's reference counting (its private ``_nrt``
# flag): they allocate nothing, and the atomic increments and decrements of every array
# argument of every call cost more than a short column's arithmetic (a window of 11 x 11
# pixels: 17 us an iteration of an 11 x 110 image against 46 us; 1024 x 1024 the same).
_COLUMN = {**_JIT, "_nrt": False}


@njit(**_COLUMN)
def _load(j, rows, cols, iso, offsets, y, out):  # noqa: ANN001, ANN202, PLR0913
    """Dual column j of y (module docstring) into ``out`` (2, rows): out[0] the
    horizontal rows x_{p+r} - x_p, out[1] the vertical rows x_{p+1} - x_p, zeros where
    the column has no such row."""
    out[0, :] = 0.0
    out[1, :] = 0.0
    if iso:
        if j < cols - 1:
            groups = y.shape[0] // 2
            base = (rows - 1) * j
            for i in range(rows - 1):
                out[0, i] = y[base + i]
                out[1, i] = y[groups + base + i]
        return
    base = offsets[0] + (rows - 1) * j
    for i in range(rows - 1):
        out[1, i] = y[base + i]
    if j < cols - 1:
        base = offsets[1] + rows * j
        for i in range(rows):
            out[0, i] = y[base + i]


@njit(**_COLUMN)
def _store(j, rows, cols, iso, offsets, column, y):  # noqa: ANN001, ANN202, PLR0913
    """The inverse of ``_load``: the rows of dual column j from ``column`` (2, rows)
    into y."""
    if iso:
        if j < cols - 1:
            groups = y.shape[0] // 2
            base = (rows - 1) * j
            for i in range(rows - 1):
                y[base + i] = column[0, i]
                y[groups + base + i] = column[1, i]
        return
    base = offsets[0] + (rows - 1) * j
    for i in range(rows - 1):
        y[base + i] = column[1, i]
    if j < cols - 1:
        base = offsets[1] + rows * j
        for i in range(rows):
            y[base + i] = column[0, i]


@njit(**_COLUMN)
def _extrapolate(j, rows, cols, iso, offsets, y, y_prev, beta, here, tilde):  # noqa: ANN001, ANN202, PLR0913
    """Dual column j of y into ``here`` and of y~ = y + beta (y - y_prev) into ``tilde``
    (each (2, rows), as ``_load``)."""
    here[0, rows - 1] = here[1, rows - 1] = 0.0
    tilde[0, rows - 1] = tilde[1, rows - 1] = 0.0
    if iso:
        if j == cols - 1:
            here[:, :] = 0.0
            tilde[:, :] = 0.0
            return
        groups = y.shape[0] // 2
        base = (rows - 1) * j
        for i in range(rows - 1):
            a = y[base + i]
            b = y[groups + base + i]
            here[0, i] = a
            here[1, i] = b
            tilde[0, i] = a + beta * (a - y_prev[base + i])
            tilde[1, i] = b + beta * (b - y_prev[groups + base + i])
        return
    base = offsets[0] + (rows - 1) * j
    for i in range(rows - 1):
        b = y[base + i]
        here[1, i] = b
        tilde[1, i] = b + beta * (b - y_prev[base + i])
    if j == cols - 1:
        here[0, :] = 0.0
        tilde[0, :] = 0.0
        return
    base = offsets[1] + rows * j
    for i in range(rows):
        a = y[base + i]
        here[0, i] = a
        tilde[0, i] = a + beta * (a - y_prev[base + i])


@njit(**_COLUMN)
def _kty_column(rows, left, here, out):  # noqa: ANN001, ANN202
    """(K'v) on one image column into ``out`` (rows,) from v's dual columns on its left
    (``left``) and its own (``here``), as ``_load`` gives them:
    (K'v)_{i,j} = h_{i,j-1} - h_{i,j} + v_{i-1,j} - v_{i,j}, absent rows zero."""
    out[0] = (left[0, 0] - here[0, 0]) - here[1, 0]
    for i in range(1, rows):
        out[i] = ((left[0, i] - here[0, i]) + here[1, i - 1]) - here[1, i]


@njit(**_COLUMN)
def _x_column(j, rows, q, h_inv, lower, upper, kt, out):  # noqa: ANN001, ANN202, PLR0913
    """x = clip(-(q + K'v) / H, l, u) on image column j into ``out`` (rows,), K'v on the
    column given (``kt``); ``h_inv`` (n,) or (1,) for a uniform H, ``lower``/``upper``
    empty without bounds."""
    base = rows * j
    uniform = h_inv.shape[0] == 1
    if lower.shape[0] == 0:
        if uniform:
            scale = h_inv[0]
            for i in range(rows):
                out[i] = -(q[base + i] + kt[i]) * scale
        else:
            for i in range(rows):
                out[i] = -(q[base + i] + kt[i]) * h_inv[base + i]
        return
    for i in range(rows):
        p = base + i
        v = -(q[p] + kt[i]) * h_inv[0 if uniform else p]
        out[i] = min(max(v, lower[p]), upper[p])


@njit(**_COLUMN)
def _dual_column(  # noqa: ANN202, PLR0913
    j, rows, cols, iso, w0, w1, x_here, x_next, here, tilde, new, z, L, inv_L, tiny, last,
):  # fmt: skip
    """y+ = prox_{g*/L}(y~ + K x~ / L) on dual column j into ``new`` (2, rows) from y
    (``here``) and y~ (``tilde``) on it and x~ on image columns j (``x_here``) and j + 1
    (``x_next``), ``inv_L`` = 1 / L, ``tiny`` the dtype's smallest normal number (the disc
    projection's guard); with ``last``, z = L (y~ - y+) + K x~ into ``z`` (2, rows).
    Returns the column's ||d||^2 and d'(y+ - y), d = y+ - y~, summed in the arrays'
    precision. Isotropic: each pair (h, v) projected onto the disc of radius w0_g,
    g = i + (rows - 1) j; anisotropic: h clipped to [-w1, w1] (rows i + rows j), v to
    [-w0, w0] (rows i + (rows - 1) j)."""
    new[0, :] = 0.0
    new[1, :] = 0.0
    dd = new.dtype.type(0.0)
    rd = new.dtype.type(0.0)
    if iso:
        if j == cols - 1:
            return dd, rd
        base = (rows - 1) * j
        one = w0.shape[0] == 1
        w_c = w0[0]
        for i in range(rows - 1):
            v0 = tilde[0, i] + (x_next[i] - x_here[i]) * inv_L
            v1 = tilde[1, i] + (x_here[i + 1] - x_here[i]) * inv_L
            w_g = w_c if one else w0[base + i]
            scale = w_g / max(max(math.sqrt(v0 * v0 + v1 * v1), w_g), tiny)
            m0 = v0 * scale
            m1 = v1 * scale
            new[0, i] = m0
            new[1, i] = m1
            d0 = m0 - tilde[0, i]
            d1 = m1 - tilde[1, i]
            dd += d0 * d0 + d1 * d1
            rd += d0 * (m0 - here[0, i]) + d1 * (m1 - here[1, i])
        if last:
            for i in range(rows - 1):
                z[0, i] = L * (tilde[0, i] - new[0, i]) + (x_next[i] - x_here[i])
                z[1, i] = L * (tilde[1, i] - new[1, i]) + (x_here[i + 1] - x_here[i])
        return dd, rd
    one = w0.shape[0] == 1
    base = (rows - 1) * j
    for i in range(rows - 1):
        a = x_here[i + 1] - x_here[i]
        w_e = w0[0] if one else w0[base + i]
        m = min(max(tilde[1, i] + a * inv_L, -w_e), w_e)
        new[1, i] = m
        d = m - tilde[1, i]
        dd += d * d
        rd += d * (m - here[1, i])
        if last:
            z[1, i] = L * (tilde[1, i] - m) + a
    if j < cols - 1:
        one = w1.shape[0] == 1
        base = rows * j
        for i in range(rows):
            a = x_next[i] - x_here[i]
            w_e = w1[0] if one else w1[base + i]
            m = min(max(tilde[0, i] + a * inv_L, -w_e), w_e)
            new[0, i] = m
            d = m - tilde[0, i]
            dd += d * d
            rd += d * (m - here[0, i])
            if last:
                z[0, i] = L * (tilde[0, i] - m) + a
    return dd, rd


@njit(**_COLUMN)
def _descent_column(j, rows, q, h, h_inv, lower, upper, kt_tilde, kt_new):  # noqa: ANN001, ANN202, PLR0913
    """Image column j's share of the descent test's left side (module docstring of
    ``dual_fista``) from K'y~ (``kt_tilde``) and K'y+ (``kt_new``) on it:
    sum_p (K'(y+ - y~))_p^2 / H_p, or with bounds sum_p H_p dx_p (dx_p / 2 + v+_p - x+_p)
    (halved: the caller doubles it), summed in the arrays' precision."""
    base = rows * j
    uniform = h_inv.shape[0] == 1
    descent = kt_new.dtype.type(0.0)
    if lower.shape[0] == 0:
        if uniform:
            for i in range(rows):
                d = kt_new[i] - kt_tilde[i]
                descent += d * d
            return descent * h_inv[0]
        for i in range(rows):
            d = kt_new[i] - kt_tilde[i]
            descent += d * (d * h_inv[base + i])
        return descent
    half = kt_new.dtype.type(0.5)
    for i in range(rows):
        p = base + i
        k = 0 if uniform else p
        x_t = min(max(-(q[p] + kt_tilde[i]) * h_inv[k], lower[p]), upper[p])
        v_new = -(q[p] + kt_new[i]) * h_inv[k]
        x_new = min(max(v_new, lower[p]), upper[p])
        dx = x_new - x_t
        descent += h[k] * (dx * (half * dx + v_new - x_new))
    return descent


# Rows of a sweep's workspace (rows,): three dual columns of y~ (two rows each), two of
# y, two of y+, two of z, two of K'y~, two of x~, one of K'y+.
_WORK_ROWS = 21


@njit(**_COLUMN)
def _sweep(  # noqa: ANN202, PLR0913
    j0, j1, rows, cols, iso, offsets, w0, w1, q, h, h_inv, lower, upper,
    y, y_prev, y_new, beta, L, z, kty, last, work,
):  # fmt: skip
    """One trial step on the image columns j0 <= j < j1 in one pass (module docstring):
    for each column j, y~ on dual column j + 1, K'y~ and x~ on image column j + 1, y+ (and
    z) on dual column j, then K'y+ and the descent share on image column j (on column j0
    only when j0 = 0: it needs y+ of column j0 - 1, another sweep's). With ``last``, z
    and K'y+ (``kty`` (n,)) are written. Returns (||d||^2, d'(y+ - y), descent) over
    these columns. ``work`` (``_WORK_ROWS``, rows)."""
    t_left, t_here, t_next = work[0:2], work[2:4], work[4:6]
    y_here, y_next = work[6:8], work[8:10]
    n_left, n_here, z_col = work[10:12], work[12:14], work[14:16]
    kt_here, kt_next, x_here, x_next = work[16], work[17], work[18], work[19]
    kt_new = work[20]
    # The step's scalars in the workspace's precision (float32 arithmetic stays float32).
    cast = work.dtype.type
    beta, L, inv_L = cast(beta), cast(L), cast(1.0 / L)
    # prox_conj of GroupL2 divides by max(||v||, w, tiny) (``cvxprox.functions.prox``).
    tiny = cast(np.finfo(work.dtype).tiny)
    dd = 0.0
    rd = 0.0
    descent = 0.0
    t_left[:, :] = 0.0
    n_left[:, :] = 0.0
    if j0 > 0:
        _extrapolate(j0 - 1, rows, cols, iso, offsets, y, y_prev, beta, y_next, t_left)
    _extrapolate(j0, rows, cols, iso, offsets, y, y_prev, beta, y_here, t_here)
    _kty_column(rows, t_left, t_here, kt_here)
    _x_column(j0, rows, q, h_inv, lower, upper, kt_here, x_here)
    for j in range(j0, j1):
        if j < cols - 1:
            _extrapolate(j + 1, rows, cols, iso, offsets, y, y_prev, beta, y_next, t_next)
            _kty_column(rows, t_here, t_next, kt_next)
            _x_column(j + 1, rows, q, h_inv, lower, upper, kt_next, x_next)
        a, b = _dual_column(
            j, rows, cols, iso, w0, w1, x_here, x_next, y_here, t_here, n_here, z_col, L, inv_L,
            tiny, last,
        )  # fmt: skip
        dd += a
        rd += b
        _store(j, rows, cols, iso, offsets, n_here, y_new)
        if last:
            _store(j, rows, cols, iso, offsets, z_col, z)
        if j > j0 or j0 == 0:
            _kty_column(rows, n_left, n_here, kt_new)
            descent += _descent_column(j, rows, q, h, h_inv, lower, upper, kt_here, kt_new)
            if last:
                for i in range(rows):
                    kty[rows * j + i] = kt_new[i]
        t_left, t_here, t_next = t_here, t_next, t_left
        y_here, y_next = y_next, y_here
        n_left, n_here = n_here, n_left
        kt_here, kt_next = kt_next, kt_here
        x_here, x_next = x_next, x_here
    return dd, rd, descent


@njit(**_COLUMN)
def _first_column_descent(  # noqa: ANN202, PLR0913
    j, rows, cols, iso, offsets, q, h, h_inv, lower, upper, y, y_prev, y_new, beta, kty, last,
    work,
):  # fmt: skip
    """The descent share of image column j > 0 that ``_sweep`` leaves to the caller,
    once y+ is complete on dual columns j - 1 and j (with ``last``, K'y+ on the column
    into ``kty``)."""
    left, here, scratch = work[0:2], work[2:4], work[4:6]
    kt_tilde, kt_new = work[16], work[17]
    beta = work.dtype.type(beta)
    _extrapolate(j - 1, rows, cols, iso, offsets, y, y_prev, beta, scratch, left)
    _extrapolate(j, rows, cols, iso, offsets, y, y_prev, beta, scratch, here)
    _kty_column(rows, left, here, kt_tilde)
    _load(j - 1, rows, cols, iso, offsets, y_new, left)
    _load(j, rows, cols, iso, offsets, y_new, here)
    _kty_column(rows, left, here, kt_new)
    if last:
        for i in range(rows):
            kty[rows * j + i] = kt_new[i]
    return _descent_column(j, rows, q, h, h_inv, lower, upper, kt_tilde, kt_new)


@njit(**_JIT)
def rmatvec(rows: int, cols: int, iso: bool, offsets: np.ndarray, y: np.ndarray) -> np.ndarray:
    """K'y (n,) for y in the kernel's layout (planar when isotropic): row i of K is
    K'e_i."""
    out = np.empty(rows * cols)
    left = np.zeros((2, rows))
    here = np.empty((2, rows))
    for j in range(cols):
        _load(j, rows, cols, iso, offsets, y, here)
        _kty_column(rows, left, here, out[rows * j : rows * (j + 1)])
        left, here = here, left
    return out


# ``term_sums``' entries per term: max |K x - z|, max(|K x|, |z|), g(K x), g(z), y'z.
SUMS = 5


@njit(**_COLUMN)
def _max(a, b):  # noqa: ANN001, ANN202
    """max(a, b), NaN if either is (Python's max drops a NaN that comes second)."""
    return a if (a >= b or a != a) else b


@njit(**_COLUMN)
def _add_row(out, a, z, y, w):  # noqa: ANN001, ANN202
    """One anisotropic row's share of ``term_sums``: (K x)_e = a, z_e, y_e, weight w."""
    out[0] = _max(out[0], abs(a - z))
    out[1] = _max(out[1], _max(abs(a), abs(z)))
    out[2] += w * abs(a)
    out[3] += w * abs(z)
    out[4] += y * z


@njit(**_COLUMN)
def _column_sums(j, rows, cols, iso, offsets, w0, w1, x, y, z, out):  # noqa: ANN001, ANN202, PLR0913
    """Image column j's share of ``term_sums`` into ``out`` (2, ``SUMS``): the rows that
    start on it."""
    r1 = rows - 1
    if iso:
        if j == cols - 1:
            return
        groups = r1 * (cols - 1)
        one = w0.shape[0] == 1
        for i in range(r1):
            p = i + rows * j
            g = i + r1 * j
            a0 = x[p + rows] - x[p]
            a1 = x[p + 1] - x[p]
            z0, z1 = z[g], z[groups + g]
            w = w0[0] if one else w0[g]
            out[0, 0] = _max(out[0, 0], _max(abs(a0 - z0), abs(a1 - z1)))
            out[0, 1] = _max(out[0, 1], _max(_max(abs(a0), abs(a1)), _max(abs(z0), abs(z1))))
            out[0, 2] += w * math.sqrt(a0 * a0 + a1 * a1)
            out[0, 3] += w * math.sqrt(z0 * z0 + z1 * z1)
            out[0, 4] += y[g] * z0 + y[groups + g] * z1
        return
    one = w0.shape[0] == 1
    for i in range(r1):
        p = i + rows * j
        e = offsets[0] + i + r1 * j
        a = x[p + 1] - x[p]
        _add_row(out[0], a, z[e], y[e], w0[0] if one else w0[i + r1 * j])
    if j < cols - 1:
        one = w1.shape[0] == 1
        for i in range(rows):
            p = i + rows * j
            e = offsets[1] + p
            a = x[p + rows] - x[p]
            _add_row(out[1], a, z[e], y[e], w1[0] if one else w1[p])


@njit(**_JIT)
def _total(partial):  # noqa: ANN001, ANN202
    """The columns' shares (cols, 2, ``SUMS``) added in column order."""
    total = np.zeros((2, SUMS))
    for j in range(partial.shape[0]):
        for t in range(2):
            total[t, 0] = _max(total[t, 0], partial[j, t, 0])
            total[t, 1] = _max(total[t, 1], partial[j, t, 1])
            for s in range(2, SUMS):
                total[t, s] += partial[j, t, s]
    return total


@njit(**_JIT)
def term_sums(  # noqa: PLR0913
    rows: int,
    cols: int,
    iso: bool,
    offsets: np.ndarray,
    w0: np.ndarray,
    w1: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
) -> np.ndarray:
    """What a check needs of the TV rows at the image x (n,) and the dual pair y, z
    (kernel layout), K x formed on the fly: (2, ``SUMS``), row 0 the isotropic term or
    the vertical (axis-0) one, row 1 the horizontal (axis-1) one (zeros when
    isotropic), each [max_i |K x - z|_i, max_i max(|(K x)_i|, |z_i|), g(K x), g(z), y'z]
    with g the term's function (sum_g w_g ||v_g|| or sum_e w_e |v_e|); a NaN in a
    maximum stays (``_max``). On the calling thread, so that the windows of a round can
    each take it on a thread of their own (1024 x 1024: 4.8 ms, against 2.4 ms for the
    columns on two threads, some twenty times a solve)."""
    partial = np.zeros((cols, 2, SUMS))
    for j in range(cols):
        _column_sums(j, rows, cols, iso, offsets, w0, w1, x, y, z, partial[j])
    return _total(partial)


@njit(cache=True, parallel=True, error_model="numpy")
def failing_pixels(  # noqa: PLR0913
    rows: int,
    cols: int,
    iso: bool,
    offsets: np.ndarray,
    x: np.ndarray,
    z: np.ndarray,
    tol: np.ndarray,
) -> np.ndarray:
    """The pixels at which a row of TV starts (p of x_{p+r} - x_p and x_{p+1} - x_p)
    whose residual |K x - z| is not within its term's tolerance ``tol`` (2,) (as
    ``term_sums``' rows; NaN fails): a bool (cols, rows) array, [j, i] for pixel (i, j)."""
    out = np.zeros((cols, rows), dtype=np.bool_)
    r1 = rows - 1
    groups = r1 * (cols - 1)
    for j in prange(cols):
        for i in range(rows):
            p = i + rows * j
            fail = False
            if iso:
                if i < r1 and j < cols - 1:
                    g = i + r1 * j
                    fail = not (
                        abs(x[p + rows] - x[p] - z[g]) <= tol[0]
                        and abs(x[p + 1] - x[p] - z[groups + g]) <= tol[0]
                    )
            else:
                if i < r1:
                    fail = not (abs(x[p + 1] - x[p] - z[offsets[0] + i + r1 * j]) <= tol[0])
                if j < cols - 1:
                    fail = fail or not (abs(x[p + rows] - x[p] - z[offsets[1] + p]) <= tol[1])
            out[j, i] = fail
    return out


@njit(cache=True, parallel=True, error_model="numpy")
def interleave(v: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The planar isotropic layout (first components, then second ones) -> the term's
    (pairs) into ``out``, returned: out[2g + c] = v[c G + g]. In blocks on Numba's
    threads (2M entries: about 1 ms against 2 ms on one), so one Python thread at a time
    may call it (the windows' threads do not)."""
    groups = v.shape[0] // 2
    blocks = 64
    for b in prange(blocks):
        for g in range(b * groups // blocks, (b + 1) * groups // blocks):
            out[2 * g] = v[g]
            out[2 * g + 1] = v[groups + g]
    return out


@njit(cache=True, parallel=True, fastmath=_FAST, error_model="numpy")
def _parallel_step(  # noqa: ANN202, PLR0913
    starts, rows, cols, iso, offsets, w0, w1, q, h, h_inv, lower, upper,
    y, y_prev, y_new, beta, L, z, kty, last, work, partial,
):  # fmt: skip
    """The sweeps of the column blocks [starts[c], starts[c+1]) in parallel, each
    block's sums into ``partial[c]`` (blocks, 3)."""
    for c in prange(starts.shape[0] - 1):
        dd, rd, descent = _sweep(
            starts[c], starts[c + 1], rows, cols, iso, offsets, w0, w1, q, h, h_inv, lower,
            upper, y, y_prev, y_new, beta, L, z, kty, last, work[c],
        )  # fmt: skip
        partial[c, 0] = dd
        partial[c, 1] = rd
        partial[c, 2] = descent


@njit(**_JIT)
def _trial_step(  # noqa: ANN202, PLR0913
    starts, rows, cols, iso, offsets, w0, w1, q, h, h_inv, lower, upper,
    y, y_prev, y_new, beta, L, z, kty, last, work, partial, threads,
):  # fmt: skip
    """One trial step over the whole image: the sweeps of the column blocks (in
    parallel when there are several and Numba has more than one thread; one after the
    other, without the threading layer, on one thread), then the descent share of the
    first column of every block but the first. Returns (||d||^2, d'(y+ - y), the descent
    test's left side), each summed over the blocks in their order (so the result does
    not depend on the threads). With ``last``, z and K'y+ (``kty`` (n,)) are written
    (the descent test forms K'y+ column by column); without, neither is touched.
    ``work`` (blocks, ``_WORK_ROWS``, rows) and ``partial`` (blocks, 3) are workspace."""
    blocks = starts.shape[0] - 1
    if blocks > 1 and threads > 1:
        _parallel_step(
            starts, rows, cols, iso, offsets, w0, w1, q, h, h_inv, lower, upper, y, y_prev,
            y_new, beta, L, z, kty, last, work, partial,
        )  # fmt: skip
    else:
        for c in range(blocks):
            partial[c] = _sweep(
                starts[c], starts[c + 1], rows, cols, iso, offsets, w0, w1, q, h, h_inv,
                lower, upper, y, y_prev, y_new, beta, L, z, kty, last, work[c],
            )  # fmt: skip
    dd = 0.0
    rd = 0.0
    descent = 0.0
    for c in range(blocks):
        dd += partial[c, 0]
        rd += partial[c, 1]
        descent += partial[c, 2]
        if c > 0:
            descent += _first_column_descent(
                starts[c], rows, cols, iso, offsets, q, h, h_inv, lower, upper, y, y_prev,
                y_new, beta, kty, last, work[0],
            )  # fmt: skip
    return dd, rd, (2.0 * descent if lower.shape[0] > 0 else descent)


@njit(**_JIT)
def dual_tv_iterations(  # noqa: PLR0913
    rows: int,
    cols: int,
    iso: bool,
    offsets: np.ndarray,
    w0: np.ndarray,
    w1: np.ndarray,
    q: np.ndarray,
    h: np.ndarray,
    h_inv: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    Y: np.ndarray,
    slots: np.ndarray,
    state: np.ndarray,
    counts: np.ndarray,
    iterations: int,
    step_rule: np.ndarray,
    max_backtracks: int,
    starts: np.ndarray,
    work: np.ndarray,
    partial: np.ndarray,
    threads: int,
) -> None:
    """Run ``iterations`` iterations of dual FISTA on the image ``rows x cols``.

    ``iso``: one GroupL2 term (weights ``w0``, one per group or one for all), else two
    Norm1 terms, the axis-0 (vertical) rows at ``offsets[0]`` (weights ``w0``), the
    axis-1 (horizontal) rows at ``offsets[1]`` (``w1``). ``q`` (n,): F's gradient at 0;
    ``h``, ``h_inv``: its diagonal Hessian and its inverse, (n,) or (1,) when uniform;
    ``lower``, ``upper`` (n,) the bounds, or empty arrays without bounds. ``Y`` (3, m):
    the slots of y (the kernel's layout; float64, or float32 with the weights, ``q``,
    ``h``, ``h_inv``, the bounds and ``work`` in float32: single-precision arithmetic),
    ``slots`` (3,) int64 the current, previous and trial slot (rotated in place).
    ``state`` = [t, L, L_min], updated in place; ``counts`` = [restarts, backtracks],
    added to. ``step_rule`` = [decrease, backtrack] as in ``dual_fista``. ``starts``
    (blocks + 1,) int64: the column blocks (``column_blocks``), swept in parallel when
    ``threads`` (Numba's thread count, read by the caller: a compiled read would keep the
    function out of the disk cache) exceeds 1; ``work``, ``partial``: ``_trial_step``'s
    workspace.
    """
    decrease, backtrack = step_rule[0], step_rule[1]
    t, L, L_min = state[0], state[1], state[2]
    for _ in range(iterations):
        cur, prev, new = slots[0], slots[1], slots[2]
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
                starts, rows, cols, iso, offsets, w0, w1, q, h, h_inv, lower, upper,
                Y[cur], Y[prev], Y[new], beta, L_try, Y[new], Y[new], False, work, partial,
                threads,
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
    ``rows x cols``, the form, the offsets of the axis-0 and axis-1 rows (anisotropic),
    the weights."""

    rows: int
    cols: int
    iso: bool
    offsets: np.ndarray
    w0: np.ndarray
    w1: np.ndarray

    @property
    def terms(self) -> int:
        """The number of prox terms: one isotropic, two anisotropic."""
        return 1 if self.iso else 2


def tv_lipschitz(grid: TVGrid, H: np.ndarray) -> float:
    """min(||M||_1 ||M||_inf, ||M||_F^2) for M = K H^{-1/2}, K the isotropic grid's matrix
    (the bound ``dual_fista.dual_lipschitz`` takes from a sparse matrix), from the image:
    with s = H^{-1/2} and c_p the number of rows of K on pixel p (each row is -1 and 1 on
    two pixels; ``TVDifferences.gram_diagonal``), ||M||_1 = max c_p s_p, ||M||_inf = max over
    rows of s_a + s_b, ||M||_F^2 = sum c_p s_p^2."""
    if not grid.iso:
        raise ValueError("tv_lipschitz: the grid must be isotropic (cp.tv's matrix)")
    r, c = grid.rows, grid.cols
    S = (1.0 / np.sqrt(np.broadcast_to(H, (r * c,)))).reshape((r, c), order="F")
    count = TVDifferences(r, c).gram_diagonal().reshape((r, c), order="F")
    one = float(np.max(count * S))
    inf = max(float(np.max(S[:-1, :-1] + S[:-1, 1:])), float(np.max(S[:-1, :-1] + S[1:, :-1])))
    return min(one * inf, float(np.sum(count * S * S)))


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
    """The grid of one GroupL2(2) term on ``cp.tv``'s differences (module docstring): the
    operator ``TVDifferences`` or its matrix."""
    function, op = term.function, term.op
    if not (isinstance(function, GroupL2) and function.group_size == 2):
        return None
    if op.shape[1] != n:
        return None
    if isinstance(op, TVDifferences):
        rows, cols = op.rows, op.cols
    elif not isinstance(op, MatrixOp) or op.shape[0] < 2:
        return None
    else:
        M = sp.csr_array(op.matrix)
        if M.nnz < 2 or M.indptr[1] != 2:
            return None
        rows = int(M.indices[1])
        cols = n // rows if rows > 1 else 0
        groups = (rows - 1) * (cols - 1)
        if rows < 2 or cols < 2 or rows * cols != n or op.shape[0] != 2 * groups:
            return None
        # MatrixOp keeps its sparse matrix in canonical CSR form, as the pattern is.
        if not _is_isotropic_tv(M.indptr, M.indices, M.data, rows, cols):
            return None
    weight = np.atleast_1d(np.asarray(function.weight, dtype=np.float64))
    return TVGrid(rows, cols, True, np.zeros(2, dtype=np.int64), weight, weight)


@njit(**_JIT)
def _is_isotropic_tv(  # noqa: ANN202
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, rows: int, cols: int
):
    """Whether the CSR arrays are exactly ``cp.tv``'s matrix on a rows x cols image
    (module docstring): row 2g holds -1 at p and 1 at p + rows, row 2g + 1 -1 at p and 1
    at p + 1, p = i + rows j for the group g = i + (rows - 1) j, in one pass."""
    groups = (rows - 1) * (cols - 1)
    if indptr.shape[0] != 2 * groups + 1 or indices.shape[0] != 4 * groups:
        return False
    if data.shape[0] != 4 * groups:
        return False
    for r in range(2 * groups + 1):
        if indptr[r] != 2 * r:
            return False
    for j in range(cols - 1):
        for i in range(rows - 1):
            g = i + (rows - 1) * j
            p = i + rows * j
            k = 4 * g
            if indices[k] != p or indices[k + 1] != p + rows:
                return False
            if indices[k + 2] != p or indices[k + 3] != p + 1:
                return False
            if data[k] != -1.0 or data[k + 1] != 1.0 or data[k + 2] != -1.0:
                return False
            if data[k + 3] != 1.0:
                return False
    return True


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
    return TVGrid(int(shape[0]), int(shape[1]), False, offsets, w0, w1)


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
    single : bool
        Run the iterations in single precision until ``promote`` (the y slots, the
        data and the arithmetic in float32, the columns' sums added in float64); the
        candidate the checks test (``step_candidate``) is always computed in double
        precision from the current y. Data outside float32's comfortable range (a
        nonzero entry of q, H, 1/H, a weight or a finite bound under ``SINGLE_RANGE[0]``
        or over ``SINGLE_RANGE[1]`` in magnitude) keeps the iterations in double
        precision.
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
        single: bool = False,
    ) -> None:
        self.grid = grid
        self.starts = column_blocks(grid.rows, grid.cols, blocks)
        self.q, self.H, self.H_inv = q, H, 1.0 / H
        # A uniform H is read as one number (one stream less in the pass).
        uniform = H.shape[0] > 0 and bool(np.all(H == H[0]))
        self._h = H[:1].copy() if uniform else H
        self._h_inv = self.H_inv[:1].copy() if uniform else self.H_inv
        empty = np.zeros(0)
        self.lower, self.upper = bounds if bounds is not None else (empty, empty)
        single = single and self._fits_single()
        m = y.shape[0]
        planar = self._planar(np.asarray(y, dtype=np.float64))
        self.Y = np.empty((3, m), dtype=np.float32 if single else np.float64)
        self.Y[0] = planar
        self.Y[1] = self.Y[0]
        # (y, K'y) at the start; zeros as the scalar 0 (no copies of zero vectors).
        fresh = not np.any(y)
        g = grid
        self.start = (
            (0.0, 0.0)
            if fresh
            else (np.array(y, copy=True), rmatvec(g.rows, g.cols, g.iso, g.offsets, planar))
        )
        self.slots = np.array([0, 1, 2], dtype=np.int64)
        # The last candidate's (y', z'), kernel layout (``step_candidate``).
        self.candidate: tuple[np.ndarray, np.ndarray] | None = None
        self._buffers: np.ndarray | None = None
        self._kty: np.ndarray | None = None
        self.state = np.array([1.0, L, L_min])
        self.counts = np.zeros(2, dtype=np.int64)
        self.step_rule = np.array(step_rule[:2], dtype=np.float64)
        self.max_backtracks = int(step_rule[2])
        blocks = self.starts.shape[0] - 1
        self._work = np.zeros((blocks, _WORK_ROWS, g.rows))
        self._partial = np.empty((blocks, 3))
        self._data = self._kernel_data(self.Y.dtype)
        self.single_iterations = 0

    def _fits_single(self) -> bool:
        """Whether every nonzero finite entry of the data lies within ``SINGLE_RANGE``
        in magnitude (float32's normal range is 1.2e-38 to 3.4e38)."""
        g = self.grid
        for a in (g.w0, g.w1, self.q, self._h, self._h_inv, self.lower, self.upper):
            magnitude = np.abs(a[np.isfinite(a) & (a != 0)])
            if magnitude.size and not (
                SINGLE_RANGE[0] <= magnitude.min() and magnitude.max() <= SINGLE_RANGE[1]
            ):
                return False
        return True

    def _kernel_data(self, dtype: np.dtype) -> tuple[np.ndarray, ...]:
        """(w0, w1, q, h, h_inv, lower, upper, work) of ``dual_tv_iterations`` in
        ``dtype`` (the arrays themselves in double precision)."""
        g = self.grid
        arrays = (g.w0, g.w1, self.q, self._h, self._h_inv, self.lower, self.upper, self._work)
        if dtype == np.float64:
            return arrays
        return tuple(np.asarray(a, dtype=dtype) for a in arrays)

    @property
    def single(self) -> bool:
        """Whether the iterations run in single precision (``promote`` ends it)."""
        return self.Y.dtype == np.float32

    def promote(self) -> None:
        """Run the iterations in double precision from now on (y and the previous y
        rounded to single precision once, then carried in double). The last candidate
        is dropped: its buffers, Y's size, become Y (a fresh 48 MB at 1024 x 1024 took
        0.12 s of page faults in a run)."""
        if self.single:
            fresh = self._buffers is None or self._buffers.shape[0] != 3
            Y = np.empty(self.Y.shape) if fresh else self._buffers
            Y[:] = self.Y
            self.Y, self._buffers, self.candidate = Y, None, None
            self._data = self._kernel_data(self.Y.dtype)

    def clip(self, v: np.ndarray) -> np.ndarray:
        """v clipped to the bounds (v itself without bounds)."""
        if self.lower.shape[0] == 0:
            return v
        return np.minimum(np.maximum(v, self.lower), self.upper)

    def _planar(self, v: np.ndarray) -> np.ndarray:
        """v (m,) in the terms' order -> the kernel's planar layout (module docstring)."""
        return v.reshape(-1, 2).T.ravel() if self.grid.iso else v

    def _interleaved(self, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The inverse of ``_planar``, into ``out`` (a new array when None; compiled: a
        transposed copy of a 2M-vector takes 20 ms, two sequential streams 3 ms)."""
        out = np.empty_like(v) if out is None else out
        if self.grid.iso:
            return interleave(v, out)
        out[:] = v
        return out

    def run(self, count: int) -> None:
        """``count`` iterations."""
        g = self.grid
        w0, w1, q, h, h_inv, lower, upper, work = self._data
        self.single_iterations += count if self.single else 0
        dual_tv_iterations(
            g.rows, g.cols, g.iso, g.offsets, w0, w1, q, h, h_inv, lower, upper, self.Y,
            self.slots, self.state, self.counts, count, self.step_rule, self.max_backtracks,
            self.starts, work, self._partial, numba.get_num_threads(),
        )  # fmt: skip

    def probe(
        self, out: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(y', z', K'y') of ``DualIterations.probe``, y' and z' in the terms' order
        (``step_candidate``), written into ``out`` = (y', z') when given (a caller's
        stacked vectors: no copy in between), else into new arrays; K'y' is valid until
        the next call."""
        Kty = self.step_candidate()
        return (*self.candidate_terms(out), Kty)

    def candidate_terms(
        self, out: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The last candidate's (y', z') (``step_candidate``) in the terms' order, written
        into ``out`` when given, else into new arrays."""
        y_new, z = self.candidate
        out = (None, None) if out is None else out
        return self._interleaved(y_new, out[0]), self._interleaved(z, out[1])

    def step_candidate(self) -> np.ndarray:
        """The candidate the checks test: one trial step from the current y without
        extrapolation (beta = 0) at the last accepted constant, kept as ``candidate``
        (y', z') in the kernel's layout, in buffers that the next call reuses (fresh
        ones cost their page faults again in the threads' writes: 10.6 ms a pass at 1024
        x 1024 against 4.9 ms); returns K'y', formed in the same pass (also in a reused
        buffer: valid until the next call)."""
        g = self.grid
        if self._buffers is None:
            self._buffers = np.empty((3 if self.single else 2, self.Y.shape[1]))
        y_new, z = self._buffers[0], self._buffers[1]
        y = self.Y[self.slots[0]]
        if y.dtype != np.float64:
            self._buffers[2] = y
            y = self._buffers[2]
        if self._kty is None:
            self._kty = np.empty(g.rows * g.cols)
        kty = self._kty
        _trial_step(
            self.starts, g.rows, g.cols, g.iso, g.offsets, g.w0, g.w1, self.q, self._h,
            self._h_inv, self.lower, self.upper, y, y, y_new, 0.0, self.L, z, kty, True,
            self._work, self._partial, numba.get_num_threads(),
        )  # fmt: skip
        self.candidate = (y_new, z)
        return kty

    def term_sums(self, x: np.ndarray) -> np.ndarray:
        """``term_sums`` (2, ``SUMS``) at the image x and the last candidate's y', z'."""
        g = self.grid
        y, z = self.candidate
        return term_sums(g.rows, g.cols, g.iso, g.offsets, g.w0, g.w1, x, y, z)

    def failing_pixels(self, x: np.ndarray, tol: np.ndarray) -> np.ndarray:
        """The rows x cols mask of the pixels whose rows fail at the image x and the last
        candidate's z' (``failing_pixels``; ``tol`` (2,) as ``term_sums``' rows)."""
        g = self.grid
        mask = failing_pixels(g.rows, g.cols, g.iso, g.offsets, x, self.candidate[1], tol)
        return mask.T

    @property
    def y(self) -> np.ndarray:
        """The current y (m,) in the terms' order, in double precision (anisotropic in
        double precision: a view of its slot, valid until the next ``run``)."""
        y = self.Y[self.slots[0]].astype(np.float64, copy=False)
        return interleave(y, np.empty_like(y)) if self.grid.iso else y

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
