"""Unrolled differentiation: a fixed number of PDHG iterations written in torch.

For ``diff="unrolled"`` the layer runs, on the stacked batch program of
``cvxprox.ir.batch.StackedConeProgram`` (minimize c'x + 1/2 x'Px + f_K(A x - b)),

    x+ = x - tau (c + P x + A' y)
    y+ = Pi_{K°}(y + sigma (A (2 x+ - x) - b)),     Pi_{K°}(w) = w - Pi_K(w),

a primal-dual (Condat-Vu) iteration with steps ``sigma = 1 / ||A||`` and
``tau = 1 / (||A|| + ||P||)``, which satisfy ``1/tau - sigma ||A||^2 >= ||P|| / 2``. Every
operation is a torch operation on tensors that depend on the parameters, so autograd
differentiates through all ``iterations`` steps: memory grows linearly with the iteration
count, and the result is the iterate after exactly that many steps (not a converged
solution), which is what training through a fixed schedule needs. The default
``diff="implicit"`` is the method of choice when a converged solution and its exact
derivative are wanted.

Projections onto the zero and nonnegative cones are torch-native; the others call the
NumPy projections of ``cvxprox.functions.cones`` with ``Cone.project_derivative`` as their backward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

from cvxprox.functions.cones import Cone, NonnegCone, ZeroCone

if TYPE_CHECKING:
    from cvxprox.torch.layer import CvxproxLayer


class _ConeProjection(torch.autograd.Function):
    """Pi_K(v) by ``cone.project``; its vector-Jacobian product by ``cone.project_derivative``."""

    @staticmethod
    def forward(ctx: Any, v: torch.Tensor, cone: Cone) -> torch.Tensor:  # type: ignore[override]
        value = v.detach().to("cpu", torch.float64).numpy()
        ctx.cone, ctx.value = cone, value
        return torch.as_tensor(cone.project(value), dtype=v.dtype, device=v.device)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        jac = ctx.cone.project_derivative(ctx.value)  # symmetric
        g = grad.detach().to("cpu", torch.float64).numpy()
        return torch.as_tensor(jac @ g, dtype=grad.dtype, device=grad.device), None


def project(cone: Cone, v: torch.Tensor) -> torch.Tensor:
    """Differentiable Pi_K(v) for one cone of the IR."""
    if isinstance(cone, ZeroCone):
        return torch.zeros_like(v)
    if isinstance(cone, NonnegCone):
        return torch.relu(v)
    return _ConeProjection.apply(v, cone)


class SparseOperator:
    """y = M x for a sparse pattern with differentiable values (gather + index_add)."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> None:
        self.rows = torch.as_tensor(rows, dtype=torch.int64)
        self.cols = torch.as_tensor(cols, dtype=torch.int64)
        self.shape = shape

    def matvec(self, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.shape[0], dtype=x.dtype, device=x.device)
        return out.index_add(0, self.rows, values * x[self.cols])

    def rmatvec(self, values: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.shape[1], dtype=y.dtype, device=y.device)
        return out.index_add(0, self.cols, values * y[self.rows])


def _operator(matrix: sp.csc_array) -> SparseOperator:
    coo = sp.coo_array(matrix)
    # COO of a CSC array keeps the order of its data array.
    return SparseOperator(coo.row, coo.col, matrix.shape)


def _flatten_fortran(t: torch.Tensor, batch: int) -> torch.Tensor:
    """(B, *shape) -> (B, size) in Fortran order within each element."""
    dims = list(range(1, t.dim()))
    return t.permute(0, *reversed(dims)).reshape(batch, -1)


def _unflatten_fortran(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(B, size) in Fortran order -> (B, *shape)."""
    batch = t.shape[0]
    rev = t.reshape(batch, *reversed(shape))
    dims = list(range(1, len(shape) + 1))
    return rev.permute(0, *reversed(dims))


def _to_torch_sparse(matrix: sp.csr_array, dtype: torch.dtype) -> torch.Tensor:
    coo = sp.coo_array(matrix)
    indices = torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.int64)
    return torch.sparse_coo_tensor(
        indices, torch.as_tensor(coo.data, dtype=dtype), coo.shape, check_invariants=False
    )


def unrolled_solve(
    layer: CvxproxLayer,
    params: tuple[torch.Tensor, ...],
    batch: int,
    batched: list[bool],
    args: dict[str, Any],
) -> tuple[torch.Tensor, ...]:
    """``layer.iterations`` PDHG steps on the stacked batch, differentiable end to end."""
    unknown = set(args) - {"verbose"}
    if unknown:
        raise ValueError(
            f"diff='unrolled' runs a fixed number of iterations (the layer's `iterations`); "
            f"solver options {sorted(unknown)} do not apply"
        )
    from cvxprox.torch.layer import _output_dtype_device, _parameter_values  # noqa: PLC0415

    values = _parameter_values(layer.parameters, params, batch, batched)
    dtype, device = _output_dtype_device(params)
    dtype = torch.float64 if dtype != torch.float32 else dtype
    cone_map = layer.cone_map
    stack = layer.stacked(batch)
    # The parameter matrix (p + 1, B), differentiable; parameters fill consecutive rows.
    rows = []
    for param, t, was_batched in zip(layer.parameters, params, batched, strict=True):
        t = t.to("cpu", dtype)
        if not was_batched:
            t = t.expand(batch, *param.shape)
        col = cone_map.cone_prog.param_id_to_col[param.id]
        rows.append((col, _flatten_fortran(t.reshape(batch, *param.shape), batch).T))
    rows.sort(key=lambda item: item[0])
    vec = torch.cat([r for _, r in rows] + [torch.ones(1, batch, dtype=dtype)])
    tensors = cone_map.tensors()
    P_all = None
    if tensors["P"] is not None:
        P_all = torch.sparse.mm(_to_torch_sparse(tensors["P"], dtype), vec).T
    data = cone_map.layout.data(
        torch.sparse.mm(_to_torch_sparse(tensors["q"], dtype), vec).T,
        torch.sparse.mm(_to_torch_sparse(tensors["A"], dtype), vec).T,
        P_all,
    )
    n = cone_map.n
    c = data.c.reshape(-1)
    b = stack.stack_rows(data.b)
    A_vals = stack.stacked_A_values(data.A_data)
    numeric = stack.program(cone_map.evaluate(values)).assemble()
    A_op = _operator(numeric.A)
    P_op = P_vals = None
    if data.P_data is not None:
        P_vals = stack.stacked_P_values(data.P_data)
        P_op = _operator(numeric.P)
    norm_A = _norm_estimate(numeric.A)
    norm_P = 0.0 if numeric.P is None else _norm_estimate(numeric.P)
    sigma = 1.0 / max(norm_A, 1e-12)
    tau = 1.0 / max(norm_A + norm_P, 1e-12)
    x = torch.zeros(batch * n, dtype=dtype)
    y = torch.zeros(b.shape[0], dtype=dtype)
    terms = stack.terms
    for _ in range(layer.iterations):
        grad = c + A_op.rmatvec(A_vals, y)
        if P_op is not None:
            grad = grad + P_op.matvec(P_vals, x)
        x_new = x - tau * grad
        w = y + sigma * (A_op.matvec(A_vals, 2.0 * x_new - x) - b)
        y = torch.cat([w[t.rows] - project(t.function, w[t.rows]) for t in terms])
        x = x_new
    x = x.reshape(batch, n)
    outputs = []
    cols = layer.cone_map.cone_prog.var_id_to_col
    for var in layer.variables:
        col = cols[var.id]
        value = _unflatten_fortran(x[:, col : col + var.size], var.shape).to(device, dtype)
        outputs.append(value if any(batched) else value[0])
    return tuple(outputs)


def _norm_estimate(matrix: sp.csc_array, iterations: int = 50) -> float:
    """||M||_2 by power iteration on M'M (an upper estimate with a 1% margin)."""
    rng = np.random.default_rng(0)
    v = rng.standard_normal(matrix.shape[1])
    value = 0.0
    for _ in range(iterations):
        w = matrix.T @ (matrix @ v)
        value = float(np.linalg.norm(w))
        if value == 0.0:
            return 0.0
        v = w / value
    return 1.01 * float(np.sqrt(value))
