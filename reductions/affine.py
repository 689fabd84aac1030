"""Affine CVXPY expressions -> matrix-free operators on the stacked variable vector.

``AffineLowering(layout).lower(expr)`` returns an ``Affine``: a LinOp ``A`` (or None for a
constant) and a constant vector ``a`` such that the column-major flattening of ``expr``
equals ``A x + a`` for the stacked variable vector x of ``VariableLayout``.

Operators keep the structure the user wrote: ``convolve`` becomes an FFT convolution,
``conv2d`` and ``fourier_sample`` their FFT operators, ``multiply`` by a constant a
diagonal, ``A @ x`` a matrix operator, ``diff`` a finite difference, and every atom that
only rearranges entries (indexing, slicing, reshape, transpose, stacks, promotion) a
gather found by evaluating the atom on the entries' indices. Any other affine atom is
applied through its sparse Jacobian (CVXPY's own canonicalization of that atom), so every
affine expression is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from cvxpy.atoms.affine.add_expr import AddExpression
from cvxpy.atoms.affine.affine_atom import AffAtom
from cvxpy.atoms.affine.binary_operators import (
    DivExpression,
    MulExpression,
    multiply,
)
from cvxpy.atoms.affine.broadcast_to import broadcast_to
from cvxpy.atoms.affine.concatenate import Concatenate
from cvxpy.atoms.affine.conv import convolve
from cvxpy.atoms.affine.diag import diag_mat
from cvxpy.atoms.affine.hstack import Hstack
from cvxpy.atoms.affine.index import index, special_index
from cvxpy.atoms.affine.promote import Promote
from cvxpy.atoms.affine.reshape import reshape
from cvxpy.atoms.affine.sum import Sum
from cvxpy.atoms.affine.transpose import transpose
from cvxpy.atoms.affine.unary_operators import NegExpression
from cvxpy.atoms.affine.upper_tri import upper_tri
from cvxpy.atoms.affine.vstack import Vstack
from cvxpy.expressions.expression import Expression
from cvxpy.expressions.variable import Variable

from cvxprox.atoms import conv2d as Conv2DAtom
from cvxprox.atoms import fourier_sample as FourierSampleAtom
from cvxprox.operators.linops import (
    Compose,
    Conv2D,
    Convolve1D,
    Diagonal,
    FiniteDiff,
    FourierSample,
    Gather,
    Identity,
    LinOp,
    MatrixOp,
    ScalarMultiple,
    TVDifferences,
    VStack,
    walk,
)
from cvxprox.operators.linops import (
    Sum as SumOp,
)

# Atoms whose output entries are a selection (with repetition) of their inputs' entries.
_SELECTIONS = (
    index,
    special_index,
    transpose,
    reshape,
    Hstack,
    Vstack,
    Concatenate,
    Promote,
    broadcast_to,
    upper_tri,
    diag_mat,
)


def flat(value: object, size: int) -> np.ndarray:
    """The column-major flattening of a numeric value, broadcast to ``size`` entries."""
    if sp.issparse(value):
        value = value.toarray()
    arr = np.asarray(value, dtype=np.float64)
    vec = arr.flatten(order="F")
    if vec.size == 1 and size != 1:
        return np.full(size, vec[0])
    return vec


class NotStructured(Exception):
    """The problem has a part the structure-preserving reduction does not keep."""


class VariableLayout:
    """Where each CVXPY variable lives in the stacked vector x.

    Parameters
    ----------
    variables : list of cvxpy Variable
        In the problem's order; each occupies ``size`` consecutive entries (column-major).
    """

    def __init__(self, variables: list[Variable]) -> None:
        self.variables = list(variables)
        self.offsets: dict[int, int] = {}
        start = 0
        for var in self.variables:
            self.offsets[var.id] = start
            start += var.size
        self.n = start

    def select(self, var: Variable) -> LinOp:
        """The operator x -> vec(var)."""
        start = self.offsets[var.id]
        if start == 0 and var.size == self.n:
            return Identity(self.n)
        return Gather(np.arange(start, start + var.size), self.n)

    def split(self, x: np.ndarray) -> dict[int, np.ndarray]:
        """Variable id -> value (in the variable's shape) of a stacked vector."""
        values = {}
        for var in self.variables:
            start = self.offsets[var.id]
            block = x[start : start + var.size]
            values[var.id] = block.reshape(var.shape, order="F") if var.shape else block[0]
        return values

    def split_batch(self, xs: np.ndarray) -> dict[int, np.ndarray]:
        """Variable id -> value, shape (B, *var.shape), of a batch of stacked vectors (B, n)."""
        return {
            var.id: xs[:, self.offsets[var.id] : self.offsets[var.id] + var.size].reshape(
                (xs.shape[0], *var.shape), order="F"
            )
            for var in self.variables
        }


@dataclass
class Affine:
    """The affine map x -> op(x) + const (op None: a constant), of output size ``size``."""

    op: LinOp | None
    const: np.ndarray

    @property
    def size(self) -> int:
        return self.const.size

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return self.const if self.op is None else self.op.matvec(x) + self.const


class AffineLowering:
    """Lowers affine expressions to ``Affine`` maps over a VariableLayout."""

    def __init__(self, layout: VariableLayout) -> None:
        self.layout = layout

    def lower(self, expr: Expression) -> Affine:
        """vec(expr) = op(x) + const."""
        if expr.is_constant():
            return Affine(None, flat(expr.value, expr.size))
        if isinstance(expr, Variable):
            return Affine(self.layout.select(expr), np.zeros(expr.size))
        if not expr.is_affine():
            raise NotStructured(
                f"{type(expr).__name__} is not affine where an affine argument is needed"
            )
        if isinstance(expr, AddExpression):
            return self._add(expr)
        if isinstance(expr, NegExpression):
            return scale(self.lower(expr.args[0]), -1.0)
        if isinstance(expr, (multiply, MulExpression, DivExpression)):
            product = self._product(expr)
            if product is not None:
                return product
        if isinstance(expr, convolve) and expr.args[0].is_constant():
            arg = self.lower(expr.args[1])
            kernel = flat(expr.args[0].value, expr.args[0].size)
            return compose(Convolve1D(kernel, arg.size), arg)
        if isinstance(expr, Conv2DAtom):
            kernel, image = expr.args
            conv = Conv2D(np.asarray(kernel.value, dtype=np.float64), image.shape, expr.mode)
            return compose(conv, self.lower(image))
        if isinstance(expr, FourierSampleAtom):
            (mask,) = expr.get_data()
            return compose(FourierSample(mask), self.lower(expr.args[0]))
        if isinstance(expr, Sum) and expr.axis is None:
            arg = self.lower(expr.args[0])
            ones = MatrixOp(sp.csr_array(np.ones((1, arg.size))))
            return compose(ones, arg)
        if isinstance(expr, Vstack):
            differences = self._tv_differences(expr)
            if differences is not None:
                return differences
        if isinstance(expr, _SELECTIONS):
            return self._selection(expr)
        if isinstance(expr, AffAtom):
            return self._jacobian(expr)
        raise NotStructured(f"cannot lower the affine expression {type(expr).__name__}")

    def _add(self, expr: AddExpression) -> Affine:
        parts = [self.lower(arg) for arg in expr.args]
        size = expr.size
        parts = [broadcast(p, size) for p in parts]
        total = parts[0]
        for part in parts[1:]:
            total = add(total, part)
        difference = self._finite_difference(total)
        return total if difference is None else difference

    def _product(self, expr: Expression) -> Affine | None:
        """Products and quotients with a constant factor, None when both are variable."""
        lhs, rhs = expr.args
        if isinstance(expr, DivExpression):
            if not rhs.is_constant():
                return None
            denom = flat(rhs.value, rhs.size)
            arg = broadcast(self.lower(lhs), expr.size)
            return elementwise(arg, 1.0 / denom)
        if isinstance(expr, multiply):
            const, var = (lhs, rhs) if lhs.is_constant() else (rhs, lhs)
            if not const.is_constant():
                return None
            arg = broadcast(self.lower(var), expr.size)
            return elementwise(arg, flat(const.value, const.size))
        # Matrix product: only constant @ vector keeps a matrix operator.
        if lhs.is_constant() and rhs.ndim <= 1 and lhs.ndim <= 2:
            if lhs.ndim == 0 or rhs.ndim == 0:
                return elementwise(broadcast(self.lower(rhs), expr.size), flat(lhs.value, 1))
            matrix = lhs.value
            matrix = matrix if sp.issparse(matrix) else np.atleast_2d(np.asarray(matrix, float))
            return compose(MatrixOp(matrix), self.lower(rhs))
        return self._jacobian(expr)

    def _tv_differences(self, expr: Vstack) -> Affine | None:
        """``cp.tv(X)``'s stack of X's differences (``vstack([reshape(X[:-1, 1:] -
        X[:-1, :-1], (1, L), 'F'), reshape(X[1:, :-1] - X[:-1, :-1], (1, L), 'F')])``, one
        image) as the operator ``TVDifferences`` applied to X: the generic selections
        of a 1024 x 1024 image cost some 0.25 s, and its matrix is not built at all
        (``to_sparse`` builds it where a method needs one). None for any other
        stack."""
        if len(expr.args) != 2:
            return None
        pairs = []
        for part in expr.args:
            if not (isinstance(part, reshape) and part.order == "F" and part.shape[0] == 1):
                return None
            total = part.args[0]
            if not (isinstance(total, AddExpression) and len(total.args) == 2):
                return None
            ahead, behind = total.args
            if not (isinstance(behind, NegExpression) and isinstance(ahead, index)):
                return None
            behind = behind.args[0]
            if not isinstance(behind, index) or behind.args[0] is not ahead.args[0]:
                return None
            pairs.append((ahead, behind))
        image = pairs[0][0].args[0]
        if image.ndim != 2 or any(a.args[0] is not image for pair in pairs for a in pair):
            return None
        r, c = image.shape
        if r < 2 or c < 2 or pairs[0][0].shape != (r - 1, c - 1):
            return None
        keys = [tuple(_span(k) for k in a.key) for pair in pairs for a in pair]
        expected = [
            ((0, r - 1), (1, c)),
            ((0, r - 1), (0, c - 1)),
            ((1, r), (0, c - 1)),
            ((0, r - 1), (0, c - 1)),
        ]
        if keys != expected:
            return None
        return compose(TVDifferences(r, c), self.lower(image))

    def _selection(self, expr: AffAtom) -> Affine:
        """Entries picked from the arguments: evaluate the atom on the entries' indices."""
        parts = [self.lower(arg) for arg in expr.args]
        codes, start = [], 0
        for arg in expr.args:
            codes.append(
                np.arange(start, start + arg.size, dtype=np.float64).reshape(arg.shape, order="F")
                if arg.shape
                else np.float64(start)
            )
            start += arg.size
        picked = np.asarray(expr.numeric(codes)).flatten(order="F").astype(np.int64)
        stacked = stack(parts, self.layout.n)
        if picked.size == start and np.array_equal(picked, np.arange(start)):
            return stacked
        return gather(stacked, picked)

    def _jacobian(self, expr: AffAtom) -> Affine:
        """Any affine atom, through its sparse Jacobian with respect to each argument."""
        parts = [self.lower(arg) for arg in expr.args]
        grads = expr._grad([np.zeros(arg.shape) for arg in expr.args])
        const = flat(
            expr.numeric(
                [
                    p.const.reshape(a.shape, order="F") if a.shape else p.const[0]
                    for p, a in zip(parts, expr.args, strict=True)
                ]
            ),
            expr.size,
        )
        ops = []
        for part, grad in zip(parts, grads, strict=True):
            if part.op is None or grad is None:
                continue
            jac = sp.csr_array(grad.T)
            ops.append(Compose(MatrixOp(jac), part.op))
        op = ops[0] if len(ops) == 1 else SumOp(ops)
        return Affine(op, const)

    def _finite_difference(self, total: Affine) -> Affine | None:
        """Recognize ``X[1:] - X[:-1]`` (what ``cp.diff`` builds) as a FiniteDiff of X."""
        op = total.op
        if not isinstance(op, SumOp) or len(op.ops) != 2:
            return None
        plus, minus = op.ops
        if isinstance(plus, ScalarMultiple):
            plus, minus = minus, plus
        if not (
            isinstance(plus, Gather)
            and isinstance(minus, ScalarMultiple)
            and minus.scale == -1.0
            and isinstance(minus.op, Gather)
        ):
            return None
        for var in self.layout.variables:
            if var.ndim not in (1, 2) or var.size < 2:
                continue
            # A difference along an axis has one entry fewer per line of it.
            axes = [
                a for a in range(var.ndim) if plus.index.size == var.size - var.size // var.shape[a]
            ]
            if not axes:
                continue
            start = self.layout.offsets[var.id]
            codes = start + np.arange(var.size).reshape(var.shape, order="F")
            for axis in axes:
                ahead = np.delete(codes, 0, axis=axis).flatten(order="F")
                behind = np.delete(codes, -1, axis=axis).flatten(order="F")
                if np.array_equal(plus.index, ahead) and np.array_equal(minus.op.index, behind):
                    diff, select = FiniteDiff(var.shape, axis), self.layout.select(var)
                    op = diff if isinstance(select, Identity) else Compose(diff, select)
                    return Affine(op, total.const)
        return None


# Operators that are cheap sparse matrices (a few nonzeros per row): a tree made only of
# these is assembled into one sparse matrix, whose products cost one pass over its
# nonzeros instead of one NumPy call per node.
_SPARSE_LEAVES = (Identity, Diagonal, Gather, FiniteDiff, TVDifferences)
_SPARSE_NODES = (ScalarMultiple, Compose, SumOp, VStack)


def _span(key: object) -> tuple[int, int] | None:
    """(start, stop) of an index key that is a slice of step 1 with both ends, else
    None."""
    if not isinstance(key, slice) or key.step not in (None, 1):
        return None
    if key.start is None or key.stop is None:
        return None
    return int(key.start), int(key.stop)


def assemble(op: LinOp) -> LinOp:
    """``op`` with every subtree of gathers, diagonals, differences and sparse matrices
    assembled into one sparse MatrixOp; single leaves and FFT operators are kept as they
    are (their Gram structure is what exact x-updates use)."""
    if isinstance(op, _SPARSE_LEAVES) or not isinstance(op, _SPARSE_NODES):
        return op
    if all(_is_sparse_part(o) for o in walk(op)):
        if _keeps_gram(op):
            return op
        return MatrixOp(op.to_sparse())
    if isinstance(op, ScalarMultiple):
        return ScalarMultiple(op.scale, assemble(op.op))
    if isinstance(op, Compose):
        return Compose(assemble(op.outer), assemble(op.inner))
    parts = [assemble(o) for o in op.ops]
    return SumOp(parts) if isinstance(op, SumOp) else VStack(parts)


def _is_sparse_part(op: LinOp) -> bool:
    if isinstance(op, MatrixOp):
        return sp.issparse(op.matrix)
    return isinstance(op, _SPARSE_LEAVES + _SPARSE_NODES)


def _keeps_gram(op: LinOp) -> bool:
    """A scaled single leaf (e.g. -x, 2 diff(x)): keep it, its Gram is structured."""
    while isinstance(op, ScalarMultiple):
        op = op.op
    return isinstance(op, _SPARSE_LEAVES)


def broadcast(part: Affine, size: int) -> Affine:
    """A scalar-valued map repeated ``size`` times (CVXPY's implicit promotion)."""
    if part.size == size:
        return part
    if part.size != 1:
        raise NotStructured(f"cannot broadcast {part.size} entries to {size}")
    const = np.full(size, part.const[0])
    if part.op is None:
        return Affine(None, const)
    return Affine(Compose(Gather(np.zeros(size, dtype=np.int64), 1), part.op), const)


def add(a: Affine, b: Affine) -> Affine:
    const = a.const + b.const
    if a.op is None or b.op is None:
        return Affine(a.op if b.op is None else b.op, const)
    ops = [
        *(a.op.ops if isinstance(a.op, SumOp) else [a.op]),
        *(b.op.ops if isinstance(b.op, SumOp) else [b.op]),
    ]
    return Affine(SumOp(ops), const)


def scale(a: Affine, factor: float) -> Affine:
    if a.op is None:
        return Affine(None, factor * a.const)
    if isinstance(a.op, ScalarMultiple):
        op = ScalarMultiple(factor * a.op.scale, a.op.op)
    else:
        op = ScalarMultiple(factor, a.op)
    return Affine(op, factor * a.const)


def elementwise(a: Affine, d: np.ndarray) -> Affine:
    """x -> d * (A x + a), with d a scalar or a vector of a's size."""
    if d.size == 1:
        return scale(a, float(d[0]))
    if a.op is None:
        return Affine(None, d * a.const)
    return Affine(Compose(Diagonal(d), a.op), d * a.const)


def compose(outer: LinOp, a: Affine) -> Affine:
    """x -> outer(A x + a)."""
    const = outer.matvec(a.const)
    if a.op is None:
        return Affine(None, const)
    if isinstance(a.op, Identity):
        return Affine(outer, const)
    return Affine(Compose(outer, a.op), const)


def gather(a: Affine, picked: np.ndarray) -> Affine:
    """x -> (A x + a)[picked], merging gathers of gathers."""
    const = a.const[picked]
    if a.op is None:
        return Affine(None, const)
    if isinstance(a.op, Gather):
        return Affine(Gather(a.op.index[picked], a.op.shape[1]), const)
    if isinstance(a.op, Identity):
        return Affine(Gather(picked, a.op.shape[1]), const)
    return Affine(Compose(Gather(picked, a.size), a.op), const)


def stack(parts: list[Affine], n: int) -> Affine:
    """The maps stacked vertically (constants become rows of a zero operator)."""
    if len(parts) == 1:
        return parts[0]
    const = np.concatenate([p.const for p in parts])
    if all(p.op is None for p in parts):
        return Affine(None, const)
    ops = [p.op if p.op is not None else MatrixOp(sp.csr_array((p.size, n))) for p in parts]
    return Affine(VStack(ops), const)
