"""Affine CVXPY expressions evaluated in torch, differentiable in their parameters.

``evaluate(expr, leaves)`` computes the value of an affine expression from torch tensors
for its variables and parameters (CVXPY's shapes, values in the usual array layout), so
that autograd gives derivatives with respect to the parameters. It covers the atoms that
build the arguments of norms and losses: sums, negation, products with constants and
parameters (``@``, ``multiply``, division by a constant), indexing, reshapes and
transposes, broadcasting, ``sum``, ``hstack``/``vstack``, ``cumsum``, ``trace``, ``diag`` and
``convolve``. Any other atom raises ``UnsupportedExpression``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch
from cvxpy.atoms.affine.add_expr import AddExpression
from cvxpy.atoms.affine.binary_operators import DivExpression, MulExpression, multiply
from cvxpy.atoms.affine.broadcast_to import broadcast_to
from cvxpy.atoms.affine.conv import convolve
from cvxpy.atoms.affine.cumsum import cumsum
from cvxpy.atoms.affine.diag import diag_mat, diag_vec
from cvxpy.atoms.affine.hstack import Hstack
from cvxpy.atoms.affine.index import index, special_index
from cvxpy.atoms.affine.promote import Promote
from cvxpy.atoms.affine.reshape import reshape
from cvxpy.atoms.affine.sum import Sum
from cvxpy.atoms.affine.trace import Trace
from cvxpy.atoms.affine.transpose import transpose
from cvxpy.atoms.affine.unary_operators import NegExpression
from cvxpy.atoms.affine.vstack import Vstack
from cvxpy.expressions.constants.constant import Constant
from cvxpy.expressions.expression import Expression
from cvxpy.expressions.leaf import Leaf


class UnsupportedExpression(Exception):
    """An atom ``evaluate`` has no torch rule for (the atom's name)."""


def evaluate(expr: Expression, leaves: dict[int, torch.Tensor]) -> torch.Tensor:
    """The value of ``expr`` (shape ``expr.shape``) from ``leaves`` (leaf id -> tensor).

    Constants are converted on the fly; variables and parameters must be in ``leaves``.
    """
    if isinstance(expr, Leaf):
        if isinstance(expr, Constant):
            return _constant(expr.value)
        if expr.id not in leaves:
            raise UnsupportedExpression(f"no value for {expr.name()}")
        return leaves[expr.id]
    rule = _rule(expr)
    if rule is None:
        raise UnsupportedExpression(type(expr).__name__)
    return rule(expr, [evaluate(arg, leaves) for arg in expr.args])


def _constant(value: object) -> torch.Tensor:
    if sp.issparse(value):
        value = value.toarray()
    return torch.as_tensor(np.asarray(value, dtype=np.float64))


def _fortran_reshape(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """numpy's reshape(order="F")."""
    flat = t.permute(*reversed(range(t.ndim))).reshape(-1) if t.ndim > 1 else t.reshape(-1)
    if len(shape) <= 1:
        return flat.reshape(shape)
    return flat.reshape(tuple(reversed(shape))).permute(*reversed(range(len(shape))))


def _reshape(expr: reshape, args: list[torch.Tensor]) -> torch.Tensor:
    if expr.order == "C":
        return args[0].reshape(expr.shape)
    return _fortran_reshape(args[0], expr.shape)


def _sum(expr: Sum, args: list[torch.Tensor]) -> torch.Tensor:
    (t,) = args
    if expr.axis is None:
        out = t.sum()
        return out.reshape((1,) * t.ndim) if expr.keepdims else out
    return t.sum(dim=expr.axis, keepdim=expr.keepdims)


def _special_index(expr: special_index, args: list[torch.Tensor]) -> torch.Tensor:
    key = tuple(
        torch.as_tensor(np.asarray(k)) if isinstance(k, (np.ndarray, list)) else k
        for k in (expr.key if isinstance(expr.key, tuple) else (expr.key,))
    )
    return args[0][key].reshape(expr.shape)


def _mul(expr: MulExpression, args: list[torch.Tensor]) -> torch.Tensor:
    lhs, rhs = args
    if lhs.ndim == 0 or rhs.ndim == 0:
        return lhs * rhs
    return lhs @ rhs


def _convolve(expr: convolve, args: list[torch.Tensor]) -> torch.Tensor:
    kernel, signal = (a.reshape(-1) for a in args)
    k = kernel.numel()
    padded = torch.nn.functional.pad(signal, (k - 1, k - 1))
    out = torch.nn.functional.conv1d(padded[None, None], kernel.flip(0)[None, None])
    return out.reshape(expr.shape)


def _promote(expr: Promote, args: list[torch.Tensor]) -> torch.Tensor:
    return args[0].reshape(()).expand(expr.shape)


def _transpose(expr: transpose, args: list[torch.Tensor]) -> torch.Tensor:
    t = args[0]
    axes = expr.axes if expr.axes is not None else tuple(reversed(range(t.ndim)))
    return t.permute(*axes)


def _hstack(expr: Hstack, args: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(args, dim=0 if args[0].ndim == 1 else 1)


def _vstack(expr: Vstack, args: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([a.reshape(1, -1) if a.ndim <= 1 else a for a in args], dim=0)


def _cumsum(expr: cumsum, args: list[torch.Tensor]) -> torch.Tensor:
    """Along an axis, or (axis None) over the entries in C order, as CVXPY does."""
    if expr.axis is None:
        return args[0].reshape(-1).cumsum(dim=0).reshape(expr.shape)
    return args[0].cumsum(dim=expr.axis).reshape(expr.shape)


_RULES: dict[type, Callable[[Expression, list[torch.Tensor]], torch.Tensor]] = {
    AddExpression: lambda e, a: sum(a[1:], a[0]).expand(e.shape),
    NegExpression: lambda e, a: -a[0],
    MulExpression: _mul,
    multiply: lambda e, a: (a[0] * a[1]).expand(e.shape),
    DivExpression: lambda e, a: (a[0] / a[1]).expand(e.shape),
    index: lambda e, a: a[0][e.key].reshape(e.shape),
    special_index: _special_index,
    reshape: _reshape,
    transpose: _transpose,
    Promote: _promote,
    broadcast_to: lambda e, a: a[0].expand(e.shape),
    Sum: _sum,
    Hstack: _hstack,
    Vstack: _vstack,
    cumsum: _cumsum,
    Trace: lambda e, a: torch.diagonal(a[0]).sum(),
    diag_vec: lambda e, a: torch.diag(a[0].reshape(-1), e.k),
    diag_mat: lambda e, a: torch.diagonal(a[0], e.k),
    convolve: _convolve,
}


def _rule(expr: Expression) -> Callable | None:
    for cls in type(expr).__mro__:
        if cls in _RULES:
            return _RULES[cls]
    return None
