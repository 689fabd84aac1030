"""The termination test of every algorithm: per-row, per-column and gap tolerances.

For a program ``minimize 1/2 x'Px + c'x + sum_i f_i(A_i x - b_i)`` (a cone program being
the case f_i = indicator of K) with iterate x (n,), z (m,), y (m,), the residuals are

    primal  r = A x - b - z                        (m,)  one entry per row
    dual    d = P x + c + A'y                      (n,)  one entry per variable
    gap     g = pobj - dobj                        scalar

and each entry is tested against its own tolerance, built from two kinds of scale:

    |r_i| <= eps_abs u_i + eps_rel max(a_i, |z_i|, |b_i|)
    |d_j| <= eps_abs v_j + eps_rel max(|c_j|, q_j, p_j)
    |g|   <= eps_abs w   + eps_rel max(|pobj|, |dobj|, |c'x|, |b'y|, x'Px)

* the *magnitudes* of the entry at the current iterate: a_i is |(Ax)_i|, the row's
  value, q_j is (|A|'|y|)_j, the sum of the absolute values of the products a_ij y_i (or
  |(A'y)_j| where the operator has no entrywise absolute value), p_j = (|P| |x|)_j. A
  row's tolerance is relative to that row only, so one large right-hand side or one
  large row loosens nothing else. The row's value and not (|A| |x|)_i: with x ~ 1e6 in a
  row whose data and value are O(1) (Netlib's GROW7) that sum is ~1e5, and a row
  violated by 3e-2 would pass a relative test of 1e-6;
* the *units* u (m,), v (n,), w > 0 of the data: the size a residual entry has when the
  problem is well scaled. With the diagonal equilibration of the program
  (``cvxprox.solvers.common.scaling``: A^ = E A D, c^ = k D c, P^ = k D P D, b^ = E b) the units are
  u_i = 1 / E_i, v_j = 1 / (k D_j), w = 1 / k (k = 1 / the largest over the variables of
  max(|(D c)_j|, max_i |(D P D)_ij|): unlike the iteration's cost scale, not clipped),
  so that the absolute part of the test is SCS's eps_abs on the equilibrated program,
  read back in the original units, capped at 1 so that it is never looser than
  eps_abs itself (eps_abs keeps its absolute meaning on a problem whose rows are
  large; there the relative part carries the test). The equilibration normalizes
  rows, columns and the cost, so that multiplying a row, a variable or the objective
  by 1e-8 .. 1 multiplies that row's (column's, the gap's) residual and tolerance by
  the same factor, and by 1 .. 1e8 multiplies its residual and the relative part of
  its tolerance alike: no scale makes the absolute tolerance vacuous (a constant 1e-6
  would be, against a row scaled by 1e-8).

The gap is a difference of sums whose terms can be far larger than the gap itself, and
it is computed in floating point: its rounding error grows with those terms, about
``GAP_ROUNDING`` times the largest of |pobj|, |dobj|, |c'x|, |b'y|, x'Px. A tolerance below
that level cannot be verified by that computation. The test then accepts a gap within the
rounding level (``KKTError.gap_floor``), and the point is reported checked only to it
(``KKTError.gap_verified`` is False). Maros-Meszaros' POWELL20 and HUESTIS at eps_abs =
1e-3, eps_rel = 0 (their objectives 5.2e10 and 3.5e11, the terms of the gap about twice
that): the gap computed at the solver's last check was 2.3e-4 and 9.8e-4, the exact gap
of the point handed back (the same point through the postsolve and CVXPY's maps, in
rational arithmetic) 1.3e-3 and 2.0e-3, and the one qpbenchmark computes in floating
point 5.6e-3 and 2.1e-3. Before such a point is reported, the gap of a cone program's
point is computed again without rounding (``exact_gap``: every product split into two
floats that hold it exactly, their sum correctly rounded); when that gap is within the
tolerance, with room for what a unit roundoff on every entry of x and y can move it by
where the maps that carry the point to the user's values scale entries (not for LPs and
QPs, whose maps copy and negate them), the status is ``optimal``; else an LP or QP is
polished from the point once more, and a polished point that passes the test with its
gap so verified is ``optimal``; otherwise the status is ``optimal_inaccurate``
(``cvxprox.solvers.select``). QGFRDXPN's polished point: gap 4.5e-5 against eps_abs =
1e-3, where the rounding level is 2.0e-3.

Every function but ``exact_gap`` (host NumPy arrays) takes the arrays of any array-API
namespace (NumPy, torch, CuPy) and returns Python floats. The worst entry of each test
is reported (``KKTError``): its residual and its tolerance, so that ``residual <=
tolerance`` holds for every entry exactly when it holds for the reported one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from cvxprox.backend import array_namespace

#: The rounding level of the computed gap, relative to its largest term: 1e-14 is
#: sqrt(n) unit roundoffs for n = 1e4 terms (the errors of a long dot product add up like
#: a random walk), the measured level on POWELL20 and HUESTIS (module docstring).
GAP_ROUNDING = 1e-14


@dataclass
class KKTError:
    """Residuals of the optimality conditions at one iterate, in the original units.

    ``primal``/``primal_tol`` are the residual |r_i| and the tolerance of the row i whose
    ratio |r_i| / tol_i is largest (likewise ``dual`` for the columns); ``gap`` is
    |pobj - dobj| and ``gap_tol`` its tolerance; ``gap_floor`` the rounding level of
    the computed gap (module docstring), below which no test of it means anything.
    """

    primal: float
    dual: float
    gap: float
    primal_tol: float
    dual_tol: float
    gap_tol: float
    primal_objective: float
    dual_objective: float
    gap_floor: float = 0.0

    @property
    def converged(self) -> bool:
        return (
            self.primal <= self.primal_tol
            and self.dual <= self.dual_tol
            and self.gap <= max(self.gap_tol, self.gap_floor)
        )

    @property
    def gap_verified(self) -> bool:
        """Whether the gap's tolerance is above its rounding level, so that passing the
        test means what was asked (else a converged point is verified without rounding,
        module docstring, before it may be called ``optimal``)."""
        return self.gap_tol >= self.gap_floor

    @property
    def normalized(self) -> float:
        """max of residual / tolerance: below 1 means converged."""
        return max(
            _ratio(self.primal, self.primal_tol),
            _ratio(self.dual, self.dual_tol),
            _ratio(self.gap, max(self.gap_tol, self.gap_floor)),
        )


#: The most ``check_every`` periods that the distance rule of ``check_spacing`` puts
#: between two termination tests (its cost rule may put more).
SPACING_MAX = 4


def check_spacing(
    normalized: float, check_cost: float = 0.0, iteration: int = 0, period: int = 1
) -> int:
    """``check_every`` periods (of ``period`` iterations) until the next termination test
    after one at ``iteration`` whose worst residual over tolerance ratio is
    ``normalized``: the larger of two rules, at least 1.

    * Distance: min(floor(log2 ratio), ``SPACING_MAX``) (1 for a ratio under 4 or not
      finite). A test that fails by a factor of 4 or more seldom passes a few iterations
      later; a late one costs at most (``SPACING_MAX`` - 1) periods.
    * Cost: when a test costs as much as ``check_cost`` iterations, tests s iterations
      apart cost about N check_cost / s over a run of N iterations, and the run goes on
      past convergence by s / 2 on average: s = sqrt(2 check_cost N) balances the two.
      N is not known; the iterations done are a lower bound, so the spacing is
      sqrt(2 check_cost ``iteration``) iterations, in whole periods (rounded down).

    The test itself is the same at every check; only how often it runs changes."""
    spacing = 1
    if math.isfinite(normalized) and normalized >= 4.0:
        spacing = min(int(math.log2(normalized)), SPACING_MAX)
    if check_cost > 0.0 and iteration > 0:
        spacing = max(spacing, int(math.sqrt(2.0 * check_cost * iteration) // period))
    return spacing


def _ratio(residual: float, tol: float) -> float:
    """residual / tol, with 0 / 0 = 0 and r / 0 = inf for r > 0."""
    if tol > 0:
        return residual / tol
    return 0.0 if residual == 0 else float("inf")


def worst_entry(
    residual: Any, magnitudes: list[Any], unit: Any, eps_abs: float, eps_rel: float
) -> tuple[float, float]:
    """(|r_i|, tol_i) of the entry with the largest |r_i| / tol_i.

    tol_i = eps_abs unit_i + eps_rel max_k |magnitudes[k]_i|. ``residual`` and every
    magnitude have one shape (k,); ``unit`` has that shape or is a scalar. An empty
    residual gives (0, 1).
    """
    xp = array_namespace(residual)
    if residual.shape[0] == 0:
        return 0.0, 1.0
    r = xp.abs(residual)
    scale = xp.abs(magnitudes[0])
    for mag in magnitudes[1:]:
        scale = xp.maximum(scale, xp.abs(mag))
    tol = eps_abs * unit + eps_rel * scale
    # An entry with a zero tolerance passes only when its residual is exactly zero.
    positive = tol > 0
    ratio = xp.where(positive, r / xp.where(positive, tol, 1.0), xp.where(r > 0, xp.inf, 0.0))
    i = int(xp.argmax(ratio))
    return float(r[i]), float(tol[i])


def kkt_error(
    primal: tuple[Any, list[Any], Any],
    dual: tuple[Any, list[Any], Any],
    objectives: tuple[float, float, list[float], float],
    eps_abs: float,
    eps_rel: float,
    offset: float = 0.0,
) -> KKTError:
    """The KKTError of an iterate (see the module docstring).

    ``primal`` = (r, [a, z, b], u) and ``dual`` = (d, [c, q, p], v) give the residual
    vectors, their magnitude vectors and units; ``objectives`` = (pobj, dobj, terms, w)
    the primal and dual objectives (without ``offset``), the objective terms whose
    magnitudes scale the gap (c'x, b'y, x'Px) and the gap's unit.
    """
    return kkt_error_of_worst(
        worst_entry(primal[0], primal[1], primal[2], eps_abs, eps_rel),
        worst_entry(dual[0], dual[1], dual[2], eps_abs, eps_rel),
        objectives,
        eps_abs,
        eps_rel,
        offset,
    )


def kkt_error_of_worst(
    primal: tuple[float, float],
    dual: tuple[float, float],
    objectives: tuple[float, float, list[float], float],
    eps_abs: float,
    eps_rel: float,
    offset: float = 0.0,
) -> KKTError:
    """``kkt_error`` given the worst entries (|r_i|, tol_i) and (|d_j|, tol_j) already
    (``worst_entry``'s, or a compiled pass's that computes the same)."""
    pobj, dobj, terms, w = objectives
    gap_scale = max([abs(pobj), abs(dobj)] + [abs(t) for t in terms])
    return KKTError(
        primal=primal[0],
        dual=dual[0],
        gap=abs(pobj - dobj),
        primal_tol=primal[1],
        dual_tol=dual[1],
        gap_tol=eps_abs * w + eps_rel * gap_scale,
        primal_objective=pobj + offset,
        dual_objective=dobj + offset,
        gap_floor=GAP_ROUNDING * gap_scale,
    )


#: Veltkamp's splitting constant 2^27 + 1: a float64 a = hi + lo with hi, lo of 26 bits.
_SPLITTER = 134217729.0


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """hi + lo = a exactly, each with at most 26 significant bits (Veltkamp)."""
    scaled = _SPLITTER * a
    hi = scaled - (scaled - a)
    return hi, a - hi


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p + e = a * b exactly, p the rounded product (Dekker 1971; no overflow)."""
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def exact_gap(
    c: np.ndarray, b: np.ndarray, P: sp.sparray | None, x: np.ndarray, y: np.ndarray
) -> tuple[float, float]:
    """The duality gap |x'Px + c'x + b'y| of a cone program's point (pobj - dobj of
    ``kkt_checks``), correctly rounded, and its spread: eps (|c|'|x| + 2 |x|'|P||x| +
    |b|'|y|), the most a relative change of a unit roundoff in each entry of x and y
    moves it (to first order). Every product is split into two floats that sum to it
    exactly (x'Px through P_ij x_i = t + e, then t x_j and e x_j), and ``math.fsum`` adds
    them all exactly; NaN where a product overflows. Host arrays (n,), (m,)."""
    parts = [*_two_product(c, x), *_two_product(b, y)]
    abs_x = np.abs(x)
    spread = float(np.abs(c) @ abs_x + np.abs(b) @ np.abs(y))
    if P is not None:
        P = sp.coo_array(P)
        t, e = _two_product(P.data, x[P.row])
        parts += [*_two_product(t, x[P.col]), *_two_product(e, x[P.col])]
        spread += 2.0 * float(abs_x[P.row] @ (np.abs(P.data) * abs_x[P.col]))
    terms = np.concatenate(parts)
    if not np.all(np.isfinite(terms)):
        return math.nan, math.nan
    return abs(math.fsum(terms.tolist())), float(np.finfo(np.float64).eps) * spread
