"""``CvxproxLayer``: a CVXPY problem as a differentiable torch module.

The layer maps parameter tensors ``theta`` to a solution ``x*(theta)`` of a DPP problem

    x*(theta) = argmin  f_0(x; theta)  subject to  f_i(x; theta) <= 0,  ...

and its backward pass returns ``(dx*/dtheta)' g`` for incoming gradients ``g``. The problem
is compiled once to CVXPY's parametric cone program (``cvxprox.ir.batch.ConeProgramMap``); a
batch of parameter values becomes one block-diagonal program solved by one vectorized
NABLAPROX run (``cvxprox.ir.batch.StackedConeProgram``). Gradients come from implicit
differentiation of the optimality conditions (``cvxprox.diff``): one adjoint linear
solve per backward pass, whose memory does not depend on the forward iteration count.
``diff="unrolled"`` instead backpropagates through a fixed number of PDHG iterations
written in torch (``cvxprox.torch.unrolled``), for schedules that train through the
iterations.

Problems that keep their structure (a lasso, a Huber fit: norms and least squares instead
of cones) take the structured route (``cvxprox.torch.structured``): the batch is solved as
one block-diagonal structured program and differentiated through the prox maps'
Jacobians. ``structure="never"`` forces the cone route; ``layer.info["route"]`` says which
route a call took and why.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
import torch
from cvxpy import settings as s
from cvxpy.error import SolverError
from cvxpy.expressions.expression import Expression

from cvxprox.diff import ADJOINT_METHODS, ImplicitAdjoint
from cvxprox.interface.options import STRUCTURE_MODES, SolverOptions
from cvxprox.ir.batch import ConeProgramMap, StackedConeProgram
from cvxprox.solvers.select import solve_program
from cvxprox.torch.structured import RouteUnavailable, StructuredRoute

DIFF_MODES = ("implicit", "unrolled")


class CvxproxLayer(torch.nn.Module):
    """A differentiable solution map of a DPP CVXPY problem (cvxpylayers' calling convention).

    Parameters
    ----------
    problem : cvxpy.Problem
        A problem that is DCP under the DPP rules (``problem.is_dcp(dpp=True)``).
    parameters : list of cvxpy.Parameter
        Every parameter of the problem, in the order the layer receives tensors.
    variables : list of cvxpy.Variable
        The variables whose values the layer returns, in order.
    solver_args : dict, optional
        NABLAPROX options (``eps_abs``, ``eps_rel``, ``max_iters``, ``algorithm``, ...)
        used by every call; a call's own ``solver_args`` override them.
    diff : {"implicit", "unrolled"}
        How gradients are computed: implicit differentiation of the optimality conditions
        (default), or backpropagation through ``iterations`` unrolled PDHG iterations.
    iterations : int
        Number of unrolled iterations (``diff="unrolled"`` only).
    adjoint : {"auto", "reduced", "lu", "lsmr"}
        The linear solver of the implicit backward pass on the cone route
        (``cvxprox.diff.adjoint``).
    verbose : bool
        Print NABLAPROX's iteration log on every solve.
    structure : {"auto", "always", "never"}
        ``auto`` (default) differentiates the structure-preserving lowering when the
        problem keeps structure worth keeping and every term has a prox Jacobian (see
        ``cvxprox.torch.structured``), the cone program otherwise; ``always`` takes the
        structured route whenever it applies; ``never`` always takes the cone route.

    Calling the layer with one tensor per parameter (shape ``param.shape``, or
    ``(B, *param.shape)`` for a batch; unbatched tensors are shared by the batch) returns a
    tuple with one tensor per variable, of shape ``var.shape`` or ``(B, *var.shape)``.
    ``warm_start=True`` starts the solve from the previous call's solution (same batch
    size). Tensors may live on any device. With parameters on a CUDA device and no
    ``device`` among the solver options, the solve runs on that GPU (``solve_options``:
    on CuPy where it is installed, else on torch); otherwise on the CPU. The results are
    returned on the parameters' device. After each call, ``info`` holds the status, the
    iteration count, the solve time and the device of the batch.
    """

    def __init__(
        self,
        problem: cp.Problem,
        parameters: list[cp.Parameter],
        variables: list[cp.Variable],
        *,
        solver_args: dict[str, Any] | None = None,
        diff: str = "implicit",
        iterations: int = 1000,
        adjoint: str = "auto",
        verbose: bool = False,
        gp: bool = False,
        structure: str = "auto",
    ) -> None:
        super().__init__()
        if structure not in STRUCTURE_MODES:
            raise ValueError(f"structure must be one of {STRUCTURE_MODES}, got {structure!r}")
        if gp:
            raise ValueError("CvxproxLayer does not support geometric programs (gp=True)")
        if diff not in DIFF_MODES:
            raise ValueError(f"diff must be one of {DIFF_MODES}, got {diff!r}")
        if adjoint not in ADJOINT_METHODS:
            raise ValueError(f"adjoint must be one of {ADJOINT_METHODS}, got {adjoint!r}")
        if not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
        check_dpp(problem)
        _check_leaves(problem, parameters, variables)
        self.problem = problem
        self.parameters = list(parameters)
        self.variables = list(variables)
        self.solver_args = {**({"verbose": True} if verbose else {}), **(solver_args or {})}
        SolverOptions.from_kwargs(self.solver_args)  # validate early
        self.diff = diff
        self.iterations = iterations
        self.adjoint = adjoint
        cone_prog, reductions = compile_cone_program(problem)
        self.leaves = ReducedLeaves(reductions, cone_prog, self.parameters, self.variables)
        if diff == "unrolled" and not (self.leaves.params_identity and self.leaves.vars_identity):
            raise ValueError(
                "diff='unrolled' needs parameters without dimension-reducing attributes "
                "(symmetric, PSD, diag, ...); use diff='implicit'"
            )
        self.cone_map = ConeProgramMap(cone_prog, self.leaves.parameters)
        self._stacks: dict[int, StackedConeProgram] = {}
        self._warm: dict[int, dict] = {}
        self.info: dict[str, Any] = {}
        self.structure = structure
        self._route: StructuredRoute | None = None
        self._route_reason = "cones: structure='never'" if structure == "never" else ""

    def stacked(self, batch_size: int) -> StackedConeProgram:
        """The block-diagonal layout of a batch (built once per batch size)."""
        stack = self._stacks.get(batch_size)
        if stack is None:
            stack = self._stacks[batch_size] = StackedConeProgram(self.cone_map.layout, batch_size)
        return stack

    def forward(
        self,
        *params: torch.Tensor,
        solver_args: dict[str, Any] | None = None,
        warm_start: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Solve at the given parameter tensors; returns one tensor per variable."""
        if len(params) != len(self.parameters):
            raise ValueError(
                f"expected {len(self.parameters)} parameter tensors "
                f"({', '.join(p.name() for p in self.parameters)}), got {len(params)}"
            )
        args = {**self.solver_args, **(solver_args or {})}
        batch, batched = _batch_shape(self.parameters, params)
        if self.diff == "unrolled":
            from cvxprox.torch.unrolled import unrolled_solve  # noqa: PLC0415

            return unrolled_solve(self, params, batch, batched, args)
        args = solve_options(args, params)
        outputs = _ImplicitSolve.apply(self, (args, warm_start), batch, batched, *params)
        return tuple(outputs)

    def solve_numpy(
        self, values: list[np.ndarray], args: dict[str, Any], warm_start: bool = False
    ) -> tuple[StackedConeProgram, Any, Any]:
        """Solve the stacked program at ``(B, *param.shape)`` values; (stack, program, result)."""
        batch = values[0].shape[0]
        stack = self.stacked(batch)
        program = stack.program(self.cone_map.evaluate(values))
        options = SolverOptions.from_kwargs(args)
        warm = self._warm.get(batch) if warm_start else None
        result = solve_program(program, options, warm)
        if result.info.get("warm_start") is not None:
            self._warm[batch] = result.info["warm_start"]
        self._record(result, batch, options.device)
        return stack, program, result

    def structured_route(
        self, values: list[np.ndarray], args: dict[str, Any]
    ) -> StructuredRoute | None:
        """The structured route for these parameter values, or None (the reason is kept)."""
        if self.structure == "never" or args.get("dtype", "float64") != "float64":
            return None
        if self._route is None and not self._route_reason:
            try:
                self._route = StructuredRoute(
                    self.problem,
                    self.parameters,
                    [v[0] for v in values],
                    always=self.structure == "always",
                )
                self._route_reason = "structured: every term has a prox Jacobian"
            except RouteUnavailable as exc:
                self._route_reason = f"cones: {exc}"
        return self._route

    def solve_structured(
        self,
        route: StructuredRoute,
        values: list[np.ndarray],
        args: dict[str, Any],
        warm_start: bool,
    ) -> tuple[Any, Any]:
        """Solve a batch by the structured route; (stack, result)."""
        options = SolverOptions.from_kwargs(args)
        stack, result = route.solve(values, options, warm_start)
        self._record(result, stack.batch, options.device)
        return stack, result

    def _record(self, result: Any, batch: int, device: str) -> None:
        """Fill ``info``; raise when there is no solution, warn when it is inaccurate."""
        self.info = {
            "status": result.status,
            "iterations": result.iterations,
            "solve_time": result.solve_time,
            "setup_time": result.setup_time,
            "algorithm": result.algorithm,
            "route": self._route_reason,
            "device": device,
        }
        if result.status not in s.SOLUTION_PRESENT:
            raise SolverError(
                f"CvxproxLayer: the solve of a batch of {batch} ended with status "
                f"{result.status!r}; no solution to differentiate"
            )
        if result.status != s.OPTIMAL:
            warnings.warn(
                f"CvxproxLayer: status {result.status!r} after {result.iterations} iterations "
                "(raise max_iters or loosen eps_abs/eps_rel); gradients are approximate",
                stacklevel=4,
            )

    def split_variables(self, x: np.ndarray, batch: int) -> list[np.ndarray]:
        """The stacked primal vector -> one ``(B, *var.shape)`` array per variable."""
        return self.leaves.split(x.reshape(batch, self.cone_map.n))

    def variables_adjoint(self, grads: list[np.ndarray | None], batch: int) -> np.ndarray:
        """Adjoint of ``split_variables``: per-variable gradients -> ``(B, n)``."""
        return self.leaves.split_adjoint(
            [None if g is None else g.reshape(batch, *g.shape[1:]) for g in grads], batch
        )


class _ImplicitSolve(torch.autograd.Function):
    """Forward: the NABLAPROX solve; backward: the adjoint solve of ``cvxprox.diff``."""

    @staticmethod
    def forward(ctx: Any, layer: CvxproxLayer, args: tuple, batch: int, batched: list, *params):  # type: ignore[override]
        values = _parameter_values(layer.parameters, params, batch, batched)
        ctx.layer, ctx.batch, ctx.batched = layer, batch, batched
        ctx.like = [(p.dtype, p.device) for p in params]
        ctx.route = layer.structured_route(values, args[0])
        reason = None
        if ctx.route is not None:
            try:
                ctx.stack, ctx.result = layer.solve_structured(ctx.route, values, *args)
                ctx.values = values
                blocks = ctx.route.layout.split_batch(ctx.stack.split_x(ctx.result.x))
                split = [blocks[var.id] for var in layer.variables]
            except RouteUnavailable as exc:
                ctx.route = None
                reason = f"cones: {exc}"
        if ctx.route is None:
            stack, program, result = layer.solve_numpy(layer.leaves.params_forward(values), *args)
            ctx.stack, ctx.program, ctx.result = stack, program, result
            split = layer.split_variables(result.x, batch)
            if reason is not None:
                layer.info["route"] = reason
        out_dtype, device = _output_dtype_device(params)
        outputs = []
        for value in split:
            t = torch.as_tensor(value, dtype=out_dtype, device=device)
            outputs.append(t if any(batched) else t[0])
        return tuple(outputs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, *grad_outputs: torch.Tensor):  # type: ignore[override]
        layer, batch = ctx.layer, ctx.batch
        grads = []
        for g in grad_outputs:
            if g is None:
                grads.append(None)
                continue
            g = g.detach().to("cpu", torch.float64).numpy()
            grads.append(g if any(ctx.batched) else g[None])
        if ctx.route is not None:
            dparams = ctx.route.gradients(
                ctx.stack,
                ctx.result,
                _variables_adjoint(ctx.route.layout, layer.variables, grads, batch),
                ctx.values,
            )
            return (None, None, None, None, *_reduce(dparams, ctx))
        dx = layer.variables_adjoint(grads, batch)
        result = ctx.result
        adjoint = ImplicitAdjoint(
            ctx.program.assemble(), x=result.x, y=result.y, z=result.z, method=layer.adjoint
        )
        grad = adjoint.data_gradient(dx.reshape(-1))
        stack = ctx.stack
        dP = None if grad.P_data is None else stack.unstack_P_data(grad.P_data)
        dparams = layer.cone_map.adjoint(
            grad.c.reshape(batch, -1),
            stack.unstack_A_data(grad.A_data),
            stack.split_rows(grad.b),
            dP,
        )
        dparams = layer.leaves.params_backward(dparams)
        return (None, None, None, None, *_reduce(dparams, ctx))


def _reduce(dparams: list[np.ndarray], ctx: Any) -> list[torch.Tensor]:
    """(B, *shape) gradients as tensors, summed over the batch for unbatched parameters."""
    out = []
    for dparam, was_batched, (dtype, device) in zip(dparams, ctx.batched, ctx.like, strict=True):
        value = dparam if was_batched else dparam.sum(axis=0)
        out.append(torch.as_tensor(value, dtype=dtype, device=device))
    return out


def _variables_adjoint(
    layout: Any, variables: list[cp.Variable], grads: list[np.ndarray | None], batch: int
) -> np.ndarray:
    """Adjoint of ``VariableLayout.split_batch`` over the returned variables: (B, n)."""
    dx = np.zeros((batch, layout.n))
    for var, g in zip(variables, grads, strict=True):
        if g is not None:
            start = layout.offsets[var.id]
            dx[:, start : start + var.size] += g.reshape(batch, -1, order="F")
    return dx


def solve_options(args: dict[str, Any], params: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """The NABLAPROX options of a call: ``args`` as given, and when a parameter tensor is
    on a CUDA device and ``args`` name neither a ``device`` nor ``backend="numpy"``,
    ``device="cuda"`` with the backend that can run there: ``args``' own, else CuPy when
    it is installed, else torch (whose CUDA build the tensors show)."""
    backend = args.get("backend", "auto")
    if "device" in args or backend == "numpy":
        return args
    if not any(getattr(getattr(t, "device", None), "type", None) == "cuda" for t in params):
        return args
    if backend == "auto":
        backend = "cupy" if importlib.util.find_spec("cupy") is not None else "torch"
    return {**args, "device": "cuda", "backend": backend}


def _output_dtype_device(params: tuple[torch.Tensor, ...]) -> tuple[torch.dtype, torch.device]:
    floats = [p for p in params if p.is_floating_point()]
    if floats:
        return floats[0].dtype, floats[0].device
    device = params[0].device if params else torch.device("cpu")
    return torch.get_default_dtype(), device


def _batch_shape(
    parameters: list[cp.Parameter], params: tuple[torch.Tensor, ...]
) -> tuple[int, list[bool]]:
    """The batch size and which tensors carry a leading batch dimension."""
    batch, batched = None, []
    for param, t in zip(parameters, params, strict=True):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"parameter {param.name()}: expected a torch.Tensor, got {type(t)}")
        shape = tuple(t.shape)
        if shape == param.shape:
            batched.append(False)
        elif len(shape) == len(param.shape) + 1 and shape[1:] == param.shape:
            if batch is not None and shape[0] != batch:
                raise ValueError(
                    f"parameter {param.name()} has batch size {shape[0]}, others have {batch}"
                )
            batch = shape[0]
            batched.append(True)
        else:
            raise ValueError(
                f"parameter {param.name()} has shape {param.shape}; got a tensor of shape "
                f"{shape} (expected {param.shape} or (batch, *{param.shape}))"
            )
    if batch == 0:
        raise ValueError("the batch size must be positive")
    return (batch or 1), batched


def _parameter_values(
    parameters: list[cp.Parameter],
    params: tuple[torch.Tensor, ...],
    batch: int,
    batched: list[bool],
) -> list[np.ndarray]:
    """``(B, *param.shape)`` float64 arrays, checked for NaN and the parameters' attributes."""
    values = []
    for param, t, was_batched in zip(parameters, params, batched, strict=True):
        value = t.detach().to("cpu", torch.float64).numpy()
        if not was_batched:
            value = np.broadcast_to(value, (batch, *param.shape))
        if not np.all(np.isfinite(value)):
            raise ValueError(f"parameter {param.name()} contains NaN or inf")
        if any(param.attributes[a] for a in ("nonneg", "nonpos", "pos", "neg", "PSD", "NSD")):
            for v in value[: 1 if not was_batched else batch]:
                try:
                    param._validate_value(v)
                except ValueError as err:
                    raise ValueError(f"parameter {param.name()}: {err}") from None
        values.append(value)
    return values


def _check_leaves(
    problem: cp.Problem, parameters: list[cp.Parameter], variables: list[cp.Variable]
) -> None:
    """Parameters must be exactly the problem's; variables must belong to it."""
    given = {p.id for p in parameters}
    if len(given) != len(parameters):
        raise ValueError("a parameter is listed twice")
    mine = {p.id: p for p in problem.parameters()}
    missing = [p.name() for pid, p in mine.items() if pid not in given]
    extra = [p.name() for p in parameters if p.id not in mine]
    if missing or extra:
        raise ValueError(
            "parameters must be exactly the problem's parameters"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; not in the problem: {', '.join(extra)}" if extra else "")
        )
    if not variables:
        raise ValueError("variables must list at least one variable of the problem")
    known = {v.id for v in problem.variables()}
    unknown = [v.name() for v in variables if v.id not in known]
    if unknown:
        raise ValueError(f"variables not in the problem: {', '.join(unknown)}")


def check_dpp(problem: cp.Problem) -> None:
    """Raise a ValueError naming the smallest expression that breaks DCP or DPP."""
    if problem.is_dcp(dpp=True):
        return
    dpp = problem.is_dcp()
    rule = "DPP" if dpp else "DCP"
    parts = [problem.objective, *problem.constraints]
    for part in parts:
        if not part.is_dcp(dpp=dpp):
            culprit = _offending(part, dpp)
            raise ValueError(
                f"the problem is not {rule}"
                + (" (parameters may not multiply each other or enter nonlinearly)" if dpp else "")
                + f"; offending expression: {culprit}"
            )
    raise ValueError(f"the problem is not {rule}")


def _offending(expr: Any, dpp: bool) -> str:
    """The deepest sub-expression of ``expr`` that is not DCP (under DPP if ``dpp``)."""
    for arg in getattr(expr, "args", []):
        if isinstance(arg, Expression) and not _is_dcp(arg, dpp):
            return _offending(arg, dpp)
    return str(expr)


def _is_dcp(expr: Expression, dpp: bool) -> bool:
    if dpp:
        from cvxpy.utilities import scopes  # noqa: PLC0415

        with scopes.dpp_scope():
            return expr.is_convex() or expr.is_concave()
    return expr.is_convex() or expr.is_concave()


def compile_cone_program(problem: cp.Problem) -> tuple[Any, list]:
    """The formatted ``ParamConeProg`` NABLAPROX's cone route makes of ``problem``, and the
    reductions that made it (in order, then ``ConeProgToProx``, which keeps the parameters
    and variables as they are).

    Runs the chain's reductions (not the solver) on a copy of the problem, so parameter
    values are not needed and the user's problem keeps its own solver cache.
    """
    from cvxprox.interface.solver import solving_chain  # noqa: PLC0415

    fresh = cp.Problem(problem.objective, problem.constraints)
    chain = solving_chain(fresh, enforce_dpp=True, solver_opts={"structure": "never"})
    program = fresh
    *reductions, _ = chain.reductions
    for reduction in reductions:
        program, _ = reduction.apply(program)
    flat = []
    for reduction in reductions:
        flat.extend(getattr(reduction, "cone_reductions", [reduction]))
    return program.cone_prog, flat


class ReducedLeaves:
    """The user's parameters and variables, and the cone program's, which CVXPY's
    reductions may replace.

    CVXPY lowers a leaf with a dimension-reducing attribute (``symmetric``, ``PSD``,
    ``diag``, ...) to a new leaf holding only its free entries. Parameter values travel
    down the reductions (``param_forward``) and their gradients back up
    (``param_backward``); variable values travel up (``var_forward``) and their
    gradients down (``var_backward``). Without such leaves every map is a slice.

    Parameters
    ----------
    reductions : list
        The reductions that made the cone program, in order.
    cone_prog : ParamConeProg
    parameters, variables : lists of the user's leaves
    """

    def __init__(
        self,
        reductions: list,
        cone_prog: Any,
        parameters: list[cp.Parameter],
        variables: list[cp.Variable],
    ) -> None:
        self.reductions = reductions
        self.user_parameters = parameters
        self.variables = variables
        program = cone_prog.parameters
        self.params_identity = {p.id for p in parameters} == {p.id for p in program}
        by_id = {p.id: p for p in program}
        self.parameters = (
            [by_id[p.id] for p in parameters] if self.params_identity else list(program)
        )
        self._matrices: list | None = None
        self.n = cone_prog.x.size
        self.cols = {
            vid: (col, cone_prog.id_to_var[vid]) for vid, col in cone_prog.var_id_to_col.items()
        }
        # A symmetric variable keeps its id but holds only its upper triangle.
        self.vars_identity = all(
            v.id in self.cols and self.cols[v.id][1].shape == v.shape for v in variables
        )

    def params_forward(self, values: list[np.ndarray]) -> list[np.ndarray]:
        """``(B, *shape)`` values of the user's parameters -> the program's."""
        if self.params_identity:
            return values
        flat = {
            p.id: np.reshape(v, (v.shape[0], -1), order="F")
            for p, v in zip(self.user_parameters, values, strict=True)
        }
        return [
            np.reshape((matrix @ flat[user.id].T).T, (-1, *p.shape), order="F")
            for p, (user, matrix) in zip(self.parameters, self._lowering(), strict=True)
        ]

    def params_backward(self, grads: list[np.ndarray]) -> list[np.ndarray]:
        """Gradients for the program's parameters -> the user's (the adjoint of
        ``params_forward``; symmetric for a symmetric parameter)."""
        if self.params_identity:
            return grads
        out = {}
        for g, (user, matrix) in zip(grads, self._lowering(), strict=True):
            g = np.reshape(g, (g.shape[0], -1), order="F")
            full = np.reshape((matrix.T @ g.T).T, (-1, *user.shape), order="F")
            if any(user.attributes[a] for a in ("symmetric", "PSD", "NSD")):
                full = 0.5 * (full + np.swapaxes(full, -1, -2))
            out[user.id] = out.get(user.id, 0) + full
        return [out[p.id] for p in self.user_parameters]

    def _lowering(self) -> list[tuple[cp.Parameter, sp.csr_array]]:
        """For each program parameter: the user parameter it comes from and the matrix
        of the (linear) lowering between their Fortran-ordered entries."""
        if self._matrices is None:
            origin = {}
            for user in self.user_parameters:
                columns = []
                for i in range(user.size):
                    unit = np.zeros(user.size)
                    unit[i] = 1.0
                    step = {user.id: np.reshape(unit, user.shape, order="F")}
                    for reduction in self.reductions:
                        step = reduction.param_forward(step)
                    columns.append(step)
                for pid in columns[0]:
                    origin[pid] = (
                        user,
                        sp.csr_array(
                            np.column_stack(
                                [np.ravel(np.asarray(c[pid]), order="F") for c in columns]
                            )
                        ),
                    )
            self._matrices = [origin[p.id] for p in self.parameters]
        return self._matrices

    def split(self, x: np.ndarray) -> list[np.ndarray]:
        """``(B, n)`` program variables -> ``(B, *var.shape)`` per requested variable."""
        if self.vars_identity:
            return [self._slice(x, v.id) for v in self.variables]
        values = {vid: self._slice(x, vid) for vid in self.cols}
        steps = self._walk(
            [{vid: val[k] for vid, val in values.items()} for k in range(x.shape[0])],
            "var_forward",
            reverse=True,
        )
        return [np.stack([np.reshape(d[v.id], v.shape) for d in steps]) for v in self.variables]

    def split_adjoint(self, grads: list[np.ndarray | None], batch: int) -> np.ndarray:
        """Adjoint of ``split``: gradients per requested variable -> ``(B, n)``."""
        dx = np.zeros((batch, self.n))
        pairs = [(v, g) for v, g in zip(self.variables, grads, strict=True) if g is not None]
        if self.vars_identity:
            steps = [{v.id: g[k] for v, g in pairs} for k in range(batch)]
        else:
            steps = self._walk(
                [{v.id: g[k] for v, g in pairs} for k in range(batch)], "var_backward", False
            )
        for vid, (col, var) in self.cols.items():
            for k, d in enumerate(steps):
                if vid in d:
                    dx[k, col : col + var.size] = np.ravel(np.asarray(d[vid]), order="F")
        return dx

    def _slice(self, x: np.ndarray, vid: int) -> np.ndarray:
        col, var = self.cols[vid]
        return np.stack(
            [np.reshape(row, var.shape, order="F") for row in x[:, col : col + var.size]]
        )

    def _walk(self, steps: list[dict], method: str, reverse: bool) -> list[dict]:
        order = reversed(self.reductions) if reverse else self.reductions
        order = list(order)
        out = []
        for step in steps:
            for reduction in order:
                step = getattr(reduction, method)(step)
            out.append(step)
        return out
