"""Plug-and-play priors: a learned denoiser in place of a regularizer's proximal operator.

``PlugAndPlay`` takes an ordinary CVXPY problem in one variable X (x = vec(X), n entries,
column-major as in CVXPY)

    minimize_X  f(x; p) + g(X),     f(x; p) = c'x + sum_k sum_j w_kj (A_k x - b_k(p))_j^2,

where the data fidelity f is what remains of the objective once the regularizer g (the
expression ``reg`` of ``prior=(reg, denoiser)``, e.g. ``lam * cp.tv(X)``) is taken out:
``sum_squares``, ``quad_over_lin(., const)`` and squares of affine expressions, lowered
by cvxprox's structured reduction to SumSquares terms with weights w_k and matrix-free
operators A_k. The Parameters ``p`` listed in ``parameters`` may enter only the constants
b_k, affinely (the observed image of a deblurring, inpainting or MRI model). The solver
runs a plug-and-play splitting method with the denoiser D in place of prox_{g/rho}:

    PnP-ADMM:  x_k = argmin_x f(x) + rho_k/2 ||x - z_{k-1} + y_{k-1} / rho_k||^2
               z_k = D(x_k + y_{k-1} / rho_k),     y_k = y_{k-1} + rho_k (x_k - z_k)
    PnP-HQS:   x_k = argmin_x f(x) + rho_k/2 ||x - z_{k-1}||^2,     z_k = D(x_k)

from z_0 = y_0 = 0 (y is the unscaled dual, so the penalty may change from one iteration
to the next), and returns z (as an image of X's shape). The x-update solves

    (Q + rho I) x = d(p) + rho v,    Q = 2 sum_k A_k' W_k A_k,
                                     d(p) = 2 sum_k A_k' W_k b_k(p) - c,

exactly by one diagonal, FFT or DCT transform pair when Q is diagonal, FFT- or
DCT-diagonal (``LinOp.gram``), otherwise by batched conjugate gradients; its gradient
with respect to the right-hand side and rho comes from the same solve (implicit
differentiation of the linear system). d(p) is affine in p: the problem is lowered a
second time with each listed Parameter replaced by a Variable, which gives the operators
that map p to the b_k, so a whole batch of parameter values costs one batched product
per term, with gradients with respect to p.

With ``mode="unrolled"`` gradients flow through ``iterations`` steps, each with its own
penalty rho_k. With ``mode="deq"`` the fixed-point map T (one step above, one penalty) is
iterated without autograd until ||s_{k+1} - s_k|| / ||s_k|| < tol (s = z for HQS, (z, y)
for ADMM); then s* = T(s) is applied once with autograd, and its gradient is corrected by
the implicit function theorem: the incoming gradient a becomes g = a + J' g (J the
Jacobian of T at the fixed point), solved by fixed-point iteration with vector-Jacobian
products, so memory does not grow with the forward iterations.

When D is the exact prox_{g/rho} and the penalty is fixed, PnP-ADMM is ADMM on the CVXPY
problem and converges to its solution (``tests/test_pnp.py`` checks this).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.fft as sfft
import scipy.sparse as sp
import torch
from cvxpy.expressions.expression import Expression
from torch import nn
from torch.autograd.function import once_differentiable

from cvxprox.functions.prox import SumSquares
from cvxprox.operators.linops import (
    Compose,
    Conv2D,
    Convolve1D,
    Diagonal,
    DiagonalGram,
    FiniteDiff,
    FourierGram,
    Gather,
    Gram,
    Identity,
    LinOp,
    MatrixOp,
    ScalarMultiple,
    Sum,
    TVDifferences,
    VStack,
)
from cvxprox.reductions.affine import NotStructured
from cvxprox.reductions.structure import StructureLowering
from cvxprox.solvers.admm.xupdate import NormalOperator

__all__ = ["PlugAndPlay", "torch_maps"]

ALGORITHMS = ("admm", "hqs")
MODES = ("unrolled", "deq")

# A batched linear map on tensors of shape (B, n) -> (B, m).
Map = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# Layout: CVXPY's column-major vectors <-> batched arrays
# --------------------------------------------------------------------------------------------


def _to_vector(array: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B, *shape) -> (B, prod(shape)), each entry vec(array[i]) in column-major order."""
    return array.permute(0, *range(ndim, 0, -1)).reshape(array.shape[0], -1)


def _to_array(vector: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(B, prod(shape)) -> (B, *shape), the inverse of ``_to_vector``."""
    ndim = len(shape)
    return vector.reshape(vector.shape[0], *shape[::-1]).permute(0, *range(ndim, 0, -1))


# --------------------------------------------------------------------------------------------
# LinOps as batched torch maps
# --------------------------------------------------------------------------------------------


class _NumpyProduct(torch.autograd.Function):
    """y_i = A x_i for each row x_i, by a NumPy product; the gradient by the adjoint.

    The fallback for operators without a torch form (e.g. ``FourierSample``): a loop over
    the batch in NumPy.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, apply: Callable, adjoint: Callable) -> torch.Tensor:
        ctx.maps = (apply, adjoint)
        rows = x.detach().cpu().numpy().astype(np.float64)
        out = np.stack([apply(row) for row in rows])
        return torch.from_numpy(out).to(dtype=x.dtype, device=x.device)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        apply, adjoint = ctx.maps
        return _NumpyProduct.apply(grad, adjoint, apply), None, None


def _sparse(matrix: sp.sparray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    coo = sp.coo_array(matrix)
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data)
    tensor = torch.sparse_coo_tensor(indices, values, coo.shape, check_invariants=False)
    return tensor.coalesce().to(dtype=dtype, device=device)


def _sparse_maps(matrix: sp.sparray, dtype: torch.dtype, device: torch.device) -> tuple[Map, Map]:
    M = _sparse(matrix, dtype, device)
    Mt = _sparse(sp.csr_array(matrix).T, dtype, device)
    return (lambda x: torch.sparse.mm(M, x.T).T), (lambda y: torch.sparse.mm(Mt, y.T).T)


def _conv2d_maps(op: Conv2D, dtype: torch.dtype, device: torch.device) -> tuple[Map, Map]:
    """Conv2D by real FFTs on arrays kept transposed (vec(X) is the C-order ravel of X').

    Full and same: a circular convolution on a grid of at least the full size, the output
    the (cropped) leading block; the adjoint zero-pads, correlates and keeps the image
    block. Circular: the kernel wrapped onto the image grid, centered at (p // 2, q // 2).
    """
    (m, n), (p, q) = op.image_shape, op.kernel.shape
    out_t = op.output_shape[::-1]
    kernel_t = op.kernel.T
    if op.mode == "circular":
        grid, start = (n, m), (0, 0)
        wrapped = np.zeros(grid)
        b, a = np.meshgrid(np.arange(q), np.arange(p), indexing="ij")
        np.add.at(wrapped, ((b - q // 2) % n, (a - p // 2) % m), kernel_t)
        kernel_t = wrapped
    else:
        grid = (n + q - 1, m + p - 1)
        start = (0, 0) if op.mode == "full" else ((q - 1) // 2, (p - 1) // 2)
    transform = torch.fft.rfft2(torch.as_tensor(kernel_t, device=device), s=grid)
    transform = transform.to(torch.complex128 if dtype == torch.float64 else torch.complex64)
    rows = slice(start[0], start[0] + out_t[0])
    cols = slice(start[1], start[1] + out_t[1])

    def matvec(x: torch.Tensor) -> torch.Tensor:
        xt = x.reshape(-1, n, m)
        full = torch.fft.irfft2(torch.fft.rfft2(xt, s=grid) * transform, s=grid)
        return full[:, rows, cols].reshape(x.shape[0], -1)

    def rmatvec(y: torch.Tensor) -> torch.Tensor:
        padded = y.new_zeros(y.shape[0], *grid)
        padded[:, rows, cols] = y.reshape(-1, *out_t)
        full = torch.fft.irfft2(torch.fft.rfft2(padded) * transform.conj(), s=grid)
        return full[:, :n, :m].reshape(y.shape[0], -1)

    return matvec, rmatvec


def _convolve1d_maps(op: Convolve1D, dtype: torch.dtype, device: torch.device) -> tuple[Map, Map]:
    """The full 1-D convolution by real FFTs of length m = n + p - 1."""
    m, n = op.shape
    transform = torch.fft.rfft(torch.as_tensor(op.kernel, device=device), n=m)
    transform = transform.to(torch.complex128 if dtype == torch.float64 else torch.complex64)

    def matvec(x: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft(torch.fft.rfft(x, n=m) * transform, n=m)

    def rmatvec(y: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft(torch.fft.rfft(y) * transform.conj(), n=m)[:, :n]

    return matvec, rmatvec


def torch_maps(op: LinOp, dtype: torch.dtype, device: torch.device) -> tuple[Map, Map]:
    """``(A x, A'y)`` as batched, differentiable torch maps on rows: (B, n) -> (B, m) and
    (B, m) -> (B, n).

    Native forms for the identity, diagonals, gathers, matrices (dense or sparse), finite
    differences (as sparse matrices), 1-D and 2-D convolutions (real FFTs) and the sums,
    stacks, scalings and compositions of these; any other operator goes through its NumPy
    products row by row (``_NumpyProduct``).
    """
    if isinstance(op, Identity):
        return (lambda x: x), (lambda y: y)
    if isinstance(op, Diagonal):
        d = torch.as_tensor(op.d, dtype=dtype, device=device)
        return (lambda x: d * x), (lambda y: d * y)
    if isinstance(op, ScalarMultiple):
        a = op.scale
        inner, inner_t = torch_maps(op.op, dtype, device)
        return (lambda x: a * inner(x)), (lambda y: a * inner_t(y))
    if isinstance(op, Gather):
        index = torch.as_tensor(op.index, device=device)
        n = op.shape[1]
        return (
            (lambda x: x[:, index]),
            (lambda y: y.new_zeros(y.shape[0], n).index_add(1, index, y)),
        )
    if isinstance(op, MatrixOp) and isinstance(op.matrix, np.ndarray):
        M = torch.as_tensor(op.matrix, dtype=dtype, device=device)
        return (lambda x: x @ M.T), (lambda y: y @ M)
    if isinstance(op, (MatrixOp, FiniteDiff, TVDifferences)):
        return _sparse_maps(op.to_sparse(), dtype, device)
    if isinstance(op, Conv2D):
        return _conv2d_maps(op, dtype, device)
    if isinstance(op, Convolve1D):
        return _convolve1d_maps(op, dtype, device)
    if isinstance(op, Compose):
        outer, outer_t = torch_maps(op.outer, dtype, device)
        inner, inner_t = torch_maps(op.inner, dtype, device)
        return (lambda x: outer(inner(x))), (lambda y: inner_t(outer_t(y)))
    if isinstance(op, Sum):
        parts = [torch_maps(o, dtype, device) for o in op.ops]
        return (
            (lambda x: sum(mv(x) for mv, _ in parts)),
            (lambda y: sum(rmv(y) for _, rmv in parts)),
        )
    if isinstance(op, VStack):
        parts = [torch_maps(o, dtype, device) for o in op.ops]
        sizes = [o.shape[0] for o in op.ops]
        return (
            (lambda x: torch.cat([mv(x) for mv, _ in parts], dim=1)),
            (
                lambda y: sum(
                    rmv(block) for (_, rmv), block in zip(parts, y.split(sizes, dim=1), strict=True)
                )
            ),
        )
    return (
        (lambda x: _NumpyProduct.apply(x, op.matvec, op.rmatvec)),
        (lambda y: _NumpyProduct.apply(y, op.rmatvec, op.matvec)),
    )


# --------------------------------------------------------------------------------------------
# The x-update: (Q + rho I) x = r
# --------------------------------------------------------------------------------------------


class _GramSolver:
    """(Q + rho I)^{-1} r for Q = T' diag(eig) T with T the identity, the unitary n-D DFT
    or the orthonormal n-D DCT-II (a ``Gram`` of ``cvxprox.operators.linops``); exact.

    Arrays are handled transposed, as in ``cvxprox.operators.linops``: vec(X) is the C-order ravel
    of X', an array of shape ``shape[::-1]``.
    """

    def __init__(self, gram: Gram, dtype: torch.dtype, device: torch.device) -> None:
        self.gram = gram
        if isinstance(gram, DiagonalGram):
            eig = gram.d
        else:
            self.shape_t = gram.shape[::-1]
            eig = gram.eig.T
            if isinstance(gram, FourierGram):
                eig = eig[..., : gram.shape[0] // 2 + 1]
            else:
                self.dct = [
                    torch.as_tensor(sfft.dct(np.eye(k), norm="ortho", axis=0), dtype=dtype)
                    .to(device)
                    .contiguous()
                    for k in self.shape_t
                ]
        self.eig = torch.as_tensor(np.ascontiguousarray(eig), dtype=dtype, device=device)

    def solve(self, r: torch.Tensor, rho: float, x0: torch.Tensor | None = None) -> torch.Tensor:
        """(Q + rho I)^{-1} r for r of shape (B, n); ``x0`` is not needed."""
        if isinstance(self.gram, DiagonalGram):
            return r / (self.eig + rho)
        batch = r.shape[0]
        xt = r.reshape(batch, *self.shape_t)
        dims = tuple(range(1, xt.ndim))
        if isinstance(self.gram, FourierGram):
            spectrum = torch.fft.rfftn(xt, dim=dims) / (self.eig + rho)
            return torch.fft.irfftn(spectrum, s=self.shape_t, dim=dims).reshape(batch, -1)
        # Contracting axis 1 moves the transformed axis last: after all axes, order is back.
        for C in self.dct:
            xt = torch.tensordot(xt, C, dims=([1], [1]))
        xt = xt / (self.eig + rho)
        for C in self.dct:
            xt = torch.tensordot(xt, C, dims=([1], [0]))
        return xt.reshape(batch, -1)


class _CGSolver:
    """(Q + rho I)^{-1} r by batched conjugate gradients, Jacobi-preconditioned when
    diag(Q) is known, until ||r_i - (Q + rho I) x_i|| <= tol ||r_i|| for every row i (or
    ``max_iterations``)."""

    def __init__(
        self, quad: Map, diagonal: torch.Tensor | None, tol: float, max_iterations: int
    ) -> None:
        self.quad, self.diagonal = quad, diagonal
        self.tol, self.max_iterations = tol, max_iterations

    def solve(self, r: torch.Tensor, rho: float, x0: torch.Tensor | None = None) -> torch.Tensor:
        """(Q + rho I)^{-1} r for r of shape (B, n), started from x0 (zero if None)."""

        def apply(v: torch.Tensor) -> torch.Tensor:
            return self.quad(v) + rho * v

        inverse = None if self.diagonal is None else 1.0 / (self.diagonal + rho)
        size = torch.linalg.vector_norm(r, dim=1)
        bound = max(self.tol, 10 * torch.finfo(r.dtype).eps) * size
        if x0 is None:
            x, res = torch.zeros_like(r), r.clone()
        else:
            x = torch.where(size[:, None] > 0, x0, 0.0)  # a zero row has the solution 0
            res = r - apply(x)
        z = res if inverse is None else inverse * res
        direction = z.clone()
        rz = (res * z).sum(dim=1)
        for _ in range(self.max_iterations):
            if bool(torch.all(torch.linalg.vector_norm(res, dim=1) <= bound)):
                break
            product = apply(direction)
            curvature = (direction * product).sum(dim=1)
            step = torch.where(curvature > 0, rz / curvature, torch.zeros_like(rz))
            x = x + step[:, None] * direction
            res = res - step[:, None] * product
            z = res if inverse is None else inverse * res
            rz_next = (res * z).sum(dim=1)
            beta = torch.where(rz > 0, rz_next / rz, torch.zeros_like(rz))
            direction = z + beta[:, None] * direction
            rz = rz_next
        return x


class _ShiftedSolve(torch.autograd.Function):
    """x = (Q + rho I)^{-1} r, Q symmetric PSD and constant.

    Backward: r_bar = (Q + rho I)^{-1} x_bar and rho_bar = -<r_bar, x> (from
    dx = -(Q + rho I)^{-1} x d rho), one more solve.
    """

    @staticmethod
    def forward(
        ctx: Any,
        r: torch.Tensor,
        rho: torch.Tensor,
        solver: _GramSolver | _CGSolver,
        x0: torch.Tensor | None,
    ) -> torch.Tensor:
        ctx.solver, ctx.rho = solver, float(rho)
        x = solver.solve(r, ctx.rho, x0)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, x_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        r_bar = ctx.solver.solve(x_bar, ctx.rho, None)
        return r_bar, -(r_bar * x).sum(), None, None


# --------------------------------------------------------------------------------------------
# The problem: regularizer terms, quadratic data terms, how p enters
# --------------------------------------------------------------------------------------------


@dataclass
class _DataTerm:
    """w ||A x - b(p)||^2 with b(p) = b(p0) - A_p (p - p0) (A_p None when b does not
    depend on p).

    ``affine`` is the operator of the term in the lowering with the Parameters as
    Variables (on [x; p] in that lowering's layout), so A_p p = affine([0; p]).
    """

    op: LinOp
    weight: float | np.ndarray
    affine: LinOp | None


@dataclass
class _Model:
    """What the splitting needs of the problem, in NumPy."""

    variable: cp.Variable
    d0: np.ndarray  # d(p0) = 2 sum_k A_k' W_k b_k(p0) - c, shape (n,)
    terms: list[_DataTerm]
    free_layout: list[tuple[int, int | None]]  # (size, index in parameters or None for x)
    p0: list[np.ndarray]  # the reference values, vectorized, one per parameter


def _substitute(
    expr: Expression, replace: dict[int, Expression], origin: dict[int, Expression]
) -> Expression:
    """``expr`` with the Parameters whose ids are keys of ``replace`` replaced.

    Subtrees without them are kept (the same objects); ``origin`` maps id() of each new
    node to the node it copies.
    """
    if isinstance(expr, cp.Parameter):
        return replace.get(expr.id, expr)
    if not any(p.id in replace for p in expr.parameters()):
        return expr
    copy = expr.copy([_substitute(arg, replace, origin) for arg in expr.args])
    origin[id(copy)] = expr
    return copy


def _nodes(expr: Expression) -> dict[int, Expression]:
    """id() -> node for every node of an expression tree."""
    found, stack = {}, [expr]
    while stack:
        node = stack.pop()
        found[id(node)] = node
        stack.extend(node.args)
    return found


def _check_problem(problem: cp.Problem, parameters: Sequence[cp.Parameter], reg: Any) -> None:
    """ValueError for problems, parameters and priors PlugAndPlay does not take."""
    if not isinstance(problem, cp.Problem) or not isinstance(problem.objective, cp.Minimize):
        raise ValueError("PlugAndPlay needs a cvxpy Problem with a Minimize objective")
    if problem.constraints:
        raise ValueError(
            f"PlugAndPlay handles unconstrained problems; this one has the constraint "
            f"{problem.constraints[0]} (a denoiser can enforce bounds instead)"
        )
    variables = problem.variables()
    if len(variables) != 1:
        names = ", ".join(v.name() for v in variables)
        raise ValueError(f"PlugAndPlay needs a problem in one variable, this one has {names}")
    if not isinstance(reg, Expression):
        raise ValueError(f"the prior's expression must be a CVXPY expression, got {reg!r}")
    known = {p.id for p in problem.parameters()}
    for p in parameters:
        if not isinstance(p, cp.Parameter) or p.id not in known:
            raise ValueError(f"{p} is not a Parameter of the problem")
    listed = {p.id for p in parameters}
    for p in problem.parameters():
        if p.id not in listed and p.value is None:
            raise ValueError(
                f"parameter {p.name()} has no value: give it one or list it in parameters"
            )
    in_reg = [p.name() for p in reg.parameters() if p.id in listed]
    if in_reg:
        raise ValueError(
            f"the prior's expression depends on parameter {in_reg[0]}; the listed parameters "
            "may enter only the data fidelity"
        )


def _build_model(problem: cp.Problem, parameters: Sequence[cp.Parameter], reg: Any) -> _Model:
    """Split the problem into the regularizer ``reg`` and quadratic data terms (see the
    module docstring); ValueError for what PlugAndPlay does not handle.

    The objective is lowered twice: with the listed Parameters at reference values p0
    (ones, minus ones for nonpositive Parameters), which gives the operators A_k, the
    weights and b_k(p0), and with them replaced by Variables, which gives the operators
    A_p,k with b_k(p) = b_k(p0) - A_p,k (p - p0). Both lowerings walk the same tree, so
    their terms correspond.
    """
    _check_problem(problem, parameters, reg)
    (variable,) = problem.variables()
    objective = problem.objective.expr
    origin: dict[int, Expression] = {}
    p0 = [
        np.full(p.shape, -1.0 if p.is_nonpos() and not p.is_nonneg() else 1.0) for p in parameters
    ]
    reference = {p.id: cp.Constant(v) for p, v in zip(parameters, p0, strict=True)}
    free = {p.id: cp.Variable(p.shape, name=p.name()) for p in parameters}
    at_reference = _substitute(objective, reference, origin)
    try:
        base = StructureLowering(cp.Problem(cp.Minimize(at_reference)), bounds=False).lower()
    except NotStructured as err:
        raise ValueError(f"the problem has no structured (prox) form: {err}") from None
    try:
        affine = StructureLowering(
            cp.Problem(cp.Minimize(_substitute(objective, free, {}))), bounds=False
        ).lower()
    except NotStructured as err:
        raise ValueError(
            f"the parameters may enter only the constants of the data fidelity: {err}"
        ) from None
    base_terms, affine_terms = base.program.terms, affine.program.terms
    if [t.label for t in base_terms] != [t.label for t in affine_terms]:
        raise ValueError(
            "an objective term depends on the parameters alone (a constant in X): drop it"
        )

    reg_terms = {i for i, path in enumerate(base.sources) if id(reg) in path}
    if not reg_terms:
        raise ValueError(
            f"the prior's expression {reg} is not a term of the objective: pass the expression "
            "object that appears in it (e.g. reg = lam * cp.tv(X); cp.Minimize(fit + reg)), "
            "one with a proximal form (not affine)"
        )
    names = _nodes(objective) | origin
    start = affine.layout.offsets[variable.id]
    probe = np.random.default_rng(0).standard_normal
    terms, d0 = [], -base.program.c
    for i, term in enumerate(base_terms):
        if i in reg_terms:
            continue
        if not isinstance(term.function, SumSquares):
            source = next(
                (str(names[key]) for key in reversed(base.sources[i]) if key in names),
                term.label,
            )
            raise ValueError(
                f"the objective term {source} is a {term.function.describe()} term; besides "
                "the prior, PlugAndPlay handles quadratic terms only (sum_squares, "
                "quad_over_lin(., const), squares of affine expressions)"
            )
        # p enters the term when the adjoint of its operator reaches p's columns.
        op = affine_terms[i].op
        columns = op.rmatvec(probe(op.shape[0]))
        columns[start : start + variable.size] = 0.0
        weight = term.function.weight
        terms.append(_DataTerm(term.op, weight, op if np.any(columns != 0.0) else None))
        d0 = d0 + 2.0 * term.op.rmatvec(weight * term.b)
    slot = {free[p.id].id: k for k, p in enumerate(parameters)}
    layout = [(v.size, slot.get(v.id)) for v in affine.layout.variables]
    return _Model(variable, d0, terms, layout, [v.flatten(order="F") for v in p0])


class _TorchProgram:
    """The model's constants and operators on one dtype and device.

    ``data(p)`` is d(p), ``solver`` the x-update: ``_GramSolver`` when the weighted Grams
    of the A_k add up to one diagonal, FFT- or DCT-diagonal Gram, else ``_CGSolver`` on
    Q v = sum_k A_k'(2 w_k A_k v).
    """

    def __init__(
        self,
        model: _Model,
        dtype: torch.dtype,
        device: torch.device,
        cg_tol: float,
        cg_iterations: int,
    ) -> None:
        self.layout = model.free_layout
        self.d0 = torch.as_tensor(model.d0, dtype=dtype, device=device)
        self.p0 = [torch.as_tensor(v, dtype=dtype, device=device) for v in model.p0]
        maps, self.affine = [], []
        for term in model.terms:
            weight = torch.as_tensor(2.0 * term.weight, dtype=dtype, device=device)
            matvec, rmatvec = torch_maps(term.op, dtype, device)
            maps.append((matvec, rmatvec, weight))
            if term.affine is not None:
                self.affine.append((rmatvec, weight, torch_maps(term.affine, dtype, device)[0]))
        n = model.d0.size
        normal = NormalOperator(
            n,
            [t.op for t in model.terms],
            [2.0 * t.weight for t in model.terms],
            np.ones(len(model.terms)),
        )
        total: Gram | None = DiagonalGram(0.0, n)
        for gram in normal.weighted_grams():
            total = None if total is None or gram is None else total + gram
        if total is not None:
            self.solver: _GramSolver | _CGSolver = _GramSolver(total, dtype, device)
            return

        def quad(v: torch.Tensor) -> torch.Tensor:
            return sum(rmatvec(weight * matvec(v)) for matvec, rmatvec, weight in maps)

        diagonal = normal.jacobi_diagonal()
        if diagonal is not None:
            diagonal = torch.as_tensor(diagonal, dtype=dtype, device=device)
        self.solver = _CGSolver(quad, diagonal, cg_tol, cg_iterations)

    def data(self, values: list[torch.Tensor], batch: int) -> torch.Tensor:
        """d(p) = d(p0) - sum_k A_k'(2 w_k A_p,k (p - p0)), shape (B, n), for the
        parameters' vectors ``values`` (each (B, size))."""
        d = self.d0.expand(batch, -1)
        if not self.affine:
            return d
        blocks = [
            self.d0.new_zeros(batch, size) if k is None else values[k] - self.p0[k]
            for size, k in self.layout
        ]
        stacked = torch.cat(blocks, dim=1)
        for rmatvec, weight, affine in self.affine:
            d = d - rmatvec(weight * affine(stacked))
        return d


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------


class PlugAndPlay(nn.Module):
    """A CVXPY problem solved by plug-and-play ADMM or HQS with a learned denoiser.

    Parameters
    ----------
    problem : cvxpy.Problem
        ``minimize f(X; p) + reg``, unconstrained, in one variable X; f a sum of quadratic
        terms (see the module docstring).
    parameters : sequence of cvxpy.Parameter
        The Parameters given at each call, in order; they may enter only the constants of
        f, affinely. Other Parameters keep the values they have now.
    prior : (cvxpy Expression, torch.nn.Module)
        ``(reg, denoiser)``: the regularizer, the expression object written in the
        objective (e.g. ``lam * cp.tv(X)``), and the module that replaces its proximal
        operator, mapping a batch of shape (B, *X.shape) to one of the same shape.
    iterations : int
        Unrolled: the number of iterations. DEQ: the most forward iterations, and the most
        fixed-point iterations of the backward pass.
    algorithm : {"admm", "hqs"}
    mode : {"unrolled", "deq"}
    learn_penalties : bool
        Whether the penalties are ``nn.Parameter``s (one per iteration when unrolled, one
        in DEQ mode), parameterized by their logarithm; otherwise a buffer.
    penalty : float or sequence of float
        The initial penalty rho > 0; unrolled, also one value per iteration.
    tol : float
        DEQ: the relative change ||s_{k+1} - s_k|| / ||s_k|| (largest over the batch) at
        which the forward iteration stops, and the backward one likewise.
    cg_tol, cg_iterations : float, int
        Conjugate gradients (when the x-update has no exact solve): relative residual and
        iteration cap per solve.

    Calling the module with one tensor per parameter, of the parameter's shape or with a
    leading batch dimension B (all batched tensors sharing B), returns the estimate of X,
    of shape X.shape or (B, *X.shape), in the dtype of the inputs. After a DEQ call,
    ``stats`` holds the forward (and, after a backward, backward) iteration counts and
    final relative changes.
    """

    def __init__(
        self,
        problem: cp.Problem,
        parameters: Sequence[cp.Parameter],
        prior: tuple[Expression, nn.Module],
        iterations: int = 30,
        algorithm: str = "admm",
        mode: str = "unrolled",
        learn_penalties: bool = True,
        penalty: float | Sequence[float] = 1.0,
        *,
        tol: float = 1e-5,
        cg_tol: float = 1e-8,
        cg_iterations: int = 500,
    ) -> None:
        super().__init__()
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
        if not (isinstance(prior, tuple) and len(prior) == 2):
            raise ValueError("prior must be a pair (regularizer expression, denoiser module)")
        reg, denoiser = prior
        if not isinstance(denoiser, nn.Module):
            raise ValueError(f"the denoiser must be a torch.nn.Module, got {type(denoiser)}")
        self.cvxpy_parameters = list(parameters)
        self.model = _build_model(problem, self.cvxpy_parameters, reg)
        self.shape = tuple(self.model.variable.shape)
        self.denoiser = denoiser
        self.iterations, self.algorithm, self.mode = iterations, algorithm, mode
        self.tol, self.cg_tol, self.cg_iterations = tol, cg_tol, cg_iterations
        self.stats: dict[str, float] = {}
        self._programs: dict[tuple[torch.dtype, torch.device], _TorchProgram] = {}

        rho = np.asarray(penalty, dtype=np.float64)
        count = iterations if mode == "unrolled" else 1
        if rho.ndim > 1 or (rho.ndim == 1 and rho.size != count) or not np.all(rho > 0):
            raise ValueError(
                f"penalty must be a positive number or {count} positive numbers, got {penalty!r}"
            )
        log_rho = torch.log(torch.as_tensor(np.broadcast_to(rho, (count,)).copy()))
        log_rho = log_rho.to(torch.get_default_dtype())
        if mode == "deq":
            log_rho = log_rho[0]
        if learn_penalties:
            self.log_penalty = nn.Parameter(log_rho)
        else:
            self.register_buffer("log_penalty", log_rho)

    @property
    def penalties(self) -> torch.Tensor:
        """rho = exp(log_penalty): shape (iterations,) unrolled, () in DEQ mode."""
        return self.log_penalty.exp()

    def forward(self, *values: torch.Tensor) -> torch.Tensor:
        """The estimate of X, shape X.shape, or (B, *X.shape) for batched inputs."""
        vectors, batched, dtype, device = self._inputs(values)
        batch = vectors[0].shape[0] if vectors else 1
        key = (dtype, device)
        if key not in self._programs:
            self._programs[key] = _TorchProgram(
                self.model, dtype, device, self.cg_tol, self.cg_iterations
            )
        program = self._programs[key]
        d = program.data(vectors, batch)
        state = d.new_zeros(batch, 2 if self.algorithm == "admm" else 1, d.shape[1])
        if self.mode == "unrolled":
            for rho in self.penalties:
                state = self._step(state, rho, d, program)
        else:
            state = self._equilibrium(state, d, program)
        estimate = _to_array(state[:, 0], self.shape)
        return estimate if batched else estimate[0]

    def _inputs(
        self, values: Sequence[Any]
    ) -> tuple[list[torch.Tensor], bool, torch.dtype, torch.device]:
        """The parameters' values as (B, size) vectors (unbatched ones broadcast), whether
        any was batched, and the dtype and device to compute in."""
        params = self.cvxpy_parameters
        if len(values) != len(params):
            names = ", ".join(p.name() for p in params) or "none"
            raise ValueError(
                f"expected {len(params)} tensors (one per parameter: {names}), got {len(values)}"
            )
        tensors = [torch.as_tensor(v) for v in values]
        reference = tensors[0] if tensors else self.log_penalty
        dtype = reference.dtype if reference.is_floating_point() else torch.get_default_dtype()
        device = reference.device
        batch, vectors = None, []
        for param, tensor in zip(params, tensors, strict=True):
            shape = tuple(param.shape)
            if tuple(tensor.shape) == shape:
                tensor = tensor.unsqueeze(0)
            elif tensor.ndim == len(shape) + 1 and tuple(tensor.shape[1:]) == shape:
                if batch is not None and tensor.shape[0] != batch:
                    raise ValueError(
                        f"parameter {param.name()} has a batch of {tensor.shape[0]}, "
                        f"an earlier one {batch}"
                    )
                batch = tensor.shape[0]
            else:
                raise ValueError(
                    f"parameter {param.name()} has shape {shape}: expected a tensor of shape "
                    f"{shape} or (B, *{shape}), got {tuple(tensor.shape)}"
                )
            vectors.append(_to_vector(tensor.to(dtype=dtype, device=device), len(shape)))
        if batch is not None:
            vectors = [v.expand(batch, -1) for v in vectors]
        return vectors, batch is not None, dtype, device

    def _denoise(self, v: torch.Tensor) -> torch.Tensor:
        """The denoiser on the rows of v (B, n), as arrays of X's shape."""
        image = _to_array(v, self.shape)
        out = self.denoiser(image)
        if out.shape != image.shape:
            raise ValueError(
                f"the denoiser mapped a batch of shape {tuple(image.shape)} to "
                f"{tuple(out.shape)}; it must keep the shape"
            )
        return _to_vector(out, len(self.shape))

    def _step(
        self, state: torch.Tensor, rho: torch.Tensor, d: torch.Tensor, program: _TorchProgram
    ) -> torch.Tensor:
        """One iteration T: state (B, 2, n) = (z, y) for ADMM, (B, 1, n) = z for HQS."""
        z = state[:, 0]
        start = z.detach()  # warm start of conjugate gradients (x = z at a fixed point)
        if self.algorithm == "hqs":
            x = _ShiftedSolve.apply(d + rho * z, rho, program.solver, start)
            return self._denoise(x).unsqueeze(1)
        y = state[:, 1]
        x = _ShiftedSolve.apply(d + rho * z - y, rho, program.solver, start)
        z_next = self._denoise(x + y / rho)
        return torch.stack([z_next, y + rho * (x - z_next)], dim=1)

    def _equilibrium(
        self, state: torch.Tensor, d: torch.Tensor, program: _TorchProgram
    ) -> torch.Tensor:
        """The fixed point s* = T(s*), with the implicit gradient attached."""
        rho = self.penalties
        count, change = 0, math.inf
        with torch.no_grad():
            while count < self.iterations and change >= self.tol:
                following = self._step(state, rho, d, program)
                change = _relative_change(following, state)
                state, count = following, count + 1
        self.stats = {"forward_iterations": count, "forward_change": change}
        fixed = self._step(state, rho, d, program)
        if not fixed.requires_grad:
            return fixed
        point = state.clone().requires_grad_()
        image = self._step(point, rho, d, program)

        def implicit(grad: torch.Tensor) -> torch.Tensor:
            # g = grad + J'g at the fixed point, by fixed-point iteration on g.
            g, count, change = grad, 0, math.inf
            while count < self.iterations and change >= self.tol:
                (vjp,) = torch.autograd.grad(image, point, g, retain_graph=True)
                following = grad + vjp
                change = _relative_change(following, g)
                g, count = following, count + 1
            self.stats.update(backward_iterations=count, backward_change=change)
            return g

        fixed.register_hook(implicit)
        return fixed


def _relative_change(following: torch.Tensor, current: torch.Tensor) -> float:
    """max over the batch of ||following_i - current_i|| / ||current_i|| (0 / 0 = 0)."""
    dims = tuple(range(1, current.ndim))
    step = torch.linalg.vector_norm(following - current, dim=dims)
    size = torch.linalg.vector_norm(current, dim=dims)
    ratio = torch.where(size > 0, step / size, torch.where(step > 0, math.inf, 0.0))
    return float(ratio.max())
