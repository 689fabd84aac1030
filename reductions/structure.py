"""StructureToProx: a CVXPY problem -> a Program that keeps its structure.

The objective is split into a weighted sum of terms ``w f(A x - b)`` where f is a
function with a cheap proximal operator (``cvxprox.functions.prox``) and A an operator
(``reductions/affine.py``):

    norm1 / abs sums -> Norm1          sum_squares, quad_over_lin(., c), square sums -> SumSquares
    quad_form(., Q), Q constant -> Quadratic
    norm2, pnorm(2), norm(., "fro") -> Norm2       norm_inf -> NormInf
    huber sums -> Huber                pos / maximum(., c) sums -> Pos
    norm(., 2, axis) sums, mixed_norm, 2-D tv -> GroupL2 (isotropic TV)
    1-D tv, norm1(diff(x)) -> TV1D of x        logistic sums -> Logistic
    (a 1-D tv of anything but a variable: Norm1 of a finite difference)
    -entr sums -> NegEntropy           kl_div(., c) sums -> KLDiv

with nonnegative weights (scalars, or elementwise from ``multiply`` / ``w @``). Affine
parts become the linear term c'x. Constraints: ``==`` becomes a ZeroCone term, ``<=`` and
``>=`` NonnegCone terms, ``norm(u) <= r`` (p = 1, 2, inf, u affine) a ball indicator,
``SOC``, ``ExpCone``, ``PowCone3D`` and PSD (``X >> 0``) constraints cone terms, and a
``PowConeND`` constraint the 3-D power cones of CVXPY's exact conversion (a balanced tree
of them over auxiliary variables, ``cvxpy_compat.pow_nd_to_3d``).

Elementwise bounds on variables are the program's ``l <= x <= u``, not terms: an affine
inequality whose every entry is ``a x_j + d >= 0`` on distinct entries x_j of the stacked
variable (``x >= 0``, ``x <= ub``, ``X[mask] >= lo``, ``2 * x[:3] <= p`` with constant or
parameter right-hand sides), an equality whose every entry is ``a x_j + d == 0`` (both
bounds at -d / a; entries ``0 == 0`` are vacuous: ``multiply(mask, X) == mask * data``)
and the variable attributes ``nonneg``, ``nonpos`` and ``bounds``; the tightest bound per
entry and side is kept (the first of equal ones). Such a constraint's dual is its bound's
multiplier, read from the reduced cost r = c + P x + sum_i A_i'y_i of the solution
(``BoundConstraint``): r_j > 0 is the multiplier of x_j's lower bound, -r_j of its upper
bound, divided by |a|, on the constraint that holds the tightest bound (0 on a looser
one); an equality's entry is -r_j / a (CVXPY's sign: the Lagrangian adds nu (a x_j + d)),
from the sides it holds. Bounds that cross
(l_j > u_j, ``ir.program.check_bounds``) are kept as NonnegCone terms instead, so that
the method certifies the infeasibility in the constraints' duals.

A part with no prox form (an objective atom such as ``exp``, ``log_sum_exp`` or a
``pnorm(., 3)``; a nonlinear inequality such as ``norm(A x) + a'x <= b`` or
``quad_over_lin(x, y) <= 1``) is *expanded*: CVXPY's own cone canonicalization
(``Dcp2Cone.canonicalize_tree``) rewrites just that part into an affine expression and
cone constraints over auxiliary variables, appended to x; every other term keeps its
prox. A nonlinear inequality keeps its dual: it becomes the affine inequality of its
canonical form, whose multiplier is the constraint's. A problem with a part that is
neither (a variable attribute other than the bounds, such as PSD=True, a sparse or large
``quad_form``, which CVXPY's chain keeps sparse) raises ``NotStructured`` with the
reason, and takes CVXPY's cone canonicalization as a whole (``ProxOrCone`` in
``reductions/dispatch.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from cvxpy.atoms.affine.add_expr import AddExpression
from cvxpy.atoms.affine.binary_operators import DivExpression, MulExpression, multiply
from cvxpy.atoms.affine.conv import convolve
from cvxpy.atoms.affine.sum import Sum
from cvxpy.atoms.affine.unary_operators import NegExpression
from cvxpy.atoms.elementwise.abs import abs as abs_atom
from cvxpy.atoms.elementwise.entr import entr
from cvxpy.atoms.elementwise.huber import huber
from cvxpy.atoms.elementwise.kl_div import kl_div
from cvxpy.atoms.elementwise.logistic import logistic
from cvxpy.atoms.elementwise.maximum import maximum
from cvxpy.atoms.elementwise.power import Power
from cvxpy.atoms.norm1 import norm1
from cvxpy.atoms.norm_inf import norm_inf
from cvxpy.atoms.pnorm import Pnorm
from cvxpy.atoms.quad_form import QuadForm
from cvxpy.atoms.quad_over_lin import quad_over_lin
from cvxpy.constraints import PSD, SOC, Equality, Inequality, NonNeg, NonPos, PowConeND
from cvxpy.constraints import ExpCone as ExpConstraint
from cvxpy.constraints import PowCone3D as PowConstraint
from cvxpy.constraints import Zero as ZeroConstraint
from cvxpy.constraints.constraint import Constraint
from cvxpy.expressions.expression import Expression
from cvxpy.problems.objective import Minimize
from cvxpy.problems.problem import Problem
from cvxpy.reductions.dcp2cone.dcp2cone import Dcp2Cone

from cvxprox.atoms import conv2d, fourier_sample
from cvxprox.cvxpy_compat import pow_nd_dual, pow_nd_to_3d
from cvxprox.functions.cones import (
    Cone,
    ExpCone,
    NonnegCone,
    PowCone3D,
    PSDCone,
    SecondOrderCone,
    ZeroCone,
    svec_to_mat,
)
from cvxprox.functions.prox import (
    TV1D,
    GroupL2,
    Huber,
    KLDiv,
    L1Ball,
    L2Ball,
    LinfBall,
    Logistic,
    NegEntropy,
    Norm1,
    Norm2,
    NormInf,
    Pos,
    ProxFunction,
    Quadratic,
    SumSquares,
)
from cvxprox.ir.program import Program, Term, check_bounds
from cvxprox.operators.linops import (
    Compose,
    Diagonal,
    FiniteDiff,
    Gather,
    Identity,
    LinOp,
    ScalarMultiple,
    has_fft,
)
from cvxprox.reductions.affine import (
    Affine,
    AffineLowering,
    NotStructured,
    VariableLayout,
    add,
    assemble,
    broadcast,
    elementwise,
    flat,
    gather,
    scale,
    stack,
)
from cvxprox.solvers.fista import FISTA

# quad_form(u, Q) keeps Q as a dense matrix up to this many entries of u.
_QUAD_FORM_MAX = 2000
# Variable attributes the structured form represents (as bounds).
_KEPT_ATTRIBUTES = ("nonneg", "nonpos", "bounds")
# Atoms whose presence makes the structured form worth trying under structure="auto".
STRUCTURED_ATOMS = (
    norm1,
    norm_inf,
    Pnorm,
    huber,
    abs_atom,
    maximum,
    logistic,
    entr,
    kl_div,
    convolve,
    conv2d,
    fourier_sample,
    QuadForm,
)
# Functions that make the structured form pay off on their own (see keeps_structure).
_STRUCTURED_FUNCTIONS = (GroupL2, Norm2, Huber, Logistic, TV1D)
# The label prefix of the terms that an expanded part became.
EXPANDED = "expanded"


class NotExpandable(NotStructured):
    """A part that is not expanded on its own: CVXPY's cone chain handles it better with
    the whole problem (a sparse or large quad_form), or it is not convex at the
    parameters' values (a convex atom with a negative weight)."""


class _NewVariables(Exception):
    """An expansion brought auxiliary variables the layout does not have yet."""


@dataclass
class ConstraintTerm:
    """Which term holds a constraint's dual, in the constraint's shape.

    With z = A x - b the term's argument and y in the subdifferential of its indicator,
    the Lagrangian holds y'z. An equality ``lhs == rhs`` has z = lhs - rhs, so its CVXPY
    dual (the multiplier of lhs - rhs) is y; an inequality ``lhs <= rhs`` has
    z = rhs - lhs >= 0 and y <= 0, so its CVXPY dual is -y >= 0 (``sign``). ``rows``
    lists the constraint's entries the term keeps (None: all); the others were vacuous
    (``x <= inf``) and have zero duals.
    """

    constraint_id: int
    shape: tuple[int, ...]
    term: int
    rows: np.ndarray | None = None
    dual_norm: float | None = None
    sign: float = -1.0
    #: A cone constraint (SOC, ExpCone): its dual is -y in the term's row order, the
    #: layout of CVXPY's cone form that the constraint's ``save_dual_value`` reads.
    cone: bool = False
    #: A PSD constraint on an order-k matrix (k > 0): its dual is the matrix -svec^-1(y).
    psd: int = 0
    #: A power cone constraint: its dual from -y (triples in the term's row order), in
    #: the constraint's shape (3, ...) for a PowCone3D, (n + 1, k) for a PowConeND.
    power: Callable[[np.ndarray], np.ndarray] | None = None

    def dual(self, y: np.ndarray) -> np.ndarray | float:
        """The constraint's dual_value from its term's y.

        For ``norm_p(u) <= r`` (a ball term) it is the dual norm of y: y = lambda g with g
        a subgradient of the norm, whose dual norm is 1 on the boundary.
        """
        if self.dual_norm is not None:
            return float(np.linalg.norm(y, self.dual_norm)) if y.size else 0.0
        if self.psd:
            return -svec_to_mat(y, self.psd)
        if self.power is not None:
            return self.power(-y)
        if self.cone:
            return -y
        size = int(np.prod(self.shape)) if self.shape else 1
        value = np.zeros(size)
        if self.rows is None:
            value[:] = self.sign * y
        else:
            value[self.rows] = self.sign * y
        return value.reshape(self.shape, order="F") if self.shape else float(value[0])


@dataclass
class BoundConstraint:
    """A constraint held as variable bounds: its entry ``entries[k]`` (of its column-major
    flattening) is ``a_k (x_j - beta_k) >= 0`` with j = ``cols[k]``, a lower bound when
    a_k > 0 (``lower[k]``), an upper one when a_k < 0, ``scale[k]`` = |a_k|; its other
    entries are vacuous (``x <= inf``), with zero duals.

    With lam_lo, lam_hi >= 0 the bound multipliers (``bound_multipliers``), CVXPY's dual
    of entry k is lam_j / |a_k| when the constraint holds x_j's tightest bound on its
    side (``owned[k]``), else 0.

    An equality (``equality``) bounds x_j on both sides at beta_k: ``lower[k]`` is then
    a_k > 0 still, ``owned_upper[k]`` says whether it holds the upper bound (``owned[k]``
    the lower one), and the dual of entry k is -(lam_lo_j [owned] - lam_hi_j [owned
    upper]) / a_k.
    """

    constraint_id: int
    shape: tuple[int, ...]
    entries: np.ndarray
    cols: np.ndarray
    scale: np.ndarray
    lower: np.ndarray
    owned: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    equality: bool = False
    owned_upper: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def dual(self, lam_lo: np.ndarray, lam_hi: np.ndarray) -> np.ndarray | float:
        """The constraint's dual_value from the bound multipliers (n,) each."""
        if self.equality:
            lo = np.where(self.owned, lam_lo[self.cols], 0.0)
            hi = np.where(self.owned_upper, lam_hi[self.cols], 0.0)
            a = np.where(self.lower, self.scale, -self.scale)
            entry = -(lo - hi) / a
        else:
            lam = np.where(self.lower, lam_lo[self.cols], lam_hi[self.cols])
            entry = np.where(self.owned, lam / self.scale, 0.0)
        size = int(np.prod(self.shape)) if self.shape else 1
        value = np.zeros(size)
        value[self.entries] = entry
        return value.reshape(self.shape, order="F") if self.shape else float(value[0])


def bound_multipliers(
    program: Program, r: np.ndarray, x: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(lam_lo, lam_hi), the multipliers of l <= x and x <= u from the reduced cost
    r = c + P x + sum_i A_i'y_i: max(r, 0) where x_j = l_j, max(-r, 0) where x_j = u_j,
    0 elsewhere (the methods on the terms return x in the box, exactly at an active
    bound). At a KKT point r lies in -N_[l,u](x), so these are the bounds' duals. For a
    Farkas certificate y (x None), r = sum_i A_i'y_i on every finite bound."""
    n = program.n
    l = np.full(n, -np.inf) if program.l is None else program.l
    u = np.full(n, np.inf) if program.u is None else program.u
    lo, hi = np.isfinite(l), np.isfinite(u)
    if x is not None:
        lo, hi = lo & (x == l), hi & (x == u)
    return np.where(lo, np.maximum(r, 0.0), 0.0), np.where(hi, np.maximum(-r, 0.0), 0.0)


class _Bounds:
    """The tightest bounds l <= x <= u met so far, with the constraint holding each."""

    def __init__(self, n: int) -> None:
        self.l, self.u = np.full(n, -np.inf), np.full(n, np.inf)
        self.l_at, self.u_at = np.full(n, -1), np.full(n, -1)

    def add(self, cols: np.ndarray, beta: np.ndarray, lower: np.ndarray, owner: int) -> None:
        """x[cols] >= beta where ``lower``, x[cols] <= beta elsewhere, from the constraint
        of id ``owner`` (-1: a variable attribute); cols distinct. A bound replaces a
        strictly looser one."""
        lower = np.broadcast_to(lower, cols.shape)
        for side, bound, at in ((lower, self.l, self.l_at), (~lower, self.u, self.u_at)):
            j, value = cols[side], beta[side]
            tighter = value > bound[j] if bound is self.l else value < bound[j]
            bound[j[tighter]] = value[tighter]
            at[j[tighter]] = owner

    def owned(self, bound: BoundConstraint) -> np.ndarray:
        """Whether ``bound`` holds the tightest bound of each of its entries (an
        equality's: its lower bound)."""
        lower = True if bound.equality else bound.lower
        at = np.where(lower, self.l_at[bound.cols], self.u_at[bound.cols])
        return at == bound.constraint_id

    def owned_upper(self, bound: BoundConstraint) -> np.ndarray:
        """Whether the equality ``bound`` holds the upper bound of each of its entries."""
        return self.u_at[bound.cols] == bound.constraint_id

    def program_bounds(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(l, u), None for a side without a finite entry."""
        return (
            self.l if np.any(np.isfinite(self.l)) else None,
            self.u if np.any(np.isfinite(self.u)) else None,
        )


@dataclass
class Lowered:
    """A Program and what is needed to map its solution back to CVXPY."""

    program: Program
    layout: VariableLayout
    constraints: list[ConstraintTerm] = field(default_factory=list)
    # For each term of the program, ``id()`` of each objective expression it was lowered
    # from, outermost first (empty for constraint and variable-attribute terms).
    sources: list[tuple[int, ...]] = field(default_factory=list)
    # For each term, the affine CVXPY expression E with A x - b = vec(E(x)) (Fortran
    # order), or None when the term's argument was transformed after lowering (a gather,
    # a shift, a sign) or has no expression (constraints, variable attributes).
    arguments: list[Expression | None] = field(default_factory=list)
    # What was expanded into cones (``Dcp2Cone``), one line each, for ``cvxprox.compile``.
    expanded: list[str] = field(default_factory=list)
    # The constraints held as variable bounds (the program's l, u).
    bound_constraints: list[BoundConstraint] = field(default_factory=list)

    @property
    def keeps_structure(self) -> bool:
        """Whether the structured form is worth taking over CVXPY's cones (``auto``).

        True when an operator is a convolution or Fourier sampling (a cone solver would
        assemble it as a matrix), when the objective is smooth plus at most one prox term
        on x (FISTA: two products per iteration), or when a term is a group or l2 norm
        (TV), a 1-D TV (its prox is exact: with ADMM, 1-D TV denoising in a box was
        measured 20-35 times faster than on the cone route, 1-D TV inpainting 1.3-3
        times, n = 2000 and 20000), Huber or logistic loss. Models made only of l1/hinge
        terms, least squares, entropies and linear constraints go to the cone route, where
        ADMM's polishing and acceleration were measured to converge in fewer iterations.
        """
        terms = self.program.terms
        if any(has_fft(t.op) for t in terms):
            return True
        if FISTA.applies(self.program)[0]:
            return True
        return any(isinstance(t.function, _STRUCTURED_FUNCTIONS) for t in terms)


class StructureLowering:
    """Lowers a DCP problem (already a minimization) to a Program.

    Parameters
    ----------
    problem : cvxpy Problem with a ``Minimize`` objective
    bounds : bool
        Take elementwise bounds on variables into the program's l, u (the module
        docstring); False writes them as NonnegCone terms (for the differentiation of
        ``cvxprox.torch``, whose adjoint works on the terms).
    """

    def __init__(self, problem: Problem, bounds: bool = True) -> None:
        if not isinstance(problem.objective, Minimize):
            raise NotStructured("the objective is not a minimization")
        for var in problem.variables():
            extra = [k for k, v in var.attributes.items() if v and k not in _KEPT_ATTRIBUTES]
            if extra:
                raise NotStructured(f"variable {var.name()} has attribute {extra[0]!r}")
        # Constraints are checked before any lowering: a constraint that is kept neither
        # as a term nor expanded is found without paying for the objective's operators.
        for con in problem.constraints:
            _check_constraint(con)
        self.problem = problem
        self.bounds = bounds
        # Canonical forms of the expanded parts, by id of the part (computed once: their
        # auxiliary variables stay the same on every lowering), and those variables.
        # The constraints' canonical forms are known before lowering: their variables are
        # in the layout from the start.
        self._canonical: dict[int, tuple[object, list[Constraint]]] = {}
        self._aux: list[object] = []
        self._variable_ids = {v.id for v in problem.variables()}
        for con in problem.constraints:
            if isinstance(con, PowConeND):
                self._canonical_form(con, pow_nd_to_3d)
            elif _expands(con):
                self._canonical_form(con)
        self.layout = VariableLayout([*problem.variables(), *self._aux])
        self.affine = AffineLowering(self.layout)

    def lower(self) -> Lowered:
        """The Program at the parameters' current values.

        Expansions of the objective met for the first time bring auxiliary variables: the
        layout is extended with them and the lowering starts over (once). Bounds that cross
        (at these parameter values) are lowered as NonnegCone terms.
        """
        while True:
            try:
                return self._lower_all(self.bounds)
            except _NewVariables:
                self.layout = VariableLayout([*self.problem.variables(), *self._aux])
                self.affine = AffineLowering(self.layout)
            except _CrossingBounds:
                return self._lower_all(False)

    def _lower_all(self, as_bounds: bool) -> Lowered:
        n = self.layout.n
        self._c = np.zeros(n)
        self._offset = 0.0
        self._terms: list[Term] = []
        self._path: list[int] = []
        self._sources: list[tuple[int, ...]] = []
        self._arguments: list[Expression | None] = []
        self._lowered: dict[int, tuple[Affine, Expression]] = {}
        self._expanded: list[str] = []
        self._bounds = _Bounds(n) if as_bounds else None
        self._split(self.problem.objective.expr, 1.0)
        constraints, bound_constraints = [], []
        for con in self.problem.constraints:
            ball = self._ball(con)
            if ball is not None:
                constraints.append(ConstraintTerm(con.id, con.shape, *ball))
                continue
            if isinstance(con, (SOC, ExpConstraint, PSD, PowConstraint, PowConeND)):
                constraints.append(self._cone_constraint(con))
                continue
            bound = self._bound(con)
            if bound is not None:
                bound_constraints.append(bound)
                continue
            affine, label = con, None
            if _expands(con):
                affine, label = self._expand_constraint(con)
                if affine is None:
                    continue
            term, rows = self._constraint(affine, label)
            sign = 1.0 if isinstance(con, (Equality, ZeroConstraint)) else -1.0
            constraints.append(ConstraintTerm(con.id, con.shape, term, rows, sign=sign))
        if any(a.id not in self.layout.offsets for a in self._aux):
            raise _NewVariables
        for var in self.layout.variables:
            self._attributes(var)
        l, u = (None, None) if self._bounds is None else self._bounds.program_bounds()
        try:
            check_bounds(n, l, u)
        except ValueError:
            raise _CrossingBounds from None
        for bound in bound_constraints:
            bound.owned = self._bounds.owned(bound)
            if bound.equality:
                bound.owned_upper = self._bounds.owned_upper(bound)
        program = Program(c=self._c, terms=self._terms, offset=self._offset, l=l, u=u)
        program.check_finite()
        lowered = Lowered(program, self.layout, constraints, self._sources, self._arguments)
        lowered.bound_constraints = bound_constraints
        lowered.expanded = self._expanded
        # The intermediate maps were needed to name the terms' arguments only; the
        # lowering lives as long as the problem (DPP re-lowers with it), so they go now.
        self._lowered = {}
        return lowered

    # -- objective -------------------------------------------------------------------

    def _split(self, expr: Expression, weight: float | np.ndarray) -> None:
        """Add ``weight * expr`` (convex, scalar or summed elementwise) to the objective,
        recording ``expr`` among the sources of the terms it adds."""
        self._path.append(id(expr))
        terms = len(self._terms)
        try:
            self._split_expr(expr, weight)
        except NotExpandable:
            raise
        except NotStructured as exc:
            if expr.is_affine():
                raise
            del self._terms[terms:], self._sources[terms:], self._arguments[terms:]
            self._expand_objective(expr, weight, str(exc))
        finally:
            self._path.pop()

    def _split_expr(self, expr: Expression, weight: float | np.ndarray) -> None:
        if np.all(np.asarray(weight) == 0):
            return
        if expr.is_affine():
            self._linear(self._lower(expr), weight)
            return
        if isinstance(expr, AddExpression):
            for arg in expr.args:
                self._split(arg, _broadcast_weight(weight, arg, expr))
            return
        if isinstance(expr, NegExpression):
            self._split(expr.args[0], -np.asarray(weight))
            return
        if isinstance(expr, (multiply, MulExpression, DivExpression)):
            self._product(expr, weight)
            return
        if isinstance(expr, Sum):
            if expr.axis is not None and expr.args[0].ndim > 1:
                raise NotStructured("sum along an axis of a nonlinear expression")
            self._split(expr.args[0], weight)
            return
        self._atom(expr, weight)

    def _linear(self, part: Affine, weight: float | np.ndarray) -> None:
        w = np.broadcast_to(np.asarray(weight, dtype=np.float64), (part.size,))
        self._offset += float(w @ part.const)
        if part.op is not None:
            self._c += part.op.rmatvec(np.ascontiguousarray(w))

    def _product(self, expr: Expression, weight: float | np.ndarray) -> None:
        lhs, rhs = expr.args
        if isinstance(expr, DivExpression):
            if not rhs.is_constant():
                raise NotStructured("division by a non-constant expression")
            self._split(lhs, np.asarray(weight) / flat(rhs.value, rhs.size))
            return
        const, other = (lhs, rhs) if lhs.is_constant() else (rhs, lhs)
        if not const.is_constant():
            raise NotStructured("a product of two non-constant expressions")
        value = flat(const.value, const.size)
        if isinstance(expr, MulExpression) and const.size > 1:
            # w @ f(x) with a constant row vector w: a weighted sum of f's entries.
            if not (const is lhs and const.ndim == 1 and other.ndim == 1):
                raise NotStructured("a matrix product with a nonlinear expression")
            self._split(other, np.asarray(weight) * value)
            return
        if value.size == 1:
            self._split(other, np.asarray(weight) * value[0])
        else:
            self._split(other, np.asarray(weight) * value)

    def _atom(self, expr: Expression, weight: float | np.ndarray) -> None:
        """A convex atom with a prox: add the term ``weight * f(arg)``."""
        w = np.asarray(weight, dtype=np.float64)
        if isinstance(expr, entr):
            # -w entr(u) = w u log u: entr is concave, so it enters with a negative weight.
            self._elementwise(NegEntropy, expr.args[0], -w)
            return
        handler = self._handler(expr)
        if handler is None:
            raise NotStructured(f"the atom {type(expr).__name__} has no prox term")
        if np.any(w < 0):
            raise NotExpandable(f"{type(expr).__name__} enters with a negative weight")
        handler(expr, w)

    def _handler(self, expr: Expression):  # noqa: ANN202
        """The method that adds the term of a convex atom, None if it has none."""
        if isinstance(expr, norm1):
            inner = expr.args[0]
            if isinstance(inner, Pnorm) and inner.axis is not None:
                # mixed_norm(X, 2, 1): the l1 norm of nonnegative group norms.
                return lambda e, w: self._pnorm(inner, w)
            return self._norm1
        if isinstance(expr, norm_inf):
            return lambda e, w: self._norm(NormInf, e.args[0], w)
        if isinstance(expr, Pnorm) and float(expr.p) >= 1:
            # p < 1 (harmonic_mean, pnorm(., -1)) is concave: expanded.
            return self._pnorm
        if isinstance(expr, quad_over_lin):
            return self._quad_over_lin
        if isinstance(expr, QuadForm):
            return self._quad_form
        if isinstance(expr, Power) and float(expr.p.value) == 2:
            return lambda e, w: self._elementwise(SumSquares, e.args[0], w)
        simple = {abs_atom: Norm1, logistic: Logistic}
        for atom, function in simple.items():
            if isinstance(expr, atom):
                return lambda e, w, f=function: self._elementwise(f, e.args[0], w)
        if isinstance(expr, huber):
            return lambda e, w: self._elementwise(Huber, e.args[0], w, M=float(e.M.value))
        if isinstance(expr, maximum):
            return self._maximum
        if isinstance(expr, kl_div):
            return self._kl_div
        return None

    def _quad_over_lin(self, expr: quad_over_lin, w: np.ndarray) -> None:
        denom = expr.args[1]
        if not denom.is_constant() or float(denom.value) <= 0:
            raise NotStructured("quad_over_lin with a non-constant denominator")
        self._norm(SumSquares, expr.args[0], w / float(denom.value))

    def _quad_form(self, expr: QuadForm, w: np.ndarray) -> None:
        """quad_form(u, Q) with a constant dense Q (positive semidefinite: the problem is
        DCP). A sparse Q takes CVXPY's canonicalization, which keeps it sparse."""
        arg, matrix = expr.args
        if not matrix.is_constant():
            raise NotStructured("quad_form with a non-constant matrix")
        if arg.size > _QUAD_FORM_MAX:
            raise NotExpandable(f"quad_form of more than {_QUAD_FORM_MAX} entries")
        Q = matrix.value
        if hasattr(Q, "toarray"):
            raise NotExpandable("quad_form with a sparse matrix")
        Q = np.asarray(Q, dtype=np.float64)
        part = self._lower(arg)
        weight = float(w.reshape(-1)[0])
        self._add_term(Quadratic(Q.reshape(part.size, part.size), weight), part, "quad_form")

    def _norm1(self, expr: norm1, w: np.ndarray) -> None:
        """||arg||_1; of a 1-D first difference of a variable (``tv(x)``, ``norm1(diff(x))``)
        a TV1D term on the variable itself, whose prox is exact (Condat's method): with x
        the only variable FISTA then applies to smooth + TV models, and ADMM and linearized
        ADMM split one copy of x instead of its differences."""
        if w.size == 1:
            part = self._lower(expr.args[0])
            tv = _tv1d_argument(part)
            if tv is not None:
                self._add_term(TV1D(tv.size, weight=float(w.reshape(-1)[0])), tv, "tv1d")
                return
        self._norm(Norm1, expr.args[0], w)

    def _norm(self, function: type, arg: Expression, w: np.ndarray) -> None:
        """A norm-like function of a whole expression with a scalar weight."""
        if w.size != 1:
            raise NotStructured(f"{function.__name__} with elementwise weights")
        part = self._lower(arg)
        self._add_term(
            function(part.size, weight=float(w.reshape(-1)[0])), part, function.__name__.lower()
        )

    def _elementwise(self, function: type, arg: Expression, w: np.ndarray, **kw: float) -> None:
        """sum_j w_j f(arg_j) for an elementwise atom."""
        part = self._lower(arg)
        weight = (
            np.broadcast_to(w.reshape(-1) if w.size > 1 else w.reshape(()), (part.size,))
            if w.size > 1
            else float(w.reshape(-1)[0])
        )
        if isinstance(weight, np.ndarray) and np.all(weight == weight[0]):
            weight = float(weight[0])
        self._add_term(function(part.size, weight=weight, **kw), part, function.__name__.lower())

    def _pnorm(self, expr: Pnorm, w: np.ndarray) -> None:
        if float(expr.p) != 2:
            raise NotStructured(f"pnorm with p={expr.p} (only p=2 has a prox term)")
        arg = expr.args[0]
        if expr.axis is None:
            self._norm(Norm2, arg, w)
            return
        if arg.ndim != 2:
            raise NotStructured("a norm along an axis of a non-matrix")
        # Group l2 norm: one group per column (axis=0) or per row (axis=1).
        rows, cols = arg.shape
        part = self._lower(arg)
        if expr.axis == 1:
            order = np.arange(rows * cols).reshape((rows, cols), order="F").flatten(order="C")
            part, group, count = gather(part, order), cols, rows
        else:
            group, count = rows, cols
        weight = np.broadcast_to(w.reshape(-1) if w.size > 1 else w.reshape(()), (count,))
        weight = float(weight[0]) if np.all(weight == weight[0]) else np.array(weight)
        self._add_term(GroupL2(part.size, group, weight=weight), part, "group_l2")

    def _maximum(self, expr: maximum, w: np.ndarray) -> None:
        """max(u, c) = c + max(u - c, 0) for a constant c: a Pos term."""
        args = list(expr.args)
        consts = [a for a in args if a.is_constant()]
        others = [a for a in args if not a.is_constant()]
        if len(args) != 2 or len(consts) != 1:
            raise NotStructured("maximum of other than an expression and a constant")
        size = expr.size
        if others[0].size != size:
            raise NotStructured("maximum with broadcasting")
        c = flat(consts[0].value, size)
        weight = np.broadcast_to(w.reshape(-1) if w.size > 1 else w.reshape(()), (size,))
        self._offset += float(weight @ c)
        shifted = self._lower(others[0] - consts[0])
        scalar_w = float(weight[0]) if np.all(weight == weight[0]) else np.array(weight)
        self._add_term(Pos(size, weight=scalar_w), shifted, "pos")

    def _kl_div(self, expr: kl_div, w: np.ndarray) -> None:
        u, v = expr.args
        if not v.is_constant():
            raise NotStructured("kl_div with a non-constant second argument")
        part = self._lower(u)
        c = flat(v.value, part.size)
        if np.any(c <= 0):
            raise NotStructured("kl_div(., c) with c <= 0")
        weight = np.broadcast_to(w.reshape(-1) if w.size > 1 else w.reshape(()), (part.size,))
        scalar_w = float(weight[0]) if np.all(weight == weight[0]) else np.array(weight)
        self._add_term(KLDiv(part.size, c, weight=scalar_w), part, "kl_div")

    def _lower(self, expr: Expression) -> Affine:
        """``self.affine.lower(expr)``, remembering which expression the result came from."""
        part = self.affine.lower(expr)
        self._lowered[id(part)] = (part, expr)
        return part

    def _add_term(self, function: ProxFunction, part: Affine, label: str) -> int:
        if part.op is None:
            raise NotStructured(f"{label} of a constant")
        self._terms.append(Term(function, assemble(part.op), -part.const, label))
        self._sources.append(tuple(self._path))
        origin = self._lowered.get(id(part))
        self._arguments.append(origin[1] if origin is not None and origin[0] is part else None)
        return len(self._terms) - 1

    # -- constraints -----------------------------------------------------------------

    def _ball(self, con: object) -> tuple[int, None, float] | None:
        """``norm(u) <= r`` with r constant and p in (1, 2, inf): a ball indicator term.

        Returns (term, None, dual norm exponent), or None for other constraints.
        """
        if not _is_ball(con):
            return None
        lhs, rhs = con.args
        if isinstance(lhs, norm1):
            ball, dual = L1Ball, np.inf
        elif isinstance(lhs, norm_inf):
            ball, dual = LinfBall, 1.0
        else:
            ball, dual = L2Ball, 2.0
        radius = float(np.asarray(rhs.value).reshape(-1)[0])
        if radius < 0:
            raise NotStructured(f"a norm bounded by a negative number ({con})")
        part = self._lower(lhs.args[0])
        label = f"constraint {con.id} (norm <= {radius:g})"
        return self._add_term(ball(part.size, radius), part, label), None, dual

    def _bound(self, con: object) -> BoundConstraint | None:
        """An affine inequality whose every entry is ``a x_j + d >= 0`` on distinct
        entries x_j (a scalar a != 0), or an equality whose every entry is
        ``a x_j + d == 0`` or ``0 == 0``, taken into the bounds; None for any other
        constraint, or when bounds are written as terms."""
        if self._bounds is None:
            return None
        if isinstance(con, (Equality, ZeroConstraint)):
            return self._equality_bound(con)
        if not isinstance(con, (Inequality, NonPos, NonNeg)):
            return None
        if not _inequality_expr(con).is_affine():
            return None
        part = self._lower(_inequality_expr(con))
        if not isinstance(con, NonNeg):
            part = scale(part, -1.0)
        selection = None if part.op is None else _selection(part.op)
        if selection is None:
            return None
        cols, a = selection
        lower = a > 0
        beta = -part.const / a
        entries = np.flatnonzero(np.where(lower, beta > -np.inf, beta < np.inf))
        cols, a, lower = cols[entries], a[entries], lower[entries]
        self._bounds.add(cols, beta[entries], lower, con.id)
        return BoundConstraint(con.id, con.shape, entries, cols, np.abs(a), lower)

    def _equality_bound(self, con: Equality | ZeroConstraint) -> BoundConstraint | None:
        """``a x_j + d == 0`` on distinct entries x_j as l_j = u_j = -d / a; entries with
        a = 0 must read 0 == 0 (else the constraint stays a term, whose method
        certifies the infeasibility)."""
        part = self._lower(con.expr)
        selection = None if part.op is None else _selection(part.op, allow_zero=True)
        if selection is None:
            return None
        cols, a = selection
        vacuous = a == 0
        if np.any(part.const[vacuous] != 0):
            return None
        entries = np.flatnonzero(~vacuous)
        cols, a = cols[entries], a[entries]
        beta = -part.const[entries] / a
        self._bounds.add(cols, beta, True, con.id)
        self._bounds.add(cols, beta, False, con.id)
        return BoundConstraint(con.id, con.shape, entries, cols, np.abs(a), a > 0, equality=True)

    def _constraint(self, con: object, label: str | None = None) -> tuple[int, np.ndarray | None]:
        """The term of an affine constraint: its index and the rows it keeps. ``label``
        replaces the default one (``constraint <id> (==)``, ...)."""
        if isinstance(con, (Equality, ZeroConstraint)):
            part = self._lower(con.expr)
            label = label or f"constraint {con.id} (==)"
            return self._add_term(ZeroCone(part.size), part, label), None
        # An inequality (Inequality, NonPos or NonNeg).
        part = self._lower(_inequality_expr(con))
        if not isinstance(con, NonNeg):
            part = scale(part, -1.0)
        # Entries u + inf >= 0 (a bound at infinity) hold for every x.
        rows = None
        if np.any(part.const == np.inf):
            rows = np.flatnonzero(part.const != np.inf)
            part = gather(part, rows)
        label = label or f"constraint {con.id} ({'>=' if isinstance(con, NonNeg) else '<='})"
        if part.size == 0:
            return -1, rows
        return self._add_term(NonnegCone(part.size), part, label), rows

    def _canonicalize(
        self,
        part: Expression | Constraint,
        canonicalize: Callable[[object], tuple[object, list[Constraint]]] | None = None,
    ) -> tuple[object, list[Constraint]] | None:
        """CVXPY's cone canonicalization of one part (``Dcp2Cone``, or ``canonicalize``),
        computed once per part; None while it has variables the layout lacks
        (``_lower_all`` then starts over with them, once for all the expansions it met)."""
        canon, constraints = self._canonical_form(part, canonicalize)
        if any(a.id not in self.layout.offsets for a in self._aux):
            return None
        return canon, constraints

    def _canonical_form(
        self,
        part: Expression | Constraint,
        canonicalize: Callable[[object], tuple[object, list[Constraint]]] | None = None,
    ) -> tuple[object, list[Constraint]]:
        """The canonical form of ``part`` (computed on first use), its new variables
        appended to ``self._aux``."""
        key = id(part)
        if key in self._canonical:
            return self._canonical[key]
        if canonicalize is None:
            form = Dcp2Cone(quad_obj=False).canonicalize_tree(part, False)
        else:
            form = canonicalize(part)
        self._canonical[key] = form
        for item in (form[0], *form[1]):
            for var in item.variables():
                if var.id not in self._variable_ids:
                    self._aux.append(var)
                    self._variable_ids.add(var.id)
        return form

    def _expand_objective(self, expr: Expression, weight: float | np.ndarray, why: str) -> None:
        """``weight * expr`` through its canonical form: an affine expression (the linear
        term) and cone constraints over auxiliary variables."""
        name = type(expr).__name__
        self._expanded.append(f"{name} ({why})")
        canonical = self._canonicalize(expr)
        if canonical is None:
            return
        canon, constraints = canonical
        label = f"{EXPANDED}: {name}"
        for con in constraints:
            self._auxiliary(con, label)
        self._linear(self._lower(canon), weight)

    def _expand_constraint(self, con: Constraint) -> tuple[Constraint | None, str]:
        """A nonlinear inequality: its canonical (affine) inequality, which keeps the
        constraint's multiplier, after the cone constraints of its atoms (None while the
        layout lacks their variables); the label."""
        atoms = ", ".join(_nonlinear_atoms(_inequality_expr(con)))
        self._expanded.append(f"constraint {con.id} (of {atoms})")
        label = f"{EXPANDED}: constraint {con.id}"
        canonical = self._canonicalize(con)
        if canonical is None:
            return None, label
        canon, constraints = canonical
        for aux in constraints:
            self._auxiliary(aux, label)
        return canon, label

    def _cone_constraint(self, con: Constraint) -> ConstraintTerm | None:
        """The cone term of a SOC, ExpCone, PSD, PowCone3D or PowConeND constraint (a
        PowConeND through its 3-D power cones: ``pow_nd_to_3d``), and where its dual is."""
        label = f"constraint {con.id} ({type(con).__name__})"
        if isinstance(con, PowConeND):
            canonical = self._canonicalize(con, pow_nd_to_3d)
            if canonical is None:
                return None
            pow3d = canonical[0]
            term = self._cone(pow3d, label)
            return ConstraintTerm(con.id, con.shape, term, power=partial(pow_nd_dual, con, pow3d))
        term = self._cone(con, label)
        if isinstance(con, PowConstraint):
            shape = con.shape
            return ConstraintTerm(
                con.id, shape, term, power=partial(np.reshape, shape=shape, order="F")
            )
        psd = con.args[0].shape[0] if isinstance(con, PSD) else 0
        return ConstraintTerm(con.id, con.shape, term, cone=True, psd=psd)

    def _auxiliary(self, con: Constraint, label: str) -> None:
        """A constraint of a canonical form (no dual is reported for it)."""
        if isinstance(con, PowConeND):
            canonical = self._canonicalize(con, pow_nd_to_3d)
            if canonical is not None:
                self._cone(canonical[0], label)
        elif isinstance(con, (SOC, ExpConstraint, PSD, PowConstraint)):
            self._cone(con, label)
        elif isinstance(con, (Equality, ZeroConstraint, Inequality, NonPos, NonNeg)):
            self._constraint(con, label)
        else:
            raise NotStructured(f"a canonical form with a {type(con).__name__} constraint")

    def _cone(self, con: SOC | ExpConstraint | PSD | PowConstraint, label: str) -> int:
        """A second-order, exponential, 3-D power or PSD cone constraint as one cone term,
        its rows in CVXPY's cone-form order: (t_i, X_i) per SOC, (x_i, y_i, z_i) per
        ExpCone and PowCone3D, and
        svec((X + X')/2) for ``X >> 0`` (lower triangle column by column, off-diagonal
        entries times sqrt 2: ``cvxprox.functions.cones.svec_to_mat``)."""
        if isinstance(con, PSD):
            part = self._lower(con.args[0])
            k = con.args[0].shape[0]
            cols, rows = np.triu_indices(k)
            factor = np.where(rows == cols, 0.5, 0.5 * np.sqrt(2.0))
            pair = add(gather(part, rows + k * cols), gather(part, cols + k * rows))
            return self._add_term(PSDCone([k]), elementwise(pair, factor), label)
        if isinstance(con, (ExpConstraint, PowConstraint)):
            k = con.num_cones()
            parts = [broadcast(self._lower(a), k) for a in con.args]
            order = (np.arange(3)[None, :] * k + np.arange(k)[:, None]).reshape(-1)
            if isinstance(con, ExpConstraint):
                cone: Cone = ExpCone(k)
            else:
                cone = PowCone3D(flat(con.alpha.value, k))
        else:
            t, X = con.args
            k, size = con.num_cones(), con._cone_size()
            d = size - 1
            parts = [broadcast(self._lower(t), k), self._lower(X)]
            i, j = np.arange(k)[:, None], np.arange(d)[None, :]
            # vec(X) is column-major: X (d, k) holds cone i in column i (axis 0), X (k, d)
            # in row i (axis 1).
            pos = j * k + i if (con.axis == 1 and X.ndim == 2) else i * d + j
            order = np.concatenate([np.arange(k)[:, None], k + pos], axis=1).reshape(-1)
            cone = SecondOrderCone(np.full(k, size))
        part = gather(stack(parts, self.layout.n), order)
        return self._add_term(cone, part, label)

    def _attributes(self, var: object) -> None:
        """nonneg, nonpos and bounds attributes: bounds (NonnegCone terms when bounds are
        written as terms)."""
        if self._bounds is not None:
            self._attribute_bounds(var)
            return
        select = Affine(self.layout.select(var), np.zeros(var.size))
        if var.attributes["nonneg"]:
            self._add_term(NonnegCone(var.size), select, f"{var.name()} >= 0")
        if var.attributes["nonpos"]:
            self._add_term(NonnegCone(var.size), scale(select, -1.0), f"{var.name()} <= 0")
        bounds = var.attributes["bounds"]
        if not bounds:
            return
        for bound, sign, name in ((bounds[0], 1.0, ">="), (bounds[1], -1.0, "<=")):
            if bound is None:
                continue
            value = flat(bound.value if isinstance(bound, Expression) else bound, var.size)
            finite = np.isfinite(value)
            if not np.any(finite):
                continue
            part = add(elementwise(select, np.full(var.size, sign)), Affine(None, -sign * value))
            if not np.all(finite):
                part = gather(part, np.flatnonzero(finite))
            self._add_term(NonnegCone(part.size), part, f"{var.name()} {name} bound")

    def _attribute_bounds(self, var: object) -> None:
        """nonneg, nonpos and bounds attributes as bounds on the variable's entries."""
        start = self.layout.offsets[var.id]
        cols = np.arange(start, start + var.size)
        if var.attributes["nonneg"]:
            self._bounds.add(cols, np.zeros(var.size), np.True_, -1)
        if var.attributes["nonpos"]:
            self._bounds.add(cols, np.zeros(var.size), np.False_, -1)
        bounds = var.attributes["bounds"]
        for k, bound in enumerate(bounds or ()):
            if bound is not None:
                value = flat(bound.value if isinstance(bound, Expression) else bound, var.size)
                self._bounds.add(cols, value, np.bool_(k == 0), -1)


class _CrossingBounds(Exception):
    """Some bound l_j > u_j: the lowering writes the bounds as terms instead."""


def _selection(op: LinOp, allow_zero: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """(cols, a) when op x = a * x[cols] with cols distinct and every a_k != 0 (or any a_k
    with ``allow_zero``; op a gather or the identity, scaled or under a diagonal), else
    None."""
    a = np.ones(op.shape[0])
    while True:
        if isinstance(op, ScalarMultiple):
            a, op = a * op.scale, op.op
        elif isinstance(op, Compose) and isinstance(op.outer, Diagonal):
            a, op = a * np.asarray(op.outer.d), op.inner
        else:
            break
    if isinstance(op, Identity):
        cols = np.arange(op.shape[0])
    elif isinstance(op, Gather):
        cols = np.asarray(op.index)
    else:
        return None
    if (not allow_zero and np.any(a == 0)) or np.unique(cols).size != cols.size:
        return None
    return cols, a


def _tv1d_argument(part: Affine) -> Affine | None:
    """For ``part`` = D S x + c with D a 1-D first difference and S the identity or a
    selection of x (a Gather), the Affine S x + s with D s = c (s_0 = 0, the cumulative
    sum of c after it), so that ||part||_1 = TV(S x + s); None for any other ``part``."""
    op = part.op
    inner = None
    if isinstance(op, Compose) and isinstance(op.inner, (Identity, Gather)):
        op, inner = op.outer, op.inner
    if not (isinstance(op, FiniteDiff) and len(op.array_shape) == 1 and op.k == 1):
        return None
    inner = Identity(op.shape[1]) if inner is None else inner
    if inner.shape[0] != op.shape[1]:
        return None
    shift = np.concatenate(([0.0], np.cumsum(part.const)))
    return Affine(inner, shift)


def _broadcast_weight(weight: float | np.ndarray, arg: Expression, parent: Expression):
    """The weight of one summand of a sum: scalars pass, vectors must match its size."""
    w = np.asarray(weight)
    if w.ndim == 0 or arg.size == parent.size:
        return weight
    if arg.size == 1:
        return float(w.sum())
    raise NotStructured("a sum with broadcasting inside a weighted term")


def _inequality_expr(con: Inequality | NonPos | NonNeg) -> Expression:
    """The expression an inequality constrains: ``lhs - rhs <= 0``, ``u <= 0`` or ``u >= 0``."""
    return con.args[0] if isinstance(con, NonNeg) else con.expr


def _is_ball(con: object) -> bool:
    """Whether ``con`` has the form ``norm(u) <= r``, u affine, that ``_ball`` makes a ball
    term."""
    if not isinstance(con, Inequality):
        return False
    lhs, rhs = con.args
    if not rhs.is_constant() or rhs.size != 1 or lhs.size != 1:
        return False
    if isinstance(lhs, Pnorm):
        return lhs.axis is None and float(lhs.p) == 2 and lhs.args[0].is_affine()
    return isinstance(lhs, (norm1, norm_inf)) and lhs.args[0].is_affine()


def _expands(con: object) -> bool:
    """Whether ``con`` is a nonlinear inequality (not a ball) that is expanded."""
    if isinstance(con, (Equality, ZeroConstraint, SOC, ExpConstraint, PSD, PowConstraint)):
        return False
    if isinstance(con, PowConeND) or _is_ball(con):
        return False
    return not _inequality_expr(con).is_affine()


def _check_constraint(con: object) -> None:
    """Raise NotStructured unless ``con`` is a ball, an affine equality, an inequality
    (affine, or convex and then expanded), a SOC, ExpCone, power cone or PSD constraint."""
    kept = (SOC, ExpConstraint, PSD, PowConstraint, PowConeND, Inequality, NonPos, NonNeg)
    if _is_ball(con) or isinstance(con, kept):
        return
    if isinstance(con, (Equality, ZeroConstraint)):
        if not con.expr.is_affine():
            raise NotStructured("an equality constraint that is not affine")
    else:
        raise NotStructured(f"a {type(con).__name__} constraint")


def _nonlinear_atoms(expr: Expression) -> list[str]:
    """Names of the innermost non-affine atoms of ``expr`` (printing the constraint
    itself would format every constant in it)."""
    names: set[str] = set()
    stack = [expr]
    while stack:
        e = stack.pop()
        inner = [a for a in e.args if not a.is_affine()]
        if inner:
            stack.extend(inner)
        elif not e.is_affine():
            names.add(type(e).__name__)
    return sorted(names)
