"""Accelerated proximal gradient (FISTA) for smooth-plus-one-prox Programs.

The program (``cvxprox.ir.program.Program``, x in R^n)

    minimize  h(x) + G(x),   h(x) = c'x + sum_{i in S} f_i(A_i x - b_i),   G(x) = g(P x - b_g),

where every f_i (i in S) is smooth (SumSquares, Huber, Logistic) and at most one term g is
not, with an operator P that is the identity or a permutation of x; or, for a program with
variable bounds l <= x <= u, every term is smooth and G is the indicator of the box, whose
prox is the projection (the bound multipliers are read from the reduced cost,
``StructuredChecker``; with a nonsmooth g the prox of g + box, clip(prox_g) for a
separable g, does not tell g's subgradient at a clipped entry, so FISTA does not apply).
Then

    grad h(x) = c + sum_i A_i' grad f_i(A_i x - b_i),    L_h <= sum_i L_i ||A_i||^2,

and, P being orthogonal, prox_{t G}(v) = P'(prox_{t g}(P v - b_g) + b_g).

Iteration (FISTA with full backtracking, Scheinberg, Goldfarb & Bai 2014): from x_k,
x_{k-1}, t_k and the accepted constant L_k, try L = d L_k (d = ``_DECREASE`` < 1: the
constant may decrease after every step) and

    theta   = L / L_k,    t_{k+1} = (1 + sqrt(1 + 4 theta t_k^2)) / 2
    y       = x_k + (t_k - 1) / t_{k+1} (x_k - x_{k-1})
    x_{k+1} = prox_{G/L}(y - grad h(y) / L),

multiplying L by ``_BACKTRACK`` until the descent test

    F(x_{k+1}) - F(y) - grad F(y)'(x_{k+1} - y) <= L/2 ||x_{k+1} - y||^2,   F = h - c'x,

holds (the left side is a Bregman distance of the smooth terms, computed from the
products A_i x; near the solution, where it is lost in round-off, the test compares
gradients instead, see ``_descent``). The first L is sum_i L_i ||A_i||^2 (from the
functions' ``lipschitz()`` and a few power iterations per operator: a lower estimate
that backtracking corrects, far cheaper than a bound on a large dense matrix); a test
that never passes (NaN data) stops backtracking after ``_MAX_BACKTRACKS`` doublings.
Adaptive restart (O'Donoghue & Candes 2015, gradient scheme): when the gradient mapping
y - x_{k+1} makes a positive inner product with x_{k+1} - x_k, the momentum is reset
(t_{k+1} = 1).

Optimality at x = x_{k+1}: each smooth term has z_i = A_i x - b_i and y_i = grad f_i(z_i);
the prox term has z_g = prox_{g/L}(w), w = P v - b_g with v = y - grad h(y) / L, and
y_g = L (w - z_g), in dg(z_g), so P'y_g = L (v - x_{k+1}). The primal residual is zero
and the dual residual c + sum_i A_i'y_i = grad h(x_{k+1}) - grad h(y) + L (y - x_{k+1})
is the gradient-mapping optimality measure; both are tested by ``StructuredChecker``.

The iterations run on the arrays of the backend the options select (``cvxprox.backend``),
with the terms' device versions (``ProxFunction.on``, ``LinOp.on``) and the termination
test on the device; the scalars of the step rule (inner products, function values) are
read back one at a time, and x, z, y are copied to the host once, at the end.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import cvxpy.settings as s
import numpy as np

from cvxprox.backend import Backend
from cvxprox.backend.jit.dual_tv import tv_grid
from cvxprox.functions.prox import SumSquares
from cvxprox.ir.program import Program, Term
from cvxprox.operators.linops import Gather, Identity
from cvxprox.solvers.admm.xupdate import norm_estimate
from cvxprox.solvers.common.algorithm import Algorithm
from cvxprox.solvers.common.log import IterationLog
from cvxprox.solvers.common.result import BestIterate, SolveResult, finish, result_to_host
from cvxprox.solvers.common.term_checks import StructuredChecker
from cvxprox.solvers.common.terms import StackedTerms, TermLayout
from cvxprox.solvers.dual_fista import DualFISTA, ProxTerms

# The trial constant after an accepted step is _DECREASE L; a failed test multiplies it
# by _BACKTRACK.
_DECREASE = 0.9
_BACKTRACK = 2.0
_MAX_BACKTRACKS = 100
# The descent test compares function values while L/2 ||dx||^2 exceeds _RELIABLE times
# their round-off error, and gradients below (see _descent).
_RELIABLE = 100.0
_EPS = float(np.finfo(np.float64).eps)
# The constant is kept above _L_FLOOR times its first value.
_L_FLOOR = 1e-12
# TVProxTerm's inner iterations (its docstring): checked every _INNER_CHECK, at most
# _INNER_MAX per prox; accuracy max(_INNER_TIGHTEST, _INNER_SHARE R), _INNER_START before
# the first outer check. ||D||^2 <= 8 for 2-D forward differences.
_INNER_CHECK = 5
_INNER_MAX = 5000
_INNER_TIGHTEST = 0.3
_INNER_SHARE = 0.03
_INNER_START = 1000.0
_TV_NORM_SQUARED = 8.0


@dataclass
class _Quadratic:
    """F(x) = 1/2 x'Hx + q'x (H (n,) diagonal), as ``DualIterations`` reads it; q and H
    on the host or the backend's device."""

    q: Any
    H: Any


class TermGroup(StackedTerms):
    """Some of a program's terms, stacked (``StackedTerms``), with their values and
    gradients.

    Parameters
    ----------
    terms : list of (int, Term)
        The terms with their positions in the program.
    n : int
        Number of variables.
    """

    def __init__(
        self, terms: list[tuple[int, Term]], n: int, backend: Backend | None = None
    ) -> None:
        super().__init__([t for _, t in terms], n, backend)
        self.positions = [k for k, _ in terms]

    def value(self, z: np.ndarray) -> float:
        """sum_i f_i(z_i)."""
        return float(sum(t.function(z[r]) for t, r in zip(self.terms, self.slices, strict=True)))

    def gradient(self, z: Any) -> Any:
        """The stacked gradients grad f_i(z_i) (smooth terms only), shape (m,)."""
        return self.concat(
            [t.function.grad(z[r]) for t, r in zip(self.terms, self.slices, strict=True)]
        )

    def lipschitz(self) -> float:
        """sum_i L_i ||A_i||^2, an estimate of the Lipschitz constant of the gradient of
        x -> sum_i f_i(A_i x - b_i) (``norm_estimate``: exact for structured operators)."""
        return float(sum(t.function.lipschitz() * norm_estimate(t.op) ** 2 for t in self.terms))


class PermutedTerm:
    """A term g(P x - b) whose operator P is the identity or a permutation of x.

    Its prox in x is prox_{t g(P . - b)}(v) = P'(prox_{t g}(P v - b) + b), because P is
    orthogonal.

    Parameters
    ----------
    term : Term
        A term for which ``accepts`` holds.
    position : int
        Its position in the program.
    """

    def __init__(self, term: Term, position: int) -> None:
        self.term = term
        self.position = position

    @staticmethod
    def accepts(term: Term, n: int) -> bool:
        """Whether the operator is ``Identity(n)`` or a ``Gather`` of a permutation of range(n)."""
        op = term.op
        if op.shape != (n, n):
            return False
        if isinstance(op, Identity):
            return True
        if isinstance(op, Gather):
            index = np.asarray(op.index)
            return bool(np.array_equal(np.sort(index), np.arange(n)))
        return False

    def follow(self, normalized: float) -> None:
        """The prox is exact: nothing follows the outer error."""

    def prox(self, v: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x+, z, y): x+ = prox_{t g(P . - b)}(v), z = P x+ - b = prox_{t g}(w) with
        w = P v - b, and y = (w - z) / t, which lies in dg(z)."""
        term = self.term
        w = term.op.matvec(v) - term.b
        z = term.function.prox(w, t)
        return term.op.rmatvec(z + term.b), z, (w - z) / t


class TVProxTerm:
    """A term g(D x) with g = w ||.||_{2,1} over pairs and D CVXPY's isotropic 2-D total
    variation operator on x (``cp.tv``; ``cvxprox.backend.jit.dual_tv.tv_grid``).

    Its prox in x, x+ = argmin_x 1/(2t) ||x - v||^2 + g(D x), is solved by FISTA on the
    dual (``DualFISTA.iterations``: F(x) = 1/(2t) ||x - v||^2, so H = 1/t, q = -v/t, and
    x+ = v - t D'y), warm-started from the dual of the previous call (the dual does not
    depend on t), fused at every image size (the inner iterations of a solve outnumber
    those of a whole ``FUSED_FROM`` image); v, q = -v / t and H stay on the device. It returns
    (x+, z, y) with y in dg(z) exactly (the inner method's candidate,
    ``DualIterations.probe``) and x+ = v - t D'y, so
    that D'y = (v - x+) / t, as for ``PermutedTerm``; the inexactness is D x+ - z, which
    the outer test sees as this term's primal residual.

    The inner iterations stop, checked every ``_INNER_CHECK`` of them, when every row
    passes the outer per-row test of that residual, |(D x+ - z)_i| <= eps_abs u_i +
    eps_rel max(|(D x+)_i|, |z_i|) (u the termination units), tightened by the factor
    ``accuracy``: max(``_INNER_TIGHTEST``, ``_INNER_SHARE`` R) with R the outer normalized
    KKT error at its last check (``follow``), so that early outer steps take rough proxes
    and the last ones proxes three times tighter than the test; at most ``_INNER_MAX``
    inner iterations per call. Measured on the structured suite's tv_deblurring at default
    options (outer / inner iterations, time), 64, 128 and 192 pixels a side: (0.3, 0.03,
    start 1000) 180 / 5025 0.56 s, 160 / 4510 1.56 s, 200 / 6890 4.81 s; (0.1, 0.01, 100)
    170 / 9480 1.01 s, 160 / 8180 2.71 s, 160 / 8840 5.85 s; (0.3, 0.03, 100), (0.5,
    0.05, 100), (0.3, 0.1, 100), (0.05, 0.01, 100) and (0.1, 0.001, 10) in between or
    worse at 128. The inner iterations take this module's step rule (``_DECREASE``):
    tv_deblurring's inner iterations with it 4945, 3830, 7200, with dual FISTA's 0.97
    5025, 4240, 9650 (short warm-started runs, in which the constant has to come down
    fast).

    Parameters
    ----------
    program : Program
        The program (on the host).
    term : Term
        The term on the backend (``TermLayout``), for which ``accepts`` holds.
    position : int
        Its position in the program.
    units : ndarray (m_g,)
        The termination units of the term's rows (on the host).
    options : SolverOptions
    backend : Backend
    """

    def __init__(
        self,
        program: Program,
        term: Term,
        position: int,
        units: Any,
        options: Any,
        backend: Backend,
    ) -> None:
        self.program, self.term, self.position = program, term, position
        self.units, self.backend = backend.asarray(units), backend
        self.eps_abs, self.eps_rel = options.eps_abs, options.eps_rel
        self.K = ProxTerms([term], term.op.shape[1], backend)
        self.grid = tv_grid([program.terms[position]], program.n)
        self.y = backend.zeros(term.op.shape[0])
        self.accuracy = _INNER_START
        self.inner_iterations = 0

    @staticmethod
    def accepts(term: Term, n: int) -> bool:
        """Whether the term is one ``GroupL2(2)`` on ``cp.tv``'s operator of an image of
        n pixels, with b = 0."""
        grid = tv_grid([term], n)
        return grid is not None and grid.iso

    def follow(self, normalized: float) -> None:
        """Set the inner accuracy from the outer normalized KKT error R (class docstring)."""
        if math.isfinite(normalized):
            self.accuracy = max(_INNER_TIGHTEST, _INNER_SHARE * normalized)

    def prox(self, v: Any, t: float) -> tuple[Any, Any, Any]:
        """(x+, z, y) for prox_{t g(D .)}(v) (class docstring)."""
        backend, xp = self.backend, self.backend.xp
        H = backend.zeros(self.program.n) + 1.0 / t
        q = -v / t
        L = _TV_NORM_SQUARED * t
        steps = DualFISTA.iterations(
            self.program, backend, self.K, _Quadratic(q, H), [self.position], None, self.y,
            L, _L_FLOOR * L, fuse=True, grid=self.grid, decrease=_DECREASE,
        )  # fmt: skip
        done = 0
        while True:
            steps.run(_INNER_CHECK)
            done += _INNER_CHECK
            y, z, Kty = steps.probe()
            x = v - t * Kty
            Dx = self.term.op.matvec(x)
            scale = xp.maximum(xp.abs(Dx), xp.abs(z))
            tolerance = self.accuracy * (self.eps_abs * self.units + self.eps_rel * scale)
            passed = backend.scalar(xp.max(xp.abs(Dx - z) - tolerance)) <= 0.0
            if passed or done >= _INNER_MAX:
                break
        self.inner_iterations += done
        self.y = backend.to_device(y)
        return x, z, self.y


class LinearImages:
    """The smooth part F(x) = sum_i f_i(A_i x - b_i) followed through the image A x of
    the iterates (linear in x, so the extrapolation needs no product): the gradient at y
    from A y (one product with A'), the image of x+ (one with A), the descent test of
    ``_descent``; the checks read A x as it is."""

    name = "A x"

    def __init__(self, smooth: TermGroup) -> None:
        self.smooth = smooth

    def image(self, x: Any) -> Any:
        return self.smooth.matvec(x)

    def gradient(self, image: Any) -> tuple[Any, Any]:
        """(grad F(y), what ``descent`` needs) from the image of y."""
        smooth = self.smooth
        f_y, g_y = smooth.value(image - smooth.b), smooth.gradient(image - smooth.b)
        return smooth.rmatvec(g_y), (f_y, g_y)

    def descent(self, L: float, dx: Any, image_new: Any, image_y: Any, context: Any) -> bool:
        """Whether x+ = y + dx passes the descent test at the constant L."""
        return _descent(self.smooth, L, (dx, image_new - image_y), (image_new, *context))

    def products(self, x: Any, image: Any) -> Any:
        """A x of the iterate x with image ``image``."""
        return image


class GramImages(LinearImages):
    """One smooth term w ||A x - b||^2 (``SumSquares`` of one weight) whose A'A has a
    product about as cheap as A's (``LinOp.fast_gram``: ``Convolve1D``), followed
    through G x = A'A x: grad F(y) = c + 2 w (G y - A'b) needs no product, the image of
    x+ one (one FFT pair instead of two), and the descent test is exact without any
    value, F(x+) - F(y) - grad F(y)'dx = w dx'G dx = w dx'(G x+ - G y) <= L/2 ||dx||^2.
    The checks take one product for A x."""

    name = "A'A x"

    def __init__(self, smooth: TermGroup) -> None:
        super().__init__(smooth)
        (term,) = smooth.terms
        self.op, self.weight = term.op, float(term.function.weight)
        self.Atb = term.op.rmatvec(smooth.b)

    @staticmethod
    def applies(smooth: TermGroup) -> bool:
        """Whether the smooth part is one such term (class docstring)."""
        if len(smooth.terms) != 1:
            return False
        (term,) = smooth.terms
        function = term.function
        return (
            isinstance(function, SumSquares)
            and np.ndim(function.weight) == 0
            and getattr(term.op, "fast_gram", False)
        )

    def image(self, x: Any) -> Any:
        return self.op.gram_matvec(x)

    def gradient(self, image: Any) -> tuple[Any, Any]:
        return (2.0 * self.weight) * (image - self.Atb), None

    def descent(self, L: float, dx: Any, image_new: Any, image_y: Any, context: Any) -> bool:
        scalar = self.smooth.backend.scalar
        return self.weight * scalar(dx @ (image_new - image_y)) <= 0.5 * L * scalar(dx @ dx)

    def products(self, x: Any, image: Any) -> Any:
        return self.smooth.matvec(x)


class FISTA(Algorithm):
    """FISTA with backtracking and adaptive restart (module docstring).

    Parameters
    ----------
    program : Program
        A program for which ``FISTA.applies`` holds.
    options : SolverOptions
    warm_start : dict, optional
        ``x`` (n,) of an earlier solve and, optionally, its final ``lipschitz`` constant.
    """

    name = "fista"

    @staticmethod
    def applies(program: Program) -> tuple[bool, str]:
        """Whether FISTA can solve the program, and why (or why not)."""
        if not program.terms:
            return False, "the program has no terms (its objective is linear)"
        nonsmooth = [t for t in program.terms if not t.function.smooth]
        if len(nonsmooth) > 1:
            names = ", ".join(f"{t.function.describe()} ({t.label})" for t in nonsmooth)
            return False, f"{len(nonsmooth)} nonsmooth terms, FISTA takes at most one: {names}"
        if not nonsmooth:
            if program.has_bounds:
                return True, "every term is smooth; the bounds by projection"
            return True, "every term is smooth"
        term = nonsmooth[0]
        if program.has_bounds:
            return False, (
                f"with variable bounds the prox of {term.function.describe()} ({term.label}) "
                "plus the box does not give that term's dual"
            )
        kind = "constraint" if term.function.is_indicator else "nonsmooth term"
        if TVProxTerm.accepts(term, program.n):
            return True, (
                f"smooth terms plus one nonsmooth term, {term.function.describe()} of a 2-D "
                "TV, whose prox is FISTA on its dual, warm-started"
            )
        if not PermutedTerm.accepts(term, program.n):
            return False, (
                f"the {kind} {term.function.describe()} ({term.label}) acts through "
                f"{term.op.describe()}, not the identity, a permutation of x or a 2-D TV"
            )
        return True, f"smooth terms plus the prox of one {kind} ({term.function.describe()})"

    @staticmethod
    def inner_prox(program: Program) -> bool:
        """Whether the program's nonsmooth term takes ``TVProxTerm``'s inner solver."""
        return any(
            not t.function.smooth and TVProxTerm.accepts(t, program.n) for t in program.terms
        )

    def _solve(self, backend: Backend, t0: float, reason: str) -> SolveResult:
        prog, opts = self.program, self.opts
        ok, why = self.applies(prog)
        if not ok:
            raise ValueError(f"FISTA does not apply: {why}")
        layout = TermLayout(prog, backend)
        checker = StructuredChecker(layout, opts)
        smooth_at = [k for k, t in enumerate(prog.terms) if t.function.smooth]
        smooth = TermGroup([(k, layout.terms[k]) for k in smooth_at], prog.n, backend)
        prox = next(
            (
                TVProxTerm(
                    prog, layout.terms[k], k, checker.units.primal[layout.slices[k]], opts, backend
                )
                if TVProxTerm.accepts(t, prog.n)
                else PermutedTerm(layout.terms[k], k)
                for k, t in enumerate(prog.terms)
                if not t.function.smooth
            ),
            None,
        )
        L0 = TermGroup([(k, prog.terms[k]) for k in smooth_at], prog.n).lipschitz()
        L_min = _L_FLOOR * (L0 if L0 > 0 else 1.0)
        L = L0 if L0 > 0 else 1.0
        c = backend.asarray(prog.c)
        x = backend.zeros(prog.n)
        warm = self.warm_start or {}
        if np.shape(warm.get("x")) == (prog.n,):
            x = backend.asarray(np.asarray(warm["x"], dtype=np.float64))
            L = max(float(warm.get("lipschitz", L)), L_min)
        box = None
        if prog.has_bounds:
            xp = backend.xp
            lo, hi = (
                backend.asarray(np.full(prog.n, fill) if bound is None else bound)
                for bound, fill in ((prog.l, -np.inf), (prog.u, np.inf))
            )

            def box(v: Any) -> Any:
                return xp.minimum(xp.maximum(v, lo), hi)

            x = box(x)
        images = GramImages(smooth) if GramImages.applies(smooth) else LinearImages(smooth)
        Ix = images.image(x)
        x_prev, Ix_prev = x, Ix
        t = 1.0
        setup_time = time.perf_counter() - t0

        log = IterationLog(opts.verbose)
        log.header(
            prog,
            "FISTA",
            reason,
            [
                f"smooth terms: {len(smooth.terms)} (followed through {images.name}), "
                "prox term: " + (prox.term.function.describe() if prox else "none"),
                f"L <= sum L_i ||A_i||^2 = {L0:.3e}, first step 1/L = {1.0 / L:.3e}; "
                f"backtracking x{_BACKTRACK:g}, decrease x{_DECREASE:g} per step",
                "adaptive restart (gradient scheme, O'Donoghue-Candes)",
                f"eps_abs={opts.eps_abs:.1e} eps_rel={opts.eps_rel:.1e} "
                f"max_iters={opts.max_iters} time_limit={opts.time_limit}",
            ],
        )

        best = BestIterate()
        status = None
        err = point = None
        z_g = y_g = None
        restarts = backtracks = logged = it = 0
        for it in range(1, opts.max_iters + 1):
            L_try = max(_DECREASE * L, L_min)
            for trial in range(_MAX_BACKTRACKS):
                if trial:
                    L_try *= _BACKTRACK
                    backtracks += 1
                t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * (L_try / L) * t * t))
                beta = (t - 1.0) / t_next
                y = x + beta * (x - x_prev)
                Iy = Ix + beta * (Ix - Ix_prev)
                grad, context = images.gradient(Iy)
                v = y - (c + grad) / L_try
                if box is not None:
                    x_new = box(v)
                elif prox is None:
                    x_new = v
                else:
                    x_new, z_g, y_g = prox.prox(v, 1.0 / L_try)
                Ix_new = images.image(x_new)
                if images.descent(L_try, x_new - y, Ix_new, Iy, context):
                    break
            if backend.scalar((y - x_new) @ (x_new - x)) > 0.0:
                t_next = 1.0
                restarts += 1
            x_prev, Ix_prev, x, Ix = x, Ix, x_new, Ix_new
            t, L = t_next, L_try

            if it % opts.check_every == 0 or it == opts.max_iters:
                Ax = images.products(x, Ix)
                point, Ax_full, Aty = self._point(layout, smooth, prox, x, Ax, z_g, y_g)
                err = checker.evaluate(*point, Ax=Ax_full, Aty=Aty)
                best.offer(err, *point)
                if err.converged:
                    status = s.OPTIMAL
                    break
                if prox is not None:
                    prox.follow(err.normalized)
                if it % (opts.check_every * 10) == 0:
                    log.row(it, err, 1.0 / L)
                    logged = it
                if time.perf_counter() - t0 > opts.time_limit:
                    break

        if err is not None and logged != it:
            log.row(it, err, 1.0 / L)
        solve_time = time.perf_counter() - t0
        info = {"restarts": restarts, "backtracks": backtracks, "step": 1.0 / L, "lipschitz": L}
        if isinstance(prox, TVProxTerm):
            info["inner_iterations"] = prox.inner_iterations
        point, _ = result_to_host(backend, status, point, best, None)
        return finish(
            status,
            None,
            (point, err) if status is not None else None,
            best,
            opts,
            (self.name, it, solve_time, setup_time),
            info,
            log,
            {"lipschitz": L},
        )

    @staticmethod
    def _point(
        layout: TermLayout,
        smooth: TermGroup,
        prox: PermutedTerm | TVProxTerm | None,
        x: Any,
        Ax: Any,
        z_g: Any | None,
        y_g: Any | None,
    ) -> tuple[tuple[Any, Any, Any], Any, Any]:
        """((x, z, y), A x, A'y) stacked in term order (module docstring), on the layout's
        backend."""
        backend = layout.backend
        z, y, Ax_full = backend.zeros(layout.m), backend.zeros(layout.m), backend.zeros(layout.m)
        z_s = Ax - smooth.b
        y_s = smooth.gradient(z_s)
        Aty = smooth.rmatvec(y_s)
        for k, rows in zip(smooth.positions, smooth.slices, strict=True):
            z[layout.slices[k]], y[layout.slices[k]] = z_s[rows], y_s[rows]
            Ax_full[layout.slices[k]] = Ax[rows]
        if prox is not None:
            rows = layout.slices[prox.position]
            z[rows], y[rows] = z_g, y_g
            Ax_full[rows] = prox.term.op.matvec(x)
            Aty += prox.term.op.rmatvec(y_g)
        return (x, z, y), Ax_full, Aty


def _descent(
    smooth: TermGroup,
    L: float,
    move: tuple[np.ndarray, np.ndarray],
    at_y: tuple[np.ndarray, float, np.ndarray],
) -> bool:
    """Whether the step passes the descent test with constant L.

    ``move`` = (dx, A dx) = (x+ - y, A x+ - A y) and ``at_y`` = (A x+, F(y), grad f(A y - b))
    for the smooth terms F(x) = sum_i f_i(A_i x - b_i). The test is

        F(x+) - F(y) - grad F(y)'dx <= L/2 ||dx||^2,

    with grad F(y)'dx = grad f(A y - b)'(A dx). Near the solution the left side is the
    difference of nearly equal values; once L/2 ||dx||^2 falls below ``_RELIABLE`` times
    its round-off error the test becomes (grad F(x+) - grad F(y))'dx <= L/2 ||dx||^2, which
    implies the first for convex F (as in TFOCS's backtracking, Becker, Candes & Grant 2011).
    """
    dx, Adx = move
    Ax_new, f_y, g_y = at_y
    scalar = smooth.backend.scalar
    bound = 0.5 * L * scalar(dx @ dx)
    linear = scalar(g_y @ Adx)
    f_new = smooth.value(Ax_new - smooth.b)
    if bound > _RELIABLE * _EPS * (abs(f_new) + abs(f_y) + abs(linear)):
        return f_new - f_y - linear <= bound
    g_new = smooth.gradient(Ax_new - smooth.b)
    return scalar((g_new - g_y) @ Adx) <= bound
