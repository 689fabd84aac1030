"""CvxproxLayer's structured route: differentiating the structure-preserving lowering.

A model such as ``sum_squares(A x - b) + lam * norm1(x)`` lowers (``reductions/structure``)
to two prox terms on operators, ``SumSquares(A x - b)`` and ``lam Norm1(x)``, instead of a
cone program with an epigraph variable per entry. This route solves a batch of such
programs as one block-diagonal ``Program`` (``cvxprox.ir.batch``) with the
structured algorithms (FISTA for smooth + one prox), and differentiates the solution with
``cvxprox.diff`` (its reduced saddle-point solve, one per element).

The chain rule from the programs' data to the parameters is

    dL/dtheta = -d/dtheta [ <u_x, c> + sum_i ( <y_i, A_i u_x> + <u_v,i, A_i x - b_i>
                                               - <q_i, w_i> ) ],

with (u_x, u_v, q) from the adjoint solve and (x, y) the solution. The data are affine in
the parameters (DPP), so each parameter takes one of two exact ways:

- *argument*: a parameter that changes the program only through the affine arguments E_i
  of its terms and constraints (``A``, ``b`` in ``A @ x - b``). With A_i x - b_i = E_i(x),
  the bracket's part is <u_v,i, E_i(x)> + <y_i, E_i(u_x) - E_i(0)>, which
  ``cvxprox.torch.expression`` evaluates in torch and autograd differentiates. Whether a
  parameter qualifies is checked numerically when the route is set up: moved in a random
  direction, the lowering's terms must change exactly as the torch evaluations say.
- *probe*: a small parameter (at most ``PROBE_LIMIT`` entries, e.g. a weight ``lam``) that
  may appear anywhere: the lowering at theta + e_k minus the lowering at theta is the
  derivative of all data in the direction e_k.

Problems where neither applies (a large parameter outside the terms' arguments), or whose
terms have no prox Jacobian here (``DIFFERENTIABLE_FUNCTIONS``), take the cone route.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np
import torch
from cvxpy.constraints import Equality, Inequality, NonNeg, NonPos
from cvxpy.constraints import Zero as ZeroConstraint
from cvxpy.constraints.constraint import Constraint
from cvxpy.expressions.expression import Expression
from cvxpy.problems.objective import Minimize

from cvxprox.cvxpy_compat import assign_parameter_value
from cvxprox.diff import DIFFERENTIABLE_FUNCTIONS, ImplicitAdjoint
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.batch import StackedStructuredProgram, signature, weight_entries
from cvxprox.ir.program import Program
from cvxprox.reductions.affine import NotStructured
from cvxprox.reductions.structure import Lowered, StructureLowering
from cvxprox.solvers.select import single_threaded_blas, solve_program
from cvxprox.torch.expression import evaluate

#: Parameters with at most this many entries may enter anywhere (probed, one lowering each).
PROBE_LIMIT = 64
# Parameter attributes the structured route takes (the others reduce the parameter's
# dimension, which the cone route handles).
_PLAIN_ATTRIBUTES = ("nonneg", "nonpos", "pos", "neg", "bounds")


class RouteUnavailable(Exception):
    """The structured route does not apply to this problem or batch (the reason)."""


@dataclass
class _Argument:
    """A term's argument z = sign * vec(E)[rows] (vec in Fortran order)."""

    term: int
    expr: Expression
    sign: float
    rows: np.ndarray | None

    def adjoint(self, a: np.ndarray) -> torch.Tensor:
        """A vector on z (m,) as the tensor of E's shape with <a, z> = <it, E>."""
        out = np.zeros(self.expr.size)
        out[slice(None) if self.rows is None else self.rows] = self.sign * a
        return torch.as_tensor(out.reshape(self.expr.shape, order="F"))


@dataclass
class _Probe:
    """d(data)/d(theta_k) for one parameter entry: the lowerings at theta0 and theta0 + e_k."""

    param: int
    index: int
    base: Program
    moved: Program


class StructuredRoute:
    """Forward and backward of ``CvxproxLayer`` through the structured lowering.

    Parameters
    ----------
    problem : cvxpy.Problem
    parameters : list of cvxpy.Parameter
    first : list of ndarray
        Values of the parameters (one batch element) at which the lowering is inspected.
    always : bool
        Take the route whenever it applies (``structure="always"``); otherwise only when
        the lowering keeps structure worth keeping (``Lowered.keeps_structure``).

    Raises
    ------
    RouteUnavailable
        With the reason, when the cone route has to be taken.
    """

    def __init__(
        self,
        problem: cp.Problem,
        parameters: list[cp.Parameter],
        first: list[np.ndarray],
        always: bool,
    ) -> None:
        if not isinstance(problem.objective, Minimize):
            raise RouteUnavailable("a maximization")
        for param in parameters:
            extra = [k for k, v in param.attributes.items() if v and k not in _PLAIN_ATTRIBUTES]
            if extra:
                raise RouteUnavailable(f"parameter {param.name()} is {extra[0]}")
        self.problem = problem
        self.parameters = list(parameters)
        with _restoring(self.parameters):
            self._inspect(first, always)
        self._warm: dict[int, dict] = {}

    # -- setup -----------------------------------------------------------------------

    def _inspect(self, first: list[np.ndarray], always: bool) -> None:
        """Lower at ``first``, check every term, and set up each parameter's route."""
        try:
            self.lowering = StructureLowering(self.problem, bounds=False)
            lowered = self._lower(first)
        except NotStructured as exc:
            raise RouteUnavailable(str(exc)) from None
        for term in lowered.program.terms:
            if not isinstance(term.function, DIFFERENTIABLE_FUNCTIONS):
                raise RouteUnavailable(
                    f"no prox Jacobian for the term {term.function.describe()} ({term.label})"
                )
        if not always and not lowered.keeps_structure:
            raise RouteUnavailable("the lowering keeps no structure worth differentiating")
        self.layout = lowered.layout
        self.offsets = np.cumsum([0] + [p.size for p in self.parameters])
        self.signature = signature(lowered.program)
        arguments = self._arguments(lowered)
        routes = self._parameter_routes(arguments, first, lowered)
        self.argument_ids = {pid for pid, r in routes.items() if r == "argument"}
        self.arguments = self._arguments_with(arguments, self.argument_ids)
        self.probes = self._probes(first, lowered, routes)

    def _lower(self, values: list[np.ndarray]) -> Lowered:
        """The lowering at ``values``, which the layer has already checked (finite, the
        parameters' shapes and attributes): they are assigned without CVXPY's validation,
        a tenth of a millisecond per parameter and batch element."""
        for param, value in zip(self.parameters, values, strict=True):
            assign_parameter_value(param, np.asarray(value, dtype=np.float64))
        return self.lowering.lower()

    def _arguments(self, lowered: Lowered) -> dict[int, tuple[Expression, float, Any]]:
        """term -> (E, sign, rows) with the term's argument z = sign * vec(E)[rows]."""
        arguments = {
            k: (expr, 1.0, None) for k, expr in enumerate(lowered.arguments) if expr is not None
        }
        by_id = {con.id: con for con in self.problem.constraints}
        for entry in lowered.constraints:
            con = by_id[entry.constraint_id]
            if entry.term < 0 or entry.dual_norm is not None:
                continue
            if isinstance(con, (Equality, ZeroConstraint)):
                arguments[entry.term] = (con, 1.0, None)
            elif isinstance(con, NonNeg):
                arguments[entry.term] = (con, 1.0, entry.rows)
            elif isinstance(con, (Inequality, NonPos)):
                arguments[entry.term] = (con, -1.0, entry.rows)
        return arguments

    def _parameter_routes(
        self, arguments: dict, first: list[np.ndarray], lowered: Lowered
    ) -> dict[int, str]:
        """parameter id -> "argument" or "probe" (module docstring)."""
        routes = {}
        for k, param in enumerate(self.parameters):
            if self._through_arguments(k, arguments, first, lowered):
                routes[param.id] = "argument"
            elif param.size <= PROBE_LIMIT:
                routes[param.id] = "probe"
            else:
                raise RouteUnavailable(
                    f"parameter {param.name()} ({param.size} entries) enters other than "
                    "through the argument of a term or a constraint"
                )
        return routes

    def _through_arguments(
        self, k: int, arguments: dict, first: list[np.ndarray], lowered: Lowered
    ) -> bool:
        """Whether parameter k changes the program only through the arguments' torch
        evaluations: checked by moving it in a random direction (the data are affine in
        it, so one direction is a certificate) and comparing the lowering's terms with
        the evaluations at a random point."""
        rng = np.random.default_rng(k)
        param = self.parameters[k]
        moved = list(first)
        moved[k] = np.asarray(first[k], dtype=np.float64) + rng.standard_normal(param.shape)
        x = rng.standard_normal(self.layout.n)
        try:
            after = self._lower(moved).program
        except NotStructured:
            return False
        before = lowered.program
        if signature(after) != self.signature or not np.allclose(after.c, before.c):
            return False
        for i, (t0, t1) in enumerate(zip(before.terms, after.terms, strict=True)):
            if not _same_function(t0.function, t1.function):
                return False
            z0, z1 = t0.residual(x), t1.residual(x)
            source = arguments.get(i)
            if source is None or param.id not in {
                p.id for p in _expression(source[0]).parameters()
            }:
                if not _close(z1, z0):
                    return False
                continue
            try:
                e0, e1 = (self._evaluate(source, values, x) for values in (first, moved))
            except Exception:  # noqa: BLE001 (any atom torch cannot evaluate as CVXPY does)
                return False
            if not (_close(e0, z0) and _close(e1, z1)):
                return False
        return True

    def _evaluate(self, source: tuple, values: list[np.ndarray], x: np.ndarray) -> np.ndarray:
        """z = sign * vec(E)[rows] of an argument, evaluated in torch at (values, x)."""
        expr, sign, rows = _expression(source[0]), source[1], source[2]
        leaves = {k: t[0] for k, t in self._variables(x[None]).items()}
        for param, value in zip(self.parameters, values, strict=True):
            leaves[param.id] = torch.tensor(
                np.asarray(value, dtype=np.float64).reshape(param.shape)
            )
        z = evaluate(expr, leaves).detach().numpy().reshape(-1, order="F")
        return sign * (z if rows is None else z[rows])

    def _arguments_with(self, arguments: dict, ids: set[int]) -> list[_Argument]:
        """The arguments that contain a parameter of the "argument" route (``ids``)."""
        out = []
        for term, (source, sign, rows) in sorted(arguments.items()):
            expr = _expression(source)
            if any(p.id in ids for p in expr.parameters()):
                out.append(_Argument(term, expr, sign, rows))
        return out

    def _probes(
        self, first: list[np.ndarray], lowered: Lowered, routes: dict[int, str]
    ) -> list[_Probe]:
        probes = []
        for k, param in enumerate(self.parameters):
            if routes[param.id] != "probe":
                continue
            for index in range(param.size):
                values = list(first)
                moved = np.array(first[k], dtype=np.float64).ravel(order="F")
                moved[index] += 1.0
                values[k] = moved.reshape(param.shape, order="F")
                try:
                    program = self._lower(values).program
                except NotStructured as exc:
                    raise RouteUnavailable(str(exc)) from None
                if signature(program) != self.signature:
                    raise RouteUnavailable(f"the terms change with parameter {param.name()}")
                _check_probe(lowered.program, program, param)
                probes.append(_Probe(k, index, lowered.program, program))
        return probes

    # -- forward ---------------------------------------------------------------------

    def solve(
        self, values: list[np.ndarray], options: SolverOptions, warm_start: bool
    ) -> tuple[StackedStructuredProgram, Any]:
        """Lower each element at its parameter values, stack, and solve once."""
        batch = values[0].shape[0]
        programs = []
        with _restoring(self.parameters):
            for b in range(batch):
                program = self._lower([v[b] for v in values]).program
                if signature(program) != self.signature:
                    raise RouteUnavailable(
                        f"the terms of batch element {b} differ from the first's"
                    )
                programs.append(program)
        try:
            stack = StackedStructuredProgram(programs)
        except ValueError as exc:  # e.g. Huber terms whose M differs between elements
            raise RouteUnavailable(str(exc)) from None
        warm = self._warm.get(batch) if warm_start else None
        result = solve_program(stack.program, options, warm)
        if result.info.get("warm_start") is not None:
            self._warm[batch] = result.info["warm_start"]
        return stack, result

    # -- backward --------------------------------------------------------------------

    def gradients(
        self,
        stack: StackedStructuredProgram,
        result: Any,
        dx: np.ndarray,
        values: list[np.ndarray],
    ) -> list[np.ndarray]:
        """dL/dtheta as one (B, *param.shape) array per parameter, for dL/dx = dx (B, n)
        at the parameter values ``values`` ((B, *param.shape) each) of the solve."""
        batch = stack.batch
        xs, zs, ys = stack.split_x(result.x), stack.split_y(result.z), stack.split_y(result.y)
        grad = np.zeros((batch, int(self.offsets[-1])))
        u_xs, u_vs, duals = np.zeros_like(xs), [], []
        with single_threaded_blas():  # one small dense factorization per element
            for b in range(batch):
                adjoint = ImplicitAdjoint(stack.programs[b], x=xs[b], y=ys[b], z=zs[b])
                u_xs[b], u_v = adjoint.solve(dx[b])
                q = adjoint.weight_gradients(u_xs[b], u_v)
                u_v, y = adjoint.residual.split(u_v), adjoint.residual.split(ys[b])
                u_vs.append(u_v)
                duals.append(y)
                for probe in self.probes:
                    grad[b, self.offsets[probe.param] + probe.index] -= _probe_derivative(
                        probe, xs[b], y, u_xs[b], u_v, q
                    )
        if self.arguments:
            grad -= self._argument_gradient(values, xs, u_xs, duals, u_vs)
        return [
            grad[:, a:e].reshape((batch, *p.shape), order="F")
            for p, a, e in zip(self.parameters, self.offsets[:-1], self.offsets[1:], strict=True)
        ]

    def _argument_gradient(
        self,
        values: list[np.ndarray],
        xs: np.ndarray,
        u_xs: np.ndarray,
        duals: list[list[np.ndarray]],
        u_vs: list[list[np.ndarray]],
    ) -> np.ndarray:
        """d/dtheta of sum_i <u_v,i, E_i(x)> + <y_i, E_i(u_x) - E_i(0)>, (B, P): one torch
        evaluation of the arguments, vectorized over the batch (``torch.func.vmap``)."""
        batch = xs.shape[0]
        params = {}
        for param, value in zip(self.parameters, values, strict=True):
            array = np.ascontiguousarray(value, dtype=np.float64)
            t = torch.from_numpy(array if array.flags.writeable else array.copy())
            params[param.id] = t.requires_grad_(param.id in self.argument_ids)
        points = {
            "x": self._variables(xs),
            "u": self._variables(u_xs),
            "0": self._variables(np.zeros_like(xs)),
        }
        weights = [
            (
                torch.stack([arg.adjoint(u_vs[b][arg.term]) for b in range(batch)]),
                torch.stack([arg.adjoint(duals[b][arg.term]) for b in range(batch)]),
            )
            for arg in self.arguments
        ]

        def bracket(params, points, weights):  # noqa: ANN001, ANN202
            total = torch.zeros((), dtype=torch.float64)
            for arg, (u_E, y_E) in zip(self.arguments, weights, strict=True):
                at = {key: evaluate(arg.expr, {**params, **vs}) for key, vs in points.items()}
                total = total + (u_E * at["x"]).sum() + (y_E * (at["u"] - at["0"])).sum()
            return total

        # A backward pass runs with gradients off. Small products: one thread (as the
        # solves run BLAS single-threaded; threads only add synchronization here).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.enable_grad():
                torch.func.vmap(bracket)(params, points, weights).sum().backward()
        finally:
            torch.set_num_threads(threads)
        out = np.zeros((batch, int(self.offsets[-1])))
        for k, param in enumerate(self.parameters):
            g = params[param.id].grad
            if g is not None:
                flat = g.numpy().reshape(batch, *param.shape)
                out[:, self.offsets[k] : self.offsets[k + 1]] = flat.reshape(batch, -1, order="F")
        return out

    def _variables(self, xs: np.ndarray) -> dict[int, torch.Tensor]:
        """Each variable's block of (B, n) as a (B, *var.shape) tensor."""
        return {
            vid: torch.from_numpy(np.ascontiguousarray(block))
            for vid, block in self.layout.split_batch(xs).items()
        }


@contextmanager
def _restoring(parameters: list[cp.Parameter]) -> Iterator[None]:
    """Give the parameters back the values they had (the lowering sets them)."""
    saved = [p.value for p in parameters]
    try:
        yield
    finally:
        for param, value in zip(parameters, saved, strict=True):
            param.value = value


def _expression(source: Expression | Constraint) -> Expression:
    """The affine expression whose vec is a term's argument (before sign and rows)."""
    if isinstance(source, NonNeg):
        return source.args[0]
    if isinstance(source, (Equality, ZeroConstraint, Inequality, NonPos)):
        return source.expr
    return source


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.allclose(
        a, b, rtol=1e-9, atol=1e-9 * (1.0 + np.abs(b).max(initial=0.0))
    )


def _same_function(f0: Any, f1: Any, ignore: tuple[str, ...] = ()) -> bool:
    """The same kind of function with the same attributes (weights included unless
    ``ignore`` names them)."""
    a, b = vars(f0), vars(f1)
    keys = a.keys() - set(ignore)
    return (
        type(f0) is type(f1)
        and a.keys() == b.keys()
        and all(np.array_equal(np.asarray(a[key]), np.asarray(b[key])) for key in keys)
    )


def _check_probe(base: Program, moved: Program, param: cp.Parameter) -> None:
    """A probed parameter may move operators, constants and weights, nothing else."""
    for t0, t1 in zip(base.terms, moved.terms, strict=True):
        if not _same_function(t0.function, t1.function, ignore=("weight",)):
            raise RouteUnavailable(
                f"parameter {param.name()} changes the shape of {t0.function.describe()}"
            )


def _probe_derivative(
    probe: _Probe,
    x: np.ndarray,
    y: list[np.ndarray],
    u_x: np.ndarray,
    u_v: list[np.ndarray],
    q: list[np.ndarray | None],
) -> float:
    """d/dtheta_k of <u_x, c> + sum_i <y_i, A_i u_x> + <u_v,i, A_i x - b_i> - <q_i, w_i>."""
    total = float((probe.moved.c - probe.base.c) @ u_x)
    zero = np.zeros_like(u_x)
    for i, (t0, t1) in enumerate(zip(probe.base.terms, probe.moved.terms, strict=True)):
        d_b = t1.residual(zero) - t0.residual(zero)
        total += float(y[i] @ (t1.residual(u_x) - t0.residual(u_x) - d_b))
        total += float(u_v[i] @ (t1.residual(x) - t0.residual(x)))
        if q[i] is not None:
            total -= float(q[i] @ (weight_entries(t1.function) - weight_entries(t0.function)))
    return total
