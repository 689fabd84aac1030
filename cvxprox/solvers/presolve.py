"""Presolve of an assembled cone program, and the postsolve of its solution.

The assembled view (``cvxprox.ir.program.AssembledProgram``) is

    minimize c'x + 1/2 x'Px + offset   subject to  A x - b in K,

with IR duals y in the polar cone K° and the optimality conditions

    P x + c + A'y = 0,   A x - b in K,   y in K°,   y'(A x - b) = 0.

Only rows in a zero cone (a'x = b, y free) or a nonnegative cone (a'x >= b, y <= 0) are
touched; the rows of other cones stay as they are, and a column with an entry in them
is never removed. The reductions keep their own variable bounds l <= x <= u, each with
the row it came from (its *provenance* row and coefficient); the reduced program gets
them back as bound rows (``bound_rows``) after its other rows. They run to a fixed point
(at most ``_MAX_PASSES`` passes), each pass applying every rule once:

empty row
    0 = b or 0 >= b: removed (y = 0) when it holds, else the program is infeasible with
    the Farkas vector y = -e_i / b_i (y in K°, A'y = 0, b'y = -1).
singleton row  a x_j = b  or  a x_j >= b
    the bound x_j >= b/a (a > 0) or x_j <= b/a (a < 0), both for an equality; the
    tightest row per side is the provenance, every looser one gets y = 0. Bounds that
    cross (l_j > u_j) give the Farkas vector on the two provenance rows.
fixed column  l_j = u_j = v
    x_j = v is substituted: b <- b - A e_j v, c <- c + P e_j v, offset gains
    c_j v + 1/2 P_jj v^2.
empty column  (no entry in A or P among the remaining rows and columns)
    fixed at the bound its cost c_j prefers (l_j for c_j > 0, u_j for c_j < 0, a finite
    one or 0 for c_j = 0); without that bound the program is unbounded along
    d = -sign(c_j) e_j / |c_j| (A d = 0, c'd = -1), when it is feasible.
duplicate rows  a_k = alpha a_i on the remaining columns
    an equality i makes k redundant (y_k = 0) when alpha b_i meets k's side, else the
    program is infeasible; two inequalities with alpha > 0 keep the tighter one; with
    alpha < 0 and b_k / alpha = b_i they are the equality a_i'x = b_i (its free dual
    goes to i when <= 0, else to k as y_i / alpha), and with b_k / alpha < b_i they
    cross (infeasible, Farkas vector on the two rows).
free row  a'x >= b with  min over the box of a'x >= b
    implied by the bounds: removed with y = 0.
activity bounds
    a nonnegative row with max over the box of a'x < b, or an equality with b outside
    [min, max], is infeasible: y_i = -t (or +t), and the bound rows of its columns take
    the reduced cost -A'y, so A'y = 0 and b'y = t (max - b) < 0.

Postsolve walks the reductions backwards. The reduced program's x fills the remaining
columns, each fixed column gets its value, the kept rows their duals, and the duals of
the bound rows of a column go to its provenance rows: y_i += y_lo / a for the lower
bound x_j >= b_i / a (the row's term a y_i in the column's stationarity equals the
bound row's +y_lo), y_i -= y_hi / a for the upper one. A fixed column's bound duals are
its reduced cost g_j = c_j + (P x)_j + (A'y)_j over the original data: its lower
provenance row takes -max(g_j, 0), its upper one -max(-g_j, 0), so its stationarity
holds exactly (l_j = u_j, both bounds active). The same map with c = 0, P = 0 turns
the reduced program's Farkas vector into the original's: b'y is unchanged because
b_reduced = b - A_fixed v. An unboundedness direction is zero on the fixed columns.

The reduced program is tested as the original will be (``Presolved.reduced_units``): it
takes the original's termination units (``KKTUnits``), a bound row its provenance row's
over |a|, and the magnitudes of its rows and objective count the fixed columns' share.
With its own equilibration's units and magnitudes, PDHG at eps 1e-4 stopped on reduced
programs whose postsolved points failed the original test (Netlib's SCFXM1: a row's
unit 0.15 in the original against 1 in the reduced program; FINNIS: a row b_i = 0 whose
reduced right-hand side, A_F v, made its relative tolerance 6 times looser), and the
tighter re-solve of ``cvxprox.solvers.select`` took 6750 and 14580 more iterations.

A Program solved on its terms (the structured route) is not reduced; only its crossing
singletons are read first (``crossing_singletons``): the one-entry rows of its zero and
nonnegative terms are bounds, and two that cross settle the program as infeasible with
the Farkas vector on those two rows, before any iteration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cvxpy.settings as s
import numpy as np
import scipy.sparse as sp

from cvxprox.functions.cones import NonnegCone, ZeroCone
from cvxprox.ir.program import AssembledProgram, Program, RowTerm, bound_rows
from cvxprox.operators.linops import Diagonal, Gather, Identity, LinOp, MatrixOp, ScalarMultiple
from cvxprox.solvers.common.kkt_checks import KKTUnits

_MAX_PASSES = 20
# Relative tolerance of the feasibility decisions (crossing bounds, empty rows, activity).
_FEAS_TOL = 1e-9
# Rows whose normalized coefficients agree to this relative tolerance are parallel.
_PARALLEL_TOL = 1e-12

_ZERO, _NONNEG, _OTHER = 0, 1, 2


@dataclass
class PresolveStats:
    """What the reductions removed."""

    empty_rows: int = 0
    singleton_rows: int = 0
    duplicate_rows: int = 0
    free_rows: int = 0
    fixed_columns: int = 0
    empty_columns: int = 0
    passes: int = 0

    def describe(self) -> str:
        """One line for ``verbose``."""
        return (
            f"presolve: removed {self.empty_rows} empty, {self.singleton_rows} singleton "
            f"(to bounds), {self.duplicate_rows} duplicate and {self.free_rows} free rows, "
            f"{self.fixed_columns} fixed and {self.empty_columns} empty columns "
            f"({self.passes} passes)"
        )

    @property
    def removed(self) -> int:
        return (
            self.empty_rows
            + self.singleton_rows
            + self.duplicate_rows
            + self.free_rows
            + self.fixed_columns
            + self.empty_columns
        )


@dataclass
class _Fixed:
    """x_j = value, with the provenance of its bounds then (row, coefficient; -1 none)."""

    j: int
    value: float
    lo_row: int
    lo_coef: float
    hi_row: int
    hi_coef: float


@dataclass
class _Merged:
    """Inequalities i and k = alpha i (alpha < 0) merged into the equality on row i."""

    i: int
    k: int
    alpha: float


@dataclass
class Presolved:
    """A reduced program and the maps back to the original one.

    ``program`` is None when the reductions settled the problem (``status`` INFEASIBLE
    with the Farkas vector ``certificate`` (m,), or UNBOUNDED with the direction (n,)).
    ``row_shift`` (m,) is b minus the reduced right-hand sides: A_F v, the part of each
    original row that the fixed columns took.
    """

    original: AssembledProgram
    stats: PresolveStats
    program: AssembledProgram | None = None
    status: str | None = None
    certificate: np.ndarray | None = None
    cols: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    lo_cols: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    hi_cols: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ops: list[_Fixed | _Merged] = field(default_factory=list)
    provenance: tuple[np.ndarray, ...] = ()
    row_shift: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def reduce_warm_start(self, warm: dict | None) -> dict | None:
        """An original-coordinates warm start (x (n,), y (m,)) on the reduced program: x on
        its columns, y on its kept rows, on a bound row the dual of its provenance row
        (a y_i for a lower bound, -a y_i for an upper one, the inverse of ``postsolve``,
        clipped to <= 0), z = Pi_K(A x - b)."""
        if warm is None or self.program is None:
            return None
        reduced = self.program
        x = warm["x"][self.cols]
        k, lo, hi = self.rows.size, self.lo_cols, self.hi_cols
        lo_row, lo_coef, hi_row, hi_coef = self.provenance
        y = np.zeros(reduced.m)
        y[:k] = warm["y"][self.rows]
        y[k : k + lo.size] = np.minimum(lo_coef[lo] * warm["y"][lo_row[lo]], 0.0)
        y[k + lo.size :] = np.minimum(-hi_coef[hi] * warm["y"][hi_row[hi]], 0.0)
        z = reduced.cone.project(reduced.A @ x - reduced.b)
        return {**warm, "x": x, "y": y, "z": z}

    def reduced_units(self, units: KKTUnits) -> KKTUnits:
        """The original program's termination units (``KKTChecker.units``) on the reduced
        program's rows and columns: a kept row or column keeps its unit, and a bound row
        x_j - b_i / a >= 0 (or b_i / a - x_j >= 0) that stands for its provenance row
        a x_j - b_i >= 0 takes that row's unit over |a|, its residual being the row's over
        |a|; the fixed columns' shares of the rows and of the objective count in their
        magnitudes (``KKTUnits``). So the reduced program passes its test where the
        postsolved point passes the original's, but for the rows presolve removed."""
        lo_row, lo_coef, hi_row, hi_coef = self.provenance
        lo, hi = self.lo_cols, self.hi_cols
        row = np.concatenate(
            [
                units.row[self.rows],
                units.row[lo_row[lo]] / np.abs(lo_coef[lo]),
                units.row[hi_row[hi]] / np.abs(hi_coef[hi]),
            ]
        )
        # The fixed columns' part f of each row (KKTUnits.row_offset): a kept row's own; a
        # bound row s x_j - s l_j (s = 1 for a lower bound, -1 for an upper one) is its
        # provenance row a x_j + f - b over a / s.
        f = self.row_shift
        offset = None
        if np.any(f != 0.0):
            offset = np.concatenate(
                [f[self.rows], f[lo_row[lo]] / lo_coef[lo], -f[hi_row[hi]] / hi_coef[hi]]
            )
        delta = self.program.offset - self.original.offset
        return KKTUnits(row, units.col[self.cols], units.gap, offset, delta)

    def postsolve(
        self, x_r: np.ndarray | None, y_r: np.ndarray | None, certificate: bool = False
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(x (n,), y (m,)) of the original program from the reduced program's point (or
        its Farkas vector y_r with ``certificate``: c = 0, P = 0 in the reduced costs, and
        x is None). Either input may be None (its output is then None)."""
        orig = self.original
        x = None
        if x_r is not None:
            x = np.zeros(orig.n)
            x[self.cols] = x_r
            for op in self.ops:
                if isinstance(op, _Fixed):
                    x[op.j] = op.value
        if y_r is None:
            return x, None
        y = np.zeros(orig.m)
        k = self.rows.size
        y[self.rows] = y_r[:k]
        y_lo = np.zeros(orig.n)
        y_hi = np.zeros(orig.n)
        y_lo[self.lo_cols] = y_r[k : k + self.lo_cols.size]
        y_hi[self.hi_cols] = y_r[k + self.lo_cols.size :]
        lo_row, lo_coef, hi_row, hi_coef = self.provenance
        _assign_bound_duals(y, self.cols, y_lo, y_hi, lo_row, lo_coef, hi_row, hi_coef)
        return x, self.undo(y, x, certificate)

    def undo(self, y: np.ndarray, x: np.ndarray | None, certificate: bool) -> np.ndarray:
        """The reductions undone on y (m,), latest first: a merged equality's positive
        dual moves to its second row, a fixed column's reduced cost to its bound rows
        (module docstring). ``x`` (n,) has every fixed value (None with
        ``certificate``)."""
        orig = self.original
        A = sp.csc_array(orig.A)
        P = None if certificate or orig.P is None else sp.csc_array(orig.P)
        for op in reversed(self.ops):
            if isinstance(op, _Merged):
                if y[op.i] > 0.0:
                    y[op.k], y[op.i] = y[op.i] / op.alpha, 0.0
                continue
            g = _column_dot(A, op.j, y)
            if not certificate:
                g += orig.c[op.j]
                if P is not None:
                    g += _column_dot(P, op.j, x)
            _assign_bound_duals(
                y,
                np.array([op.j]),
                np.array([-max(g, 0.0)]),
                np.array([-max(-g, 0.0)]),
                np.array([op.lo_row]),
                np.array([op.lo_coef]),
                np.array([op.hi_row]),
                np.array([op.hi_coef]),
                dense=False,
            )
        return y


def _column_dot(M: sp.csc_array, j: int, v: np.ndarray) -> float:
    """M[:, j]'v."""
    lo, hi = M.indptr[j], M.indptr[j + 1]
    return float(M.data[lo:hi] @ v[M.indices[lo:hi]])


def _assign_bound_duals(
    y: np.ndarray,
    cols: np.ndarray,
    y_lo: np.ndarray,
    y_hi: np.ndarray,
    lo_row: np.ndarray,
    lo_coef: np.ndarray,
    hi_row: np.ndarray,
    hi_coef: np.ndarray,
    dense: bool = True,
) -> None:
    """y[lo_row_j] += y_lo_j / lo_coef_j and y[hi_row_j] -= y_hi_j / hi_coef_j for j in
    cols (``dense``: the per-column arrays are indexed by j, else by position)."""
    for side_y, rows, coefs, sign in ((y_lo, lo_row, lo_coef, 1.0), (y_hi, hi_row, hi_coef, -1.0)):
        if dense:
            r, a, v = rows[cols], coefs[cols], side_y[cols]
        else:
            r, a, v = rows, coefs, side_y
        has = (r >= 0) & (v != 0.0)
        np.add.at(y, r[has], sign * v[has] / a[has])


def _crosses(lower: float | np.ndarray, upper: float | np.ndarray) -> bool | np.ndarray:
    """Whether bounds l > u cross beyond rounding: l - u > ``_FEAS_TOL`` max(1, |l|, |u|)
    (floats or arrays, elementwise)."""
    return lower - upper > _FEAS_TOL * np.maximum(1.0, np.maximum(np.abs(lower), np.abs(upper)))


class _State:
    """The working copy of the program during the reductions (module docstring)."""

    def __init__(self, program: AssembledProgram) -> None:
        self.program = program
        m, n = program.A.shape
        A = sp.csr_array(program.A, copy=True)
        A.eliminate_zeros()
        A.sort_indices()
        self.A = A
        # The row of each entry of A (the rules switch rows and columns off, they do not
        # change A): counts over the remaining rows or columns are bincounts over it.
        self.entry_row = np.repeat(np.arange(m), np.diff(A.indptr))
        self.kind = np.full(m, _OTHER, dtype=np.int8)
        for term in program.terms:
            if isinstance(term.function, ZeroCone):
                self.kind[term.rows] = _ZERO
            elif isinstance(term.function, NonnegCone):
                self.kind[term.rows] = _NONNEG
        self.row_on = np.ones(m, dtype=bool)
        self.col_on = np.ones(n, dtype=bool)
        self.locked = np.zeros(n, dtype=bool)
        self.locked[A.indices[self.kind[self.entry_row] == _OTHER]] = True
        self.b = program.b.astype(np.float64, copy=True)
        self.c = program.c.astype(np.float64, copy=True)
        self.offset = program.offset
        self.P = None if program.P is None or program.P.nnz == 0 else sp.csc_array(program.P)
        # The entries (i, j) of P with P_ij != 0, as two index arrays.
        self.P_entries = None
        if self.P is not None:
            P = sp.coo_array(self.P)
            nonzero = P.data != 0.0
            self.P_entries = (P.row[nonzero], P.col[nonzero])
        self.l = np.full(n, -np.inf)
        self.u = np.full(n, np.inf)
        self.lo_row = np.full(n, -1)
        self.hi_row = np.full(n, -1)
        self.lo_coef = np.zeros(n)
        self.hi_coef = np.zeros(n)
        self.ops: list[_Fixed | _Merged] = []
        self.stats = PresolveStats()
        # What the duplicate-row and free-row rules last saw: they find nothing new
        # until columns are removed (duplicates) or the box changes (free rows).
        self._dup_seen = -1
        self._free_seen: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ helpers

    def row_counts(self) -> np.ndarray:
        """Entries of each row among the remaining columns."""
        m = self.A.shape[0]
        return np.bincount(self.entry_row, weights=self.col_on[self.A.indices], minlength=m)

    def activity(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) of a_i'x over the box for the remaining columns of ``rows``
        (-inf/+inf where an unbounded column makes it so)."""
        M = self.A[rows]
        on = self.col_on[M.indices]
        a = np.where(on, M.data, 0.0)
        lj, uj = self.l[M.indices], self.u[M.indices]
        low_end = np.where(a > 0, lj, uj)
        high_end = np.where(a > 0, uj, lj)
        counts = np.diff(M.indptr)
        row_of = np.repeat(np.arange(rows.size), counts)

        def total(end: np.ndarray, bad: float) -> np.ndarray:
            finite = np.isfinite(end) | (a == 0.0)
            terms = np.where(finite, a * np.where(np.isfinite(end), end, 0.0), 0.0)
            value = np.bincount(row_of, weights=terms, minlength=rows.size)
            inf = np.bincount(row_of, weights=(~finite).astype(np.float64), minlength=rows.size)
            return np.where(inf > 0, bad, value)

        return total(low_end, -np.inf), total(high_end, np.inf)

    def farkas_from_rows(self, y_rows: dict[int, float]) -> np.ndarray:
        """A Farkas vector of the current program from multipliers on its rows: the bound
        rows of the remaining columns take the reduced cost g = A'y (lower row -max(g, 0),
        upper row -max(-g, 0)), mapped to their provenance rows."""
        m = self.A.shape[0]
        y = np.zeros(m)
        for i, v in y_rows.items():
            y[i] += v
        g = self.A.T @ y
        g[~self.col_on] = 0.0
        cols = np.flatnonzero(self.col_on)
        _assign_bound_duals(
            y,
            cols,
            -np.maximum(g, 0.0),
            -np.maximum(-g, 0.0),
            self.lo_row,
            self.lo_coef,
            self.hi_row,
            self.hi_coef,
        )
        return y

    # ------------------------------------------------------------------ rules

    def empty_rows(self, counts: np.ndarray) -> tuple[bool, np.ndarray | None]:
        rows = np.flatnonzero(self.row_on & (self.kind != _OTHER) & (counts == 0))
        if not rows.size:
            return False, None
        b = self.b[rows]
        tol = _FEAS_TOL * np.maximum(1.0, np.abs(b))
        bad = np.where(self.kind[rows] == _ZERO, np.abs(b) > tol, b > tol)
        if np.any(bad):
            i = int(rows[np.flatnonzero(bad)[0]])
            return True, self.farkas_from_rows({i: -1.0 / self.b[i]})
        self.row_on[rows] = False
        self.stats.empty_rows += rows.size
        return True, None

    def singleton_rows(self, counts: np.ndarray) -> tuple[bool, np.ndarray | None]:
        rows = np.flatnonzero(self.row_on & (self.kind != _OTHER) & (counts == 1))
        if not rows.size:
            return False, None
        M = self.A[rows]
        at = np.flatnonzero(self.col_on[M.indices])  # one entry per row, in row order
        j, a = M.indices[at], M.data[at]
        beta = self.b[rows] / a
        equality = self.kind[rows] == _ZERO
        for side, (bound, prov_row, prov_coef), takes in (
            (-1.0, (self.l, self.lo_row, self.lo_coef), equality | (a > 0)),
            (1.0, (self.u, self.hi_row, self.hi_coef), equality | (a < 0)),
        ):
            jj, bb, rr, aa = j[takes], beta[takes], rows[takes], a[takes]
            # Per column the tightest bound (the first row among equals) ...
            order = np.lexsort((rr, side * bb, jj))
            jj, bb, rr, aa = jj[order], bb[order], rr[order], aa[order]
            first = np.ones(jj.size, dtype=bool)
            first[1:] = jj[1:] != jj[:-1]
            # ... replaces the column's bound when it is strictly tighter.
            new = first.copy()
            new[first] = side * bb[first] < side * bound[jj[first]]
            jj = jj[new]
            bound[jj], prov_row[jj], prov_coef[jj] = bb[new], rr[new], aa[new]
        self.row_on[rows] = False
        self.stats.singleton_rows += rows.size
        return True, self.crossing_bounds()

    def crossing_bounds(self) -> np.ndarray | None:
        """Bounds l_j > u_j: infeasible beyond the tolerance (the Farkas vector on the two
        provenance rows), else made equal."""
        gap = self.l - self.u
        cross = np.flatnonzero(self.col_on & (gap > 0))
        for j in cross:
            if _crosses(self.l[j], self.u[j]):
                # y_lo = -t, y_hi = -t on the bound rows: A'y = 0, b'y = -t (l - u).
                t = 1.0 / gap[j]
                y = np.zeros(self.A.shape[0])
                _assign_bound_duals(
                    y,
                    np.array([j]),
                    np.array([-t]),
                    np.array([-t]),
                    np.array([self.lo_row[j]]),
                    np.array([self.lo_coef[j]]),
                    np.array([self.hi_row[j]]),
                    np.array([self.hi_coef[j]]),
                    dense=False,
                )
                return y
            self.u[j] = self.l[j]
        return None

    def fixed_columns(self) -> bool:
        cols = np.flatnonzero(self.col_on & ~self.locked & (self.l == self.u))
        if cols.size:
            self.fix(cols, self.l[cols])
        self.stats.fixed_columns += cols.size
        return bool(cols.size)

    def fix(self, cols: np.ndarray, values: np.ndarray) -> None:
        """Substitute x_j = v_j for j in ``cols`` (module docstring): with v the n-vector
        of the values on ``cols`` and 0 elsewhere, b <- b - A v, offset gains
        c_cols'v + 1/2 v'P v, then c <- c + P v."""
        v = np.zeros(self.A.shape[1])
        v[cols] = values
        self.b -= self.A @ v
        self.offset += float(self.c[cols] @ values)
        if self.P is not None:
            Pv = self.P @ v
            self.offset += 0.5 * float(v @ Pv)
            self.c += Pv
        self.col_on[cols] = False
        self.ops.extend(
            _Fixed(j, v[j], self.lo_row[j], self.lo_coef[j], self.hi_row[j], self.hi_coef[j])
            for j in cols.tolist()
        )

    def empty_columns(self) -> tuple[bool, np.ndarray | None]:
        n = self.A.shape[1]
        counts = np.bincount(self.A.indices, weights=self.row_on[self.entry_row], minlength=n)
        empty = self.col_on & ~self.locked & (counts == 0)
        if self.P_entries is not None:
            i, j = self.P_entries
            empty &= np.bincount(i, weights=self.col_on[j], minlength=n) == 0
        cols = np.flatnonzero(empty)
        values = np.zeros(cols.size)
        for k, j in enumerate(cols):
            cj, lj, uj = self.c[j], self.l[j], self.u[j]
            if cj > 0:
                v = lj
            elif cj < 0:
                v = uj
            else:
                v = lj if np.isfinite(lj) else (uj if np.isfinite(uj) else 0.0)
            if not np.isfinite(v):
                d = np.zeros(self.A.shape[1])
                d[j] = -1.0 / cj
                return True, d
            values[k] = v
        if cols.size:
            self.fix(cols, values)
        self.stats.empty_columns += cols.size
        return bool(cols.size), None

    def duplicate_rows(self, counts: np.ndarray) -> tuple[bool, np.ndarray | None]:
        cols_on = int(np.count_nonzero(self.col_on))
        if cols_on == self._dup_seen:
            return False, None
        self._dup_seen = cols_on
        rows = np.flatnonzero(self.row_on & (self.kind != _OTHER) & (counts >= 2))
        if rows.size < 2:
            return False, None
        # The selected rows restricted to the remaining columns, each divided by its first
        # entry: entry e of row local[e] is (col[e], value[e]), rows contiguous.
        A = self.A
        selected = np.zeros(A.shape[0], dtype=bool)
        selected[rows] = True
        at = np.flatnonzero(selected[self.entry_row] & self.col_on[A.indices])
        col, value = A.indices[at], A.data[at]
        sizes = np.diff(np.searchsorted(self.entry_row[at], np.append(rows, A.shape[0])))
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        first = value[starts]
        local = np.repeat(np.arange(rows.size), sizes)
        value = value / first[local]
        rng = np.random.default_rng(0)
        r1, r2 = rng.random(A.shape[1]), rng.random(A.shape[1])
        keys = np.stack(
            [
                np.round(np.bincount(local, weights=value * r1[col], minlength=rows.size), 8),
                np.round(np.bincount(local, weights=r2[col], minlength=rows.size), 8),
            ]
        )
        order = np.lexsort(keys)
        same = np.all(keys[:, order[1:]] == keys[:, order[:-1]], axis=0)
        normalized = (col, value, starts, starts + sizes)
        changed = False
        start = 0
        for pos in range(1, order.size + 1):
            if pos < order.size and same[pos - 1]:
                continue
            group = order[start:pos]
            start = pos
            if group.size < 2:
                continue
            found, cert = self._merge_group(rows[group], normalized, group, first)
            if cert is not None:
                return True, self.farkas_from_rows(cert)
            changed |= found
        return changed, None

    def _merge_group(
        self, rows: np.ndarray, normalized: tuple, local: np.ndarray, first: np.ndarray
    ) -> tuple[bool, dict | None]:
        """Merge the rows of one hash group that are truly parallel (module docstring).
        ``normalized`` = (col, value, start, stop): local row r is col[start[r]:stop[r]]
        with values value[start[r]:stop[r]], divided by its first entry ``first[r]``."""
        col, value, begin, end = normalized

        def row(r: int) -> tuple[np.ndarray, np.ndarray]:
            return col[begin[r] : end[r]], value[begin[r] : end[r]]

        # Equalities first, so that they are the representatives.
        order = np.argsort(self.kind[rows], kind="stable")
        rows, local = rows[order], local[order]
        changed = False
        for a in range(rows.size):
            i = int(rows[a])
            if not self.row_on[i]:
                continue
            cols_i, values_i = row(local[a])
            for bpos in range(a + 1, rows.size):
                k = int(rows[bpos])
                if not self.row_on[k]:
                    continue
                cols_k, values_k = row(local[bpos])
                if not (
                    np.array_equal(cols_i, cols_k)
                    and np.allclose(values_i, values_k, rtol=_PARALLEL_TOL, atol=0.0)
                ):
                    continue
                alpha = float(first[local[bpos]] / first[local[a]])
                merged, cert = self._merge_pair(i, k, alpha)
                if cert is not None:
                    return True, cert
                changed |= merged
                if not self.row_on[i]:
                    break
        return changed, None

    def _merge_pair(self, i: int, k: int, alpha: float) -> tuple[bool, dict | None]:
        """Rows i and k = alpha i: drop, merge, or an infeasibility certificate."""
        bi, bk = self.b[i], self.b[k]
        beta = bk / alpha  # row k reads a_i'x (>=, <= or =) beta
        tol = _FEAS_TOL * max(1.0, abs(bi), abs(beta))
        ki, kk = self.kind[i], self.kind[k]
        if ki == _ZERO:
            # a_i'x = b_i, so a_k'x = alpha b_i.
            if kk == _ZERO:
                bad = abs(alpha * bi - bk) > _FEAS_TOL * max(1.0, abs(bk), abs(alpha * bi))
                if bad:
                    # y_i = t, y_k = -t/alpha: A'y = 0, b'y = t (b_i - b_k/alpha).
                    t = -1.0 / (bi - beta)
                    return True, {i: t, k: -t / alpha}
            elif alpha * bi < bk - _FEAS_TOL * max(1.0, abs(bk), abs(alpha * bi)):
                # y_k = -t, y_i = t alpha: b'y = t (alpha b_i - b_k) < 0.
                t = 1.0 / (bk - alpha * bi)
                return True, {k: -t, i: t * alpha}
            self.row_on[k] = False
            self.stats.duplicate_rows += 1
            return True, None
        # Two inequalities.
        if alpha > 0:
            # Same side: the looser row is implied by the tighter one.
            self.row_on[i if beta > bi else k] = False
            self.stats.duplicate_rows += 1
            return True, None
        if beta < bi - tol:
            # a'x >= b_i and a'x <= beta < b_i: y_i = -t, y_k = -t / |alpha|.
            t = 1.0 / (bi - beta)
            return True, {i: -t, k: -t / abs(alpha)}
        if beta <= bi + tol:
            self.kind[i] = _ZERO
            self.row_on[k] = False
            self.ops.append(_Merged(i, k, alpha))
            self.stats.duplicate_rows += 1
            return True, None
        return False, None

    def free_rows(self) -> tuple[bool, np.ndarray | None]:
        l, u = np.where(self.col_on, self.l, np.nan), np.where(self.col_on, self.u, np.nan)
        seen = self._free_seen
        if (
            seen is not None
            and np.array_equal(seen[0], l, equal_nan=True)
            and (np.array_equal(seen[1], u, equal_nan=True))
        ):
            return False, None
        self._free_seen = (l, u)
        if not (np.any(np.isfinite(l)) or np.any(np.isfinite(u))):
            return False, None  # every row with a remaining column has infinite activity
        rows = np.flatnonzero(self.row_on & (self.kind != _OTHER))
        if not rows.size:
            return False, None
        low, high = self.activity(rows)
        b = self.b[rows]
        tol = _FEAS_TOL * np.maximum.reduce(
            [np.ones_like(b), np.abs(b), np.where(np.isfinite(high), np.abs(high), 0.0)]
        )
        short = high < b - tol
        zero = self.kind[rows] == _ZERO
        tol_low = _FEAS_TOL * np.maximum.reduce(
            [np.ones_like(b), np.abs(b), np.where(np.isfinite(low), np.abs(low), 0.0)]
        )
        over = zero & (low > b + tol_low)
        if np.any(short):
            p = int(np.flatnonzero(short)[0])
            return True, self.farkas_from_rows({int(rows[p]): -1.0 / (b[p] - high[p])})
        if np.any(over):
            p = int(np.flatnonzero(over)[0])
            return True, self.farkas_from_rows({int(rows[p]): 1.0 / (low[p] - b[p])})
        free = ~zero & (low >= b)
        if not np.any(free):
            return False, None
        self.row_on[rows[free]] = False
        self.stats.free_rows += int(np.count_nonzero(free))
        return True, None

    # ------------------------------------------------------------------ driver

    def run(self) -> tuple[str | None, np.ndarray | None]:
        """Apply the rules to a fixed point; (INFEASIBLE, stage Farkas vector (m,)),
        (UNBOUNDED, direction (n,)) or (None, None)."""
        for _ in range(_MAX_PASSES):
            self.stats.passes += 1
            changed = False
            for rule in (self.empty_rows, self.singleton_rows):
                found, cert = rule(self.row_counts())
                if cert is not None:
                    return s.INFEASIBLE, cert
                changed |= found
            changed |= self.fixed_columns()
            found, direction = self.empty_columns()
            if direction is not None:
                return s.UNBOUNDED, direction
            changed |= found
            found, cert = self.duplicate_rows(self.row_counts())
            if cert is not None:
                return s.INFEASIBLE, cert
            changed |= found
            found, cert = self.free_rows()
            if cert is not None:
                return s.INFEASIBLE, cert
            changed |= found
            if not changed:
                break
        return None, None

    def reduced(self) -> tuple[AssembledProgram, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The reduced program: the remaining equalities, inequalities and other cones'
        rows (in the original order of their blocks), then the bound rows of the
        remaining columns; with its columns, rows, and the columns of its lower and upper
        bound rows."""
        cols = np.flatnonzero(self.col_on)
        zero = np.flatnonzero(self.row_on & (self.kind == _ZERO))
        nonneg = np.flatnonzero(self.row_on & (self.kind == _NONNEG))
        terms: list[RowTerm] = []
        rows = [zero, nonneg]
        start = zero.size + nonneg.size
        if zero.size:
            terms.append(RowTerm(ZeroCone(zero.size), slice(0, zero.size)))
        if nonneg.size:
            terms.append(RowTerm(NonnegCone(nonneg.size), slice(zero.size, start)))
        for term in self.program.terms:
            if isinstance(term.function, (ZeroCone, NonnegCone)):
                continue
            rows.append(np.arange(term.rows.start, term.rows.stop))
            terms.append(RowTerm(term.function, slice(start, start + term.size)))
            start += term.size
        kept = np.concatenate(rows).astype(np.int64)
        l, u = self.l[cols], self.u[cols]
        B, d = bound_rows(l, u, cols.size)
        # A's entries on the kept rows and columns, renumbered, then B's below them: one
        # sparse assembly instead of row and column selections and a stack.
        m, n = self.A.shape
        new_row, new_col = np.full(m, -1), np.full(n, -1)
        new_row[kept], new_col[cols] = np.arange(kept.size), np.arange(cols.size)
        entry_row, entry_col = new_row[self.entry_row], new_col[self.A.indices]
        keep = (entry_row >= 0) & (entry_col >= 0)
        B = sp.coo_array(B)
        A = sp.csc_array(
            (
                np.concatenate([self.A.data[keep], B.data]),
                (
                    np.concatenate([entry_row[keep], B.row + kept.size]),
                    np.concatenate([entry_col[keep], B.col]),
                ),
            ),
            shape=(kept.size + d.size, cols.size),
        )
        b = np.concatenate([self.b[kept], d])
        bounds = None
        if d.size:
            bounds = slice(kept.size, kept.size + d.size)
            terms.append(RowTerm(NonnegCone(d.size), bounds))
        P = None if self.P is None else sp.csc_array(self.P[cols][:, cols])
        view = AssembledProgram(self.c[cols].copy(), A, b, terms, P, self.offset, bound_rows=bounds)
        lo_cols = cols[np.isfinite(l)]
        hi_cols = cols[np.isfinite(u)]
        return view, cols, kept, lo_cols, hi_cols


def presolve(program: AssembledProgram) -> Presolved:
    """The reductions of the module docstring applied to ``program``.

    Returns a ``Presolved`` whose ``program`` is the reduced program (None when the
    reductions settled the status); ``stats.removed`` is 0 when nothing was reduced.
    """
    state = _State(program)
    status, cert = state.run()
    presolved = Presolved(program, state.stats, ops=state.ops)
    if status == s.INFEASIBLE:
        presolved.status = status
        presolved.certificate = presolved.undo(cert, None, certificate=True)
        return presolved
    if status == s.UNBOUNDED:
        presolved.status, presolved.certificate = status, cert
        return presolved
    view, cols, kept, lo_cols, hi_cols = state.reduced()
    presolved.program = view
    presolved.cols, presolved.rows = cols, kept
    presolved.lo_cols, presolved.hi_cols = lo_cols, hi_cols
    presolved.provenance = (state.lo_row, state.lo_coef, state.hi_row, state.hi_coef)
    presolved.row_shift = program.b - state.b
    return presolved


def crossing_singletons(program: Program) -> np.ndarray | None:
    """The Farkas vector (m,) of a Program whose one-entry constraint rows cross, else
    None.

    Each one-entry row of a zero or nonnegative term, a x_j - b in K, is a bound on x_j:
    x_j >= b / a when a x_j - b >= 0 with a > 0 (or, for an equality, either sign),
    x_j <= b / a otherwise. When the largest lower bound L of some x_j exceeds its
    smallest upper bound U by more than ``_FEAS_TOL`` max(1, |L|, |U|) (rounding in b / a
    crosses no two equal bounds), from the rows lo and up, the vector with y_lo = -s / a_lo,
    y_up = s / a_up, s = 1 / (L - U), and 0 elsewhere has A'y = 0, b'y = -1, and lies in
    the polar cone (y <= 0 on a nonnegative row: a_lo > 0 > a_up there); the column
    with the largest L - U gives it. (TV denoising of 200 x 200 with X >= lo, X <= 0.5
    crossing at one pixel: dual FISTA's own Farkas test had not certified it after a
    million iterations.)"""
    n = program.n
    cols, bounds, coefs, rows, lower = [], [], [], [], []
    start = 0
    for term in program.terms:
        rows_k = np.arange(start, start + term.size)
        start += term.size
        equality = isinstance(term.function, ZeroCone)
        if not (equality or isinstance(term.function, NonnegCone)) or not term.size:
            continue
        if not _entrywise(term.op):
            continue  # a convolution's or a transform's rows are not read as bounds
        M = sp.csr_array(term.op.to_sparse())
        M.eliminate_zeros()
        single = np.flatnonzero(np.diff(M.indptr) == 1)
        if not single.size:
            continue
        a = M.data[M.indptr[single]]
        j = M.indices[M.indptr[single]]
        beta = np.asarray(term.b, dtype=np.float64)[single] / a
        sides = [(a > 0, True), (a < 0, False)]
        if equality:
            sides = [(np.ones(a.shape, dtype=bool), True), (np.ones(a.shape, dtype=bool), False)]
        for keep, is_lower in sides:
            cols.append(j[keep])
            bounds.append(beta[keep])
            coefs.append(a[keep])
            rows.append(rows_k[single[keep]])
            lower.append(np.full(int(np.count_nonzero(keep)), is_lower))
    if not cols:
        return None
    cols, bounds = np.concatenate(cols), np.concatenate(bounds)
    coefs, rows, lower = np.concatenate(coefs), np.concatenate(rows), np.concatenate(lower)
    L, U = np.full(n, -np.inf), np.full(n, np.inf)
    with np.errstate(invalid="ignore", over="ignore"):
        np.maximum.at(L, cols[lower], bounds[lower])
        np.minimum.at(U, cols[~lower], bounds[~lower])
        spread = L - U
        # As the assembled presolve decides a crossing (a spread that overflows is left
        # to the method's own test).
        crossing = np.isfinite(spread) & _crosses(L, U)
    if not np.any(crossing):
        return None
    j = int(np.argmax(np.where(crossing, spread, -np.inf)))
    lo = np.flatnonzero(lower & (cols == j) & (bounds == L[j]))[:1]
    up = np.flatnonzero(~lower & (cols == j) & (bounds == U[j]))[:1]
    t = np.array([-1.0 / float(spread[j])])
    y = np.zeros(start)
    _assign_bound_duals(
        y, np.array([j]), t, t, rows[lo], coefs[lo], rows[up], coefs[up], dense=False
    )
    return y


def _entrywise(op: LinOp) -> bool:
    """Whether ``op`` is a sparse matrix, a selection or a diagonal (a multiple of one),
    whose assembled rows cost no more than its entries (a dense matrix's would cost
    several times its memory)."""
    while isinstance(op, ScalarMultiple):
        op = op.op
    if isinstance(op, MatrixOp):
        return not isinstance(op.matrix, np.ndarray)
    return isinstance(op, (Identity, Diagonal, Gather))
