"""The termination test of the methods on a Program's terms, and its units.

A Program (``cvxprox.ir.program``) is ``minimize c'x + sum_i f_i(A_i x - b_i)`` subject
to l <= x <= u. Its iterates are x (n,), in the box (the methods that check it project
onto the box, or split it off as a term of their own), and z, y (m,) stacked over the
terms in order (term i owns the rows ``layout.slices[i]``). With the reduced cost
r = c + A'y and the bound multipliers lam_l = max(r, 0) where l is finite, lam_u =
max(-r, 0) where u is finite (0 elsewhere; PDLP's reading of the bound duals), the
optimality conditions are

    primal:  A x - b - z = 0
    dual:    r - lam_l + lam_u = 0,        y_i in df_i(z_i),

and the algorithms keep the last condition exactly (y_i comes out of a proximal step at
z_i). The dual objective gains l'lam_l - u'lam_u, so a multiplier on a bound that x is
not at shows in the gap (lam_l'(x - l) + lam_u'(u - x)). They stop when
``cvxprox.solvers.common.termination``'s test holds, per row and per variable:

    |A x - b - z|_i <= eps_abs u_i + eps_rel max(|(A x)_i|, |z_i|, |b_i|)   (a constraint)
    |r - lam_l + lam_u|_j <= eps_abs v_j + eps_rel max(|c_j|, |(A'y)_j|)
    |pobj - dobj|   <= eps_abs w   + eps_rel max(|pobj|, |dobj|, |c'x|, |y'(z + b)|,
                                                 |l'lam_l - u'lam_u|)

(for the rows of any other term, the largest of these over the term's rows: they are
one function's argument, one quantity in one unit), with pobj = c'x + sum_i f_i(A_i x - b_i)
and the dual objective
dobj = -sum_i (f_i*(y_i) + b_i'y_i), where y_i in df_i(z_i) gives the conjugate without
a formula: f_i*(y_i) = y_i'z_i - f_i(z_i) (Fenchel-Young). The units come from one
equilibration pass on the operators (``TerminationUnits``): the row unit u_i of a
constraint (an indicator term) is the norm of row i (exact for matrix, gather and
diagonal operators, the operator's norm for the rows of a convolution or difference
operator, whose rows all have about that norm), 1 for the argument of any other term
(its function fixes its units); the column unit v_j = w ||(E A)_j|| is the norm of
column j once the rows are divided by their units (from ``gram_diagonal``, else random
probes), taken over the terms that are not constraints when they use x_j (a constraint
row can be rescaled freely, so it says nothing of x_j's unit when such a term fixes
it), over the constraints otherwise; and w = max(||c / ||(E A)_j|| ||_inf, the terms'
weights) is the objective's; each unit is capped at 1, as in the cone route. Scaling a
constraint row, a variable or the objective down by any factor scales that entry's
residual and tolerance alike (up, the relative part keeps the pace).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from cvxprox.backend.jit.residuals import worst_ratio
from cvxprox.interface.options import SolverOptions
from cvxprox.operators.linops import (
    Diagonal,
    Gather,
    Identity,
    LinOp,
    MatrixOp,
    ScalarMultiple,
    TVDifferences,
)
from cvxprox.solvers.admm.xupdate import norm_estimate
from cvxprox.solvers.common.termination import KKTError, kkt_error_of_worst, worst_entry

if TYPE_CHECKING:
    from cvxprox.solvers.common.terms import TermLayout


# Operators whose assembled matrix has as many nonzeros as the operator stores: their
# exact row norms are cheap.
SPARSE_KINDS = (Diagonal, Gather, Identity, MatrixOp, ScalarMultiple, TVDifferences)


# The second magnitude of ``worst_ratio`` when there is none.
_EMPTY = np.zeros(0)

# Residuals from this length on take the compiled ``worst_ratio`` (shorter ones cost NumPy
# little, less than compiling it on a first solve).
COMPILED_WORST_FROM = 1 << 16

# Random probes per operator for column norms that diag(A'A) does not give.
_PROBES = 16


@dataclass(frozen=True)
class TermSums:
    """One term's share of a check (``StructuredChecker.evaluate``) at (x, z, y), for a
    term f_k that is not an indicator, with v = A_k x - b_k:

    residual    max_i |v - z_k|_i, its largest primal residual;
    magnitude   max_i max(|(A_k x)_i|, |z_i|, |b_i|) (its rows' tolerances are
                eps_abs + eps_rel magnitude: one quantity, unit 1);
    value       f_k(v): the terms sum to the primal objective less c'x (indicators hold
                only up to the primal tolerance at an approximate solution, so they count
                0 and the value is the objective the user's expression has at x);
    value_at_z  f_k(z_k), and
    yzb         y_k'(z_k + b_k): the dual objective is the sum of value_at_z - yzb,
                -sum_k (f_k*(y_k) + b_k'y_k) for y_k in df_k(z_k) (Fenchel-Young; an
                indicator's f_k(z_k) = 0, z_k being in its set).

    An indicator's share has NaN for the first two (its rows are tested one by one)."""

    residual: float
    magnitude: float
    value: float
    value_at_z: float
    yzb: float


def _worse(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """Of two (|r|, tol), the one with the larger ratio |r| / tol (``worst_entry``'s
    rules: a tolerance that is not positive gives inf where r > 0, else 0; a NaN is
    worst, the first one kept; a tie keeps ``a``)."""

    def ratio(e: tuple[float, float]) -> float:
        r, tol = e
        return r / tol if tol > 0 else (math.inf if r > 0 else 0.0)

    for e in (a, b):
        if math.isnan(e[0]) or math.isnan(e[1]):
            return e
    return b if ratio(b) > ratio(a) else a


class TerminationUnits:
    """The units u (m,), v (n,), w of the termination test (see the module docstring).

    Parameters
    ----------
    layout : TermLayout
    """

    def __init__(self, layout: TermLayout) -> None:
        program = layout.program
        n = program.n
        row = np.ones(layout.m)
        # Squared column norms of the other terms' operators and of the normalized rows
        # of the constraints.
        objective_sq, col_sq = np.zeros(n), np.zeros(n)
        weight = 0.0
        for term, rows in zip(program.terms, layout.slices, strict=True):
            op, indicator = term.op, term.function.is_indicator
            if not indicator:
                weight = max(weight, float(np.max(np.abs(getattr(term.function, "weight", 1.0)))))
                norms = np.ones(term.size)
                objective_sq += _column_norms_sq(op)
            elif isinstance(op, SPARSE_KINDS):
                M = op.matrix if isinstance(op, MatrixOp) else op.to_sparse()
                if isinstance(M, np.ndarray):
                    norms = np.linalg.norm(M, axis=1)
                    norms = np.where(norms > 0, norms, 1.0)
                    col_sq += np.einsum("ij,ij->j", M, M / norms[:, None] ** 2)
                else:
                    M = sp.csr_array(M)
                    norms = np.sqrt(np.asarray(M.power(2).sum(axis=1)).ravel())
                    norms = np.where(norms > 0, norms, 1.0)
                    scaled = sp.diags_array(1.0 / norms) @ M
                    col_sq += np.asarray(scaled.power(2).sum(axis=0)).ravel()
            else:
                norm = norm_estimate(op) or 1.0
                norms = np.full(term.size, norm)
                col_sq += _column_norms_sq(op) / norm**2
            row[rows] = norms
        col = np.sqrt(np.where(objective_sq > 0, objective_sq, col_sq))
        col = np.where(col > 0, col, 1.0)
        c_scaled = np.abs(program.c) / col
        w = max(weight, float(np.max(c_scaled, initial=0.0)))
        self.columns = col
        w = w if w > 0 else 1.0
        self.primal = np.minimum(row, 1.0)
        self.objective = min(w, 1.0)
        self.dual = np.minimum(w * col, 1.0)


def termination_units(layout: TermLayout) -> TerminationUnits:
    """``TerminationUnits(layout)``, computed once per Program and kept on it: the column
    scaling's test and the solve's termination test ask for the same units (a few ms to
    tens of ms on a large dense operator; a Program's data do not change once built, a
    new parameter value lowers to a new Program)."""
    program = layout.program
    if program._termination_units is None:
        program._termination_units = TerminationUnits(layout)
    return program._termination_units


def _column_norms_sq(op: LinOp) -> np.ndarray:
    """||A e_j||^2 for every column j: diag(A'A) when the operator has it, else the mean
    of (A'g)_j^2 over ``_PROBES`` Gaussian probes g (whose expectation it is; within a
    factor 2 or so, enough for a unit)."""
    diag = op.gram_diagonal()
    if diag is not None:
        return diag
    rng = np.random.default_rng(0)
    total = np.zeros(op.shape[1])
    for _ in range(_PROBES):
        total += op.rmatvec(rng.standard_normal(op.shape[0])) ** 2
    return total / _PROBES


class StructuredChecker:
    """KKT errors of Program iterates (see the module docstring).

    The iterates live where the layout's terms do (``TermLayout(program, backend)``):
    on a torch or CuPy layout the test runs on the device and reads back scalars only
    (the units are computed once on the host from the program's own terms).

    Parameters
    ----------
    layout : TermLayout
    options : SolverOptions
    """

    def __init__(self, layout: TermLayout, options: SolverOptions) -> None:
        self.layout = layout
        self.opts = options
        self.units = termination_units(layout)
        backend = layout.backend
        self._c = backend.asarray(layout.program.c)
        self._primal_unit = backend.asarray(self.units.primal)
        self._dual_unit = backend.asarray(self.units.dual)
        # The primal residual, kept from one check to the next (``_term_sums``).
        self._residual = backend.zeros(layout.m)
        self._bounds = None
        if layout.program.has_bounds:
            n = layout.program.n
            l, u = (
                np.full(n, fill) if bound is None else bound
                for bound, fill in ((layout.program.l, -np.inf), (layout.program.u, np.inf))
            )
            has_l, has_u = np.isfinite(l), np.isfinite(u)
            self._bounds = tuple(
                backend.asarray(v)
                for v in (
                    has_l.astype(np.float64),
                    has_u.astype(np.float64),
                    np.where(has_l, l, 0.0),
                    np.where(has_u, u, 0.0),
                )
            )

    def evaluate(
        self,
        x: np.ndarray,
        z: np.ndarray,
        y: np.ndarray,
        Ax: np.ndarray | None = None,
        Aty: np.ndarray | None = None,
        sums: dict[int, TermSums] | None = None,
    ) -> KKTError:
        """KKT error at (x, z, y); pass the products A x and A'y when already computed.

        ``sums`` gives the shares of some terms that are not indicators (``TermSums``),
        computed by their holder in its own layout: their rows of z, y and A x are not
        read."""
        layout, program, units = self.layout, self.layout.program, self.units
        sums = sums or {}
        Ax = layout.matvec(x) if Ax is None else Ax
        Aty = layout.rmatvec(y) if Aty is None else Aty
        scalar, c = layout.backend.scalar, self._c
        cx = scalar(c @ x)
        value = value_at_z = yzb = 0.0
        primal = None
        for k, rows in enumerate(layout.slices):
            if not layout.terms[k].size:
                continue
            if k in sums:
                share = sums[k]
                if layout.terms[k].function.is_indicator:
                    raise ValueError(f"evaluate: term {k} is an indicator; its rows have no sums")
                worst = (share.residual, self.tolerance(share.magnitude))
            else:
                share, worst = self._term_sums(k, Ax[rows], z[rows], y[rows])
            value += share.value
            value_at_z += share.value_at_z
            yzb += share.yzb
            primal = worst if primal is None else _worse(primal, worst)
        pobj = cx + value
        dobj = value_at_z - yzb
        dual = c + Aty
        bound_term = 0.0
        if self._bounds is not None:
            has_l, has_u, l, u = self._bounds
            lam_l = has_l * (0.5 * (dual + abs(dual)))  # max(r, 0), exactly
            lam_u = has_u * (0.5 * (abs(dual) - dual))  # max(-r, 0)
            bound_term = scalar(l @ lam_l - u @ lam_u)
            dual = dual - lam_l + lam_u
            dobj += bound_term
        return kkt_error_of_worst(
            (0.0, 1.0) if primal is None else primal,
            self._worst(dual, [c, Aty], self._dual_unit),
            (pobj, dobj, [cx, yzb, bound_term], units.objective),
            self.opts.eps_abs,
            self.opts.eps_rel,
            program.offset,
        )

    def _term_sums(self, k: int, Ax: Any, z: Any, y: Any) -> tuple[TermSums, tuple[float, float]]:
        """Term k's ``TermSums`` and its worst row (|r_i|, tol_i) from its A_k x, z_k, y_k:
        the residual A_k x - b_k - z_k in the check's kept m-vector (a fresh one per check
        would cost its page faults again)."""
        layout, scalar = self.layout, self.layout.backend.scalar
        rows, function = layout.slices[k], layout.terms[k].function
        b = layout.b[rows]
        residual = self._residual[rows]
        residual[:] = Ax
        residual -= b
        indicator = function.is_indicator
        value = 0.0 if indicator else function(residual)
        value_at_z = 0.0 if indicator else function(z)
        residual -= z
        magnitude = self._term_magnitude(k, Ax, z)
        yzb = scalar(y @ z) + scalar(y @ b)
        if indicator:
            worst = self._worst(residual, [magnitude], self._primal_unit[rows])
            return TermSums(math.nan, math.nan, value, value_at_z, yzb), worst
        xp = layout.backend.xp
        largest = max(float(xp.max(residual)), -float(xp.min(residual)))
        share = TermSums(largest, magnitude, value, value_at_z, yzb)
        return share, (largest, self.tolerance(magnitude))

    def fitted_sums(self, k: int, Ax: Any, z: Any, y: Any) -> TermSums:
        """Term k's ``TermSums`` when z_k is exactly A_k x - b_k (formed as
        ``_term_sums`` forms the residual, so it is 0): f_k evaluated once, for the value
        at A_k x - b_k and at z_k, from its A_k x, z_k, y_k; for a term that is not an
        indicator."""
        if self.layout.terms[k].function.is_indicator:
            raise ValueError(f"fitted_sums: term {k} is an indicator; its rows have no sums")
        scalar, b = self.layout.backend.scalar, self.layout.b[self.layout.slices[k]]
        value = float(self.layout.terms[k].function(z))
        magnitude = self._term_magnitude(k, Ax, z)
        return TermSums(0.0, magnitude, value, value, scalar(y @ z) + scalar(y @ b))

    def tolerance(self, magnitude: float) -> float:
        """The primal tolerance of every row of a term that is not an indicator, whose
        rows' largest magnitude is ``magnitude`` (``TermSums``; unit 1)."""
        return self.opts.eps_abs + self.opts.eps_rel * magnitude

    def _worst(self, residual: Any, magnitudes: list[Any], unit: Any) -> tuple[float, float]:
        """``termination.worst_entry``; for a long float64 NumPy residual its one-pass
        twin ``worst_ratio``."""
        eps_abs, eps_rel = self.opts.eps_abs, self.opts.eps_rel
        if (
            self.layout.backend.name != "numpy"
            or residual.dtype != np.float64
            or residual.shape[0] < COMPILED_WORST_FROM
        ):
            return worst_entry(residual, magnitudes, unit, eps_abs, eps_rel)
        second = magnitudes[1] if len(magnitudes) > 1 else _EMPTY
        unit = np.atleast_1d(np.asarray(unit, dtype=np.float64))
        return worst_ratio(residual, magnitudes[0], second, unit, eps_abs, eps_rel)

    def _term_magnitude(self, k: int, Ax: Any, z: Any) -> Any:
        """max(|(A x)_i|, |z_i|, |b_i|) per row of term k, from its A_k x and z_k, for a
        constraint; for any other term the largest of these over its rows, one number
        (the rows of one function's argument are one quantity, in one unit)."""
        xp = self.layout.backend.xp
        parts = (Ax, z, self.layout.b[self.layout.slices[k]])
        if self.layout.terms[k].function.is_indicator:
            return xp.maximum(xp.maximum(xp.abs(parts[0]), xp.abs(parts[1])), xp.abs(parts[2]))
        # max |v| = max(max v, -min v): no |v| temporary.
        return max(max(float(xp.max(v)), -float(xp.min(v))) for v in parts)
