"""NABLAPROX as a solver for cvxpylayers (>= 1.2), through its ``SolverInterface``.

Existing cvxpylayers code switches solver with one argument::

    from cvxpylayers.torch import CvxpyLayer
    from cvxprox.torch import NablaProxSolver

    layer = CvxpyLayer(problem, parameters=[A, b], variables=[x], solver=NablaProxSolver())

cvxpylayers canonicalizes the problem with CVXPY's SCS chain, whose cone layout (zero,
nonneg, soc, psd as scaled lower-triangle svec, exp, 3-D power) is the IR's, evaluates
the data for a batch of parameters, and hands them to this class: the batch is solved as
one stacked program (``cvxprox.ir.batch``) and differentiated with the adjoint solve of
``cvxprox.diff``. Duals are returned in CVXPY's convention (in the dual cone), so
cvxpylayers can also return constraint duals.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from cvxpy import settings as s
from cvxpy.error import SolverError
from cvxpylayers.interfaces.base import SolverInterface

from cvxprox.diff import ImplicitAdjoint
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.batch import ConeLayout, StackedConeProgram
from cvxprox.solvers.select import solve_program


class NablaProxSolver(SolverInterface):
    """A cvxpylayers ``SolverInterface`` backed by NABLAPROX.

    Parameters
    ----------
    **options
        NABLAPROX options (``eps_abs``, ``eps_rel``, ``max_iters``, ``algorithm``, ...);
        a layer call's ``solver_args`` override them.
    """

    canon_solver = "SCS"
    supports_quad_obj = True

    def __init__(self, **options: Any) -> None:
        SolverOptions.from_kwargs(options)  # validate early
        self.options = options
        self.layout: ConeLayout | None = None
        self._stacks: dict[int, StackedConeProgram] = {}

    def setup(self, ctx: Any) -> None:
        """Read the canonical program's layout from cvxpylayers' context."""
        self.layout = ConeLayout(ctx.reduced_A, ctx.reduced_P, ctx.cone_dims, ctx.q.shape[0] - 1)
        self._stacks = {}

    def _stack(self, batch: int) -> StackedConeProgram:
        stack = self._stacks.get(batch)
        if stack is None:
            stack = self._stacks[batch] = StackedConeProgram(self.layout, batch)
        return stack

    def solve_numpy_batch(
        self,
        P: np.ndarray | None,
        q: np.ndarray,
        A: np.ndarray,
        dims: Any,
        solver_args: dict,
        needs_grad: bool,
    ) -> tuple[np.ndarray, np.ndarray, Any]:
        """Solve a batch given as ``(B, nnz_P)``, ``(B, n + 1)``, ``(B, nnz_A)`` values."""
        if self.layout is None:
            raise RuntimeError("NablaProxSolver must be passed to a CvxpyLayer before use")
        q, A = np.asarray(q, dtype=np.float64), np.asarray(A, dtype=np.float64)
        P = None if P is None else np.asarray(P, dtype=np.float64)
        batch = q.shape[0]
        stack = self._stack(batch)
        program = stack.program(self.layout.data(q, A, P))
        options = SolverOptions.from_kwargs({**self.options, **(solver_args or {})})
        result = solve_program(program, options)
        if result.status not in s.SOLUTION_PRESENT:
            raise SolverError(f"NABLAPROX: status {result.status!r} for a batch of {batch}")
        primal = result.x.reshape(batch, self.layout.n)
        # IR duals lie in the polar cone; CVXPY's in the dual cone.
        dual = -stack.split_rows(result.y)[:, : self.layout.m_cone]
        state = (stack, program, result) if needs_grad else None
        return primal, dual, state

    def derivative_numpy_batch(
        self, dprimal: np.ndarray, ddual: np.ndarray, saved_state: Any
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """Gradients (dP, dq, dA) of the canonical data from gradients of primal and dual."""
        stack, program, result = saved_state
        batch = stack.batch_size
        dy = np.zeros((batch, self.layout.m))
        dy[:, : self.layout.m_cone] = -np.asarray(ddual, dtype=np.float64)
        adjoint = ImplicitAdjoint(program.assemble(), x=result.x, y=result.y, z=result.z)
        grad = adjoint.data_gradient(
            np.asarray(dprimal, dtype=np.float64).reshape(-1), stack.stack_rows(dy)
        )
        dP = None if grad.P_data is None else stack.unstack_P_data(grad.P_data)
        d_qd, d_Ab, dP = self.layout.data_adjoint(
            grad.c.reshape(batch, -1),
            stack.unstack_A_data(grad.A_data),
            stack.split_rows(grad.b),
            dP,
        )
        return dP, d_qd, d_Ab

    # cvxpylayers' torch layer enters here; one stacked solve instead of a loop per element.
    def solve_torch_batch(
        self, P: Any, q: Any, A: Any, dims: Any, solver_args: dict, needs_grad: bool
    ) -> tuple[Any, Any, Any]:
        primal, dual, state = self.solve_numpy_batch(
            None if P is None else _numpy(P), _numpy(q), _numpy(A), dims, solver_args, needs_grad
        )
        return _like(primal, q), _like(dual, q), state

    def derivative_torch_batch(
        self, dprimal: Any, ddual: Any, saved_state: Any
    ) -> tuple[Any, Any, Any]:
        dP, dq, dA = self.derivative_numpy_batch(_numpy(dprimal), _numpy(ddual), saved_state)
        return (None if dP is None else _like(dP, dprimal)), _like(dq, dprimal), _like(dA, dprimal)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _like(a: np.ndarray, ref: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(a, dtype=ref.dtype, device=ref.device)
