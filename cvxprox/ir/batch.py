"""Batches of one parametric cone program: the parameter map and the stacked program.

A DPP problem compiles once to CVXPY's ``ParamConeProg``, whose data are affine in the
parameter vector ``p`` (all parameters flattened in Fortran order, then a constant 1):

    [q; d] = T_q p,    vec([A_cvx | b_cvx]) = T_A p,    vec(P) = T_P p,

with the tensors T stored row-reduced to the sparsity pattern they produce. Here

- ``ConeProgramMap`` applies the tensors to a whole batch of parameter vectors at once
  (one sparse-dense product per tensor) and applies their transposes to the gradients of
  the data (the chain rule from the data back to the parameters);
- ``StackedConeProgram`` assembles a batch of B programs that share one sparsity pattern
  into a single block-diagonal ``AssembledProgram`` whose cones of one kind are merged, so
  that the algorithms run one vectorized iteration over the whole batch;
- ``StackedStructuredProgram`` does the same for B structured programs of one shape
  (``cvxprox.ir.program.Program``): term k of every element becomes one term on a
  ``BlockDiagonal`` operator, with the elements' weights concatenated (a function that
  does not merge entrywise, such as 1-D TV or norm_inf, as a ``BlockSum`` of the
  elements' functions).

The IR's convention (``cvxprox.ir.program``) is ``f_K(A x - b)`` with ``A = A_cvx``, ``b = -b_cvx``;
finite variable bounds append nonnegative rows ``x - l >= 0``, ``u - x >= 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy.reductions.dcp2cone.cone_matrix_stuffing import ParamConeProg

from cvxprox.backend import array_namespace
from cvxprox.functions.cones import (
    Cone,
    ExpCone,
    NonnegCone,
    PowCone3D,
    PSDCone,
    SecondOrderCone,
    ZeroCone,
    cones_from_dims,
)
from cvxprox.functions.prox import (
    TV1D,
    BlockSum,
    GroupL2,
    Huber,
    KLDiv,
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
from cvxprox.ir.program import Program, RowTerm, Term, bound_rows
from cvxprox.operators.linops import BlockDiagonal, Identity


@dataclass
class BatchData:
    """The data of B cone programs with one sparsity pattern (IR convention).

    Attributes
    ----------
    c : ndarray, shape (B, n)
    offset : ndarray, shape (B,)
    A_data : ndarray, shape (B, nnz_A)
        Values of A on the shared CSC pattern ``ConeProgramMap.A_pattern``.
    b : ndarray, shape (B, m)
    P_data : ndarray, shape (B, nnz_P), or None for a linear objective
        Values of P (both triangles) on the shared pattern ``ConeProgramMap.P_pattern``.
    """

    c: np.ndarray
    offset: np.ndarray
    A_data: np.ndarray
    b: np.ndarray
    P_data: np.ndarray | None

    @property
    def batch_size(self) -> int:
        return self.c.shape[0]


class ConeLayout:
    """The sparsity layout of a cone program in CVXPY's format and its IR counterpart.

    CVXPY's data of one program are ``[q; d]`` (length n + 1), the values of
    ``[A_cvx | b_cvx]`` on a CSC pattern of shape (m_cone, n + 1), and the values of P on
    a CSC pattern of shape (n, n). ``data`` turns a batch of such values into IR data
    (``A = A_cvx``, ``b = -b_cvx``, plus constant rows for finite variable bounds), and
    ``data_adjoint`` applies the transpose of that map to gradients.

    Parameters
    ----------
    reduced_A, reduced_P : cvxpy ReducedMat
        The program's reduced tensors (their ``problem_data_index`` gives the patterns).
    cone_dims : ConeDims
    n : int
        Number of variables.
    lower_bounds, upper_bounds : ndarray or None
        Constant variable bounds (CVXPY's ``bounds`` attribute kept by the chain).
    """

    def __init__(
        self,
        reduced_A: Any,
        reduced_P: Any,
        cone_dims: Any,
        n: int,
        lower_bounds: np.ndarray | None = None,
        upper_bounds: np.ndarray | None = None,
    ) -> None:
        self.n = n
        self.cone = cones_from_dims(cone_dims)
        self.m_cone = self.cone.dim
        reduced_A.cache()
        indices, indptr, shape = reduced_A.problem_data_index
        indices, indptr = np.asarray(indices), np.asarray(indptr)
        if tuple(shape) != (self.m_cone, n + 1):
            raise ValueError(f"cone data of shape {shape}, expected ({self.m_cone}, {n + 1})")
        n_A = int(indptr[n])
        # Entries of the last column are b_cvx; the others are A's CSC pattern.
        self.A_pattern = (indices[:n_A].copy(), indptr[: n + 1].copy())
        self.nnz = len(indices)
        self.b_rows = indices[n_A:].copy()
        self.A_entries = slice(0, n_A)
        self.b_entries = slice(n_A, len(indices))
        self.P_pattern = None
        if reduced_P is not None and reduced_P.matrix_data is not None:
            reduced_P.cache()
            if reduced_P.problem_data_index is not None:  # else P == 0 for every value
                p_indices, p_indptr, _ = reduced_P.problem_data_index
                self.P_pattern = (np.asarray(p_indices).copy(), np.asarray(p_indptr).copy())
        self.bound_rows, self.bound_b = bound_rows(
            *(
                None if bound is None else np.broadcast_to(np.asarray(bound, float), (n,))
                for bound in (lower_bounds, upper_bounds)
            ),
            n,
        )
        self.m = self.m_cone + self.bound_rows.shape[0]

    def terms(self) -> list[RowTerm]:
        """The cone terms of one program, in row order (bounds last)."""
        cones = list(self.cone.cones)
        if self.bound_rows.shape[0]:
            cones.append(NonnegCone(self.bound_rows.shape[0]))
        terms, start = [], 0
        for cone in cones:
            terms.append(RowTerm(cone, slice(start, start + cone.dim)))
            start += cone.dim
        return terms

    def data(self, qd: Any, Ab: Any, P: Any | None) -> BatchData:
        """IR data from ``(B, n + 1)`` values of [q; d], ``(B, nnz)`` values of
        ``[A_cvx | b_cvx]`` and ``(B, nnz_P)`` values of P (or None).

        Works on NumPy arrays and, differentiably, on torch tensors (the unrolled path).
        """
        xp = array_namespace(qd)
        batch = qd.shape[0]
        b = xp.zeros((batch, self.m), dtype=qd.dtype)
        b[:, self.b_rows] = -Ab[:, self.b_entries]
        if self.bound_rows.shape[0]:
            b[:, self.m_cone :] = xp.asarray(self.bound_b, dtype=qd.dtype)
        return BatchData(
            c=qd[:, : self.n],
            offset=xp.reshape(qd[:, self.n], (batch,)),
            A_data=Ab[:, self.A_entries],
            b=b,
            P_data=None if self.P_pattern is None or P is None else P,
        )

    def data_adjoint(
        self,
        dc: np.ndarray,
        dA_data: np.ndarray,
        db: np.ndarray,
        dP_data: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Transpose of ``data``: IR gradients ``(B, n)``, ``(B, nnz_A)``, ``(B, m)``,
        ``(B, nnz_P)`` -> gradients of the CVXPY values (d[q; d], d[A | b], dP). The
        bound rows of ``db`` are constants and drop out."""
        batch = dc.shape[0]
        d_qd = np.zeros((batch, self.n + 1))
        d_qd[:, : self.n] = dc
        d_Ab = np.zeros((batch, self.nnz))
        d_Ab[:, self.A_entries] = dA_data
        d_Ab[:, self.b_entries] = -db[:, self.b_rows]
        return d_qd, d_Ab, dP_data


class ConeProgramMap:
    """The affine map from CVXPY parameter values to IR data, for a batch of values.

    Parameters
    ----------
    cone_prog : ParamConeProg
        A formatted cone program (rows in the order zero, nonneg, soc, psd, exp, p3d).
    parameters : list of cvxpy.Parameter
        The order in which ``evaluate`` receives values and ``adjoint`` returns gradients;
        must be exactly the program's parameters.
    """

    def __init__(self, cone_prog: ParamConeProg, parameters: list[cp.Parameter]) -> None:
        if {p.id for p in parameters} != {p.id for p in cone_prog.parameters}:
            raise ValueError("parameters must be exactly the parameters of the problem")
        if cone_prog.lb_tensor is not None or cone_prog.ub_tensor is not None:
            raise ValueError("variable bounds that depend on parameters are not supported")
        self.cone_prog = cone_prog
        self.parameters = list(parameters)
        self.p = cone_prog.total_param_size
        self.layout = ConeLayout(
            cone_prog.reduced_A,
            cone_prog.reduced_P if cone_prog.P is not None else None,
            cone_prog.cone_dims,
            cone_prog.x.size,
            cone_prog.lower_bounds,
            cone_prog.upper_bounds,
        )
        self.n = self.layout.n
        self._T_q = sp.csr_array(cone_prog.q)
        self._T_A = sp.csr_array(cone_prog.reduced_A.reduced_mat)
        self._T_P = (
            None if self.layout.P_pattern is None else sp.csr_array(cone_prog.reduced_P.reduced_mat)
        )

    def tensors(self) -> dict[str, sp.csr_array | None]:
        """The reduced tensors: ``q`` ((n + 1) x (p + 1)), ``A`` (entries of ``[A_cvx | b_cvx]``
        x (p + 1)) and ``P`` (entries of P x (p + 1), or None)."""
        return {"q": self._T_q, "A": self._T_A, "P": self._T_P}

    def parameter_matrix(self, values: list[np.ndarray]) -> np.ndarray:
        """Stack parameter values (one ``(B, *param.shape)`` array each) into ``(p + 1, B)``."""
        batch = values[0].shape[0]
        vec = np.zeros((self.p + 1, batch))
        for param, value in zip(self.parameters, values, strict=True):
            col = self.cone_prog.param_id_to_col[param.id]
            # Fortran order within a parameter, as CVXPY flattens it.
            vec[col : col + param.size] = np.stack([np.ravel(v, order="F") for v in value], axis=1)
        vec[self.p] = 1.0
        return vec

    def evaluate(self, values: list[np.ndarray]) -> BatchData:
        """The IR data of the programs at a batch of parameter values."""
        vec = self.parameter_matrix(values)
        P = None if self._T_P is None else (self._T_P @ vec).T
        return self.layout.data((self._T_q @ vec).T, (self._T_A @ vec).T, P)

    def adjoint(
        self,
        dc: np.ndarray,
        dA_data: np.ndarray,
        db: np.ndarray,
        dP_data: np.ndarray | None,
    ) -> list[np.ndarray]:
        """Gradients with respect to the parameters from gradients of the IR data.

        Takes ``(B, n)``, ``(B, nnz_A)``, ``(B, m)`` and ``(B, nnz_P)`` arrays and returns
        one ``(B, *param.shape)`` array per parameter.
        """
        batch = dc.shape[0]
        d_qd, d_Ab, d_P = self.layout.data_adjoint(dc, dA_data, db, dP_data)
        d_vec = self._T_q.T @ d_qd.T + self._T_A.T @ d_Ab.T
        if self._T_P is not None and d_P is not None:
            d_vec += self._T_P.T @ d_P.T
        grads = []
        for param in self.parameters:
            col = self.cone_prog.param_id_to_col[param.id]
            block = d_vec[col : col + param.size].T
            grads.append(
                np.stack([np.reshape(g, param.shape, order="F") for g in block])
                if param.size
                else np.zeros((batch, *param.shape))
            )
        return grads


def _repeat_cone(cone: Cone, count: int) -> Cone:
    """``count`` copies of ``cone`` as one cone of the same kind."""
    if isinstance(cone, ZeroCone):
        return ZeroCone(cone.dim * count)
    if isinstance(cone, NonnegCone):
        return NonnegCone(cone.dim * count)
    if isinstance(cone, SecondOrderCone):
        return SecondOrderCone(np.tile(cone.sizes, count))
    if isinstance(cone, PSDCone):
        return PSDCone(np.tile(cone.sizes, count))
    if isinstance(cone, ExpCone):
        return ExpCone(cone.count * count)
    if isinstance(cone, PowCone3D):
        return PowCone3D(np.tile(cone.alphas, count))
    raise TypeError(f"cannot batch a {type(cone).__name__}")


class StackedConeProgram:
    """B programs with one pattern as one block-diagonal Program (made of its assembled view).

    Variables are stacked element by element (``x_big = [x_0; x_1; ...]``). Rows are
    grouped term by term: the rows of term j of every element are adjacent, so that term j
    of the batch is one cone of the same kind (``SecondOrderCone`` of all the blocks, ...)
    and every projection runs vectorized over the batch.

    Parameters
    ----------
    layout : ConeLayout
    batch_size : int
    """

    def __init__(self, layout: ConeLayout, batch_size: int) -> None:
        self.layout = layout
        self.batch_size = batch = int(batch_size)
        n, m = layout.n, layout.m
        template = layout.terms()
        # order[k] = flat index (element * m + row) of stacked row k.
        order, self.terms, start = [], [], 0
        for term in template:
            rows = np.arange(term.rows.start, term.rows.stop)
            order.append((np.arange(batch)[:, None] * m + rows[None, :]).ravel())
            cone = _repeat_cone(term.function, batch)
            self.terms.append(RowTerm(cone, slice(start, start + cone.dim)))
            start += cone.dim
        self.order = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
        position = np.empty_like(self.order)
        position[self.order] = np.arange(self.order.size)
        self.position = position  # stacked row of flat index element * m + row
        self._A = _block_pattern(self._template_A(), batch, position, m)
        P_pattern = layout.P_pattern
        self._P = (
            None
            if P_pattern is None
            else _block_pattern((P_pattern[0], P_pattern[1], n), batch, None, n)
        )

    def _template_A(self) -> tuple[np.ndarray, np.ndarray, int]:
        """CSC pattern of one element's full A (cone rows, then bound rows)."""
        indices, indptr = self.layout.A_pattern
        n = self.layout.n
        bounds = sp.csc_array(self.layout.bound_rows)
        if bounds.shape[0] == 0:
            return indices, indptr, n
        counts = np.diff(indptr) + np.diff(bounds.indptr)
        full_ptr = np.concatenate([[0], np.cumsum(counts)])
        full_idx = np.empty(full_ptr[-1], dtype=np.int64)
        self._bound_slots = np.empty(bounds.nnz, dtype=np.int64)
        self._cone_slots = np.empty(indices.size, dtype=np.int64)
        for j in range(n):  # pattern setup, once per layer
            a0, a1 = indptr[j], indptr[j + 1]
            b0, b1 = bounds.indptr[j], bounds.indptr[j + 1]
            s = full_ptr[j]
            self._cone_slots[a0:a1] = np.arange(s, s + a1 - a0)
            self._bound_slots[b0:b1] = np.arange(s + a1 - a0, s + a1 - a0 + b1 - b0)
            full_idx[s : s + a1 - a0] = indices[a0:a1]
            full_idx[s + a1 - a0 : full_ptr[j + 1]] = bounds.indices[b0:b1] + self.layout.m_cone
        self._bound_values = bounds.data
        return full_idx, full_ptr, n

    def stacked_A_values(self, A_data: Any) -> Any:
        """The stacked A's data array from ``(B, nnz_A)`` values on the cone rows' pattern.

        Works on NumPy arrays and on torch tensors (differentiably), for the unrolled path.
        """
        if self.layout.bound_rows.shape[0]:
            xp = array_namespace(A_data)
            full = xp.zeros(
                (A_data.shape[0], self._cone_slots.size + self._bound_slots.size),
                dtype=A_data.dtype,
            )
            full[:, self._cone_slots] = A_data
            full[:, self._bound_slots] = xp.asarray(self._bound_values, dtype=A_data.dtype)
            A_data = full
        return self._A.stacked_values(A_data)

    def stacked_P_values(self, P_data: Any) -> Any:
        """The stacked P's data array from ``(B, nnz_P)`` values on P's pattern."""
        return self._P.stacked_values(P_data)

    def program(self, data: BatchData) -> Program:
        """The stacked Program of a batch of data (its assembled view is the stacked A)."""
        if data.batch_size != self.batch_size:
            raise ValueError(f"batch of {data.batch_size}, expected {self.batch_size}")
        A = self._A.matrix(self.stacked_A_values(data.A_data))
        P = None if self._P is None else self._P.matrix(self.stacked_P_values(data.P_data))
        b = data.b.reshape(-1)[self.order]
        program = Program.from_rows(
            np.ascontiguousarray(data.c).reshape(-1),
            A,
            b,
            [t.function for t in self.terms],
            P,
            float(np.sum(data.offset)),
        )
        program.check_finite()
        return program

    def split_rows(self, y_big: np.ndarray) -> np.ndarray:
        """Stacked row vector -> ``(B, m)`` per-element rows."""
        return y_big[self.position].reshape(self.batch_size, self.layout.m)

    def stack_rows(self, y: Any) -> Any:
        """``(B, m)`` per-element rows -> stacked row vector (NumPy or torch)."""
        return y.reshape(-1)[self.order]

    def split_A_data(self, full: np.ndarray) -> np.ndarray:
        """Values on one element's full A pattern -> values on the cone rows' pattern."""
        if self.layout.bound_rows.shape[0] == 0:
            return full
        return full[:, self._cone_slots]

    def unstack_A_data(self, data: np.ndarray) -> np.ndarray:
        """The stacked A's data array -> ``(B, nnz)`` values on the cone rows' pattern."""
        return self.split_A_data(self._A.unstack(data))

    def unstack_P_data(self, data: np.ndarray) -> np.ndarray:
        """The stacked P's data array -> ``(B, nnz_P)`` values on P's pattern."""
        return self._P.unstack(data)


class _BlockPattern:
    """A block-diagonal CSC pattern built from one template, with the map from the
    template's values (batch by batch) to the big matrix's data array."""

    def __init__(
        self,
        template: tuple[np.ndarray, np.ndarray, int],
        shape: tuple[int, int],
        indices: np.ndarray,
        indptr: np.ndarray,
        take: np.ndarray,
    ) -> None:
        self.template = template
        self.shape = shape
        self.indices = indices
        self.indptr = indptr
        self.take = take

    def stacked_values(self, values: Any) -> Any:
        """``(batch, nnz of the template)`` values -> the big matrix's data array."""
        return values.reshape(-1)[self.take]

    def matrix(self, data: np.ndarray) -> sp.csc_array:
        """The block-diagonal matrix with the data array ``data``."""
        return sp.csc_array((data, self.indices, self.indptr), shape=self.shape)

    def unstack(self, data: np.ndarray) -> np.ndarray:
        """Inverse of ``matrix``: the big data array -> ``(batch, nnz of the template)``."""
        values = np.empty(self.take.size)
        values[self.take] = data
        return values.reshape(-1, self.template[0].size)


def _block_pattern(
    template: tuple[np.ndarray, np.ndarray, int],
    batch: int,
    position: np.ndarray | None,
    rows: int,
) -> _BlockPattern:
    """The block-diagonal pattern of ``batch`` copies of a CSC template (rows x cols).

    ``position`` (if given) permutes the rows: flat row ``k * rows + r`` of block k moves to
    ``position[k * rows + r]``. Row indices are sorted within each column.
    """
    indices, indptr, cols = template
    nnz = indices.size
    big_rows = (np.arange(batch)[:, None] * rows + indices[None, :]).ravel()
    if position is not None:
        big_rows = position[big_rows]
    big_ptr = np.concatenate(
        [[0], (np.arange(batch)[:, None] * nnz + indptr[None, 1:]).ravel()]
    ).astype(np.int64)
    col_of = np.repeat(np.arange(batch * cols), np.diff(big_ptr))
    order = np.lexsort((big_rows, col_of))  # column-major, rows sorted
    return _BlockPattern(
        template=template,
        shape=(batch * rows, batch * cols),
        indices=big_rows[order].astype(np.int32 if batch * rows < 2**31 else np.int64),
        indptr=big_ptr,
        take=order,
    )


#: Separable functions whose elementwise weights concatenate over a batch.
_WEIGHTED = (Norm1, SumSquares, Pos, Huber, Logistic, NegEntropy, KLDiv)
_INDICATORS = (ZeroCone, NonnegCone)
#: Cones of several blocks, which concatenate over a batch block by block.
_BLOCK_CONES = (SecondOrderCone, ExpCone, PSDCone, PowCone3D)
#: Functions with one weight for the whole vector.
_SCALAR_WEIGHTED = (Norm2, NormInf, TV1D, Quadratic)


def weight_entries(function: ProxFunction) -> np.ndarray | None:
    """A function's weights, one entry per weight: per group (GroupL2), one (Norm2,
    NormInf, TV1D, Quadratic), per entry (separable functions), the blocks' entries in
    order (BlockSum); None for indicators."""
    if isinstance(function, BlockSum):
        parts = [weight_entries(f) for f in function.functions]
        parts = [part for part in parts if part is not None]
        return np.concatenate(parts) if parts else None
    weight = getattr(function, "weight", None)
    if weight is None:
        return None
    if isinstance(function, GroupL2):
        count = function.groups
    elif isinstance(function, _SCALAR_WEIGHTED):
        count = 1
    else:
        count = function.size
    return np.broadcast_to(np.asarray(weight, dtype=np.float64), (count,))


def _merge_functions(functions: list[ProxFunction]) -> ProxFunction:
    """One function of the concatenated arguments: sum_b f_b(z_b)."""
    first = functions[0]
    size = sum(f.size for f in functions)
    if isinstance(first, _INDICATORS):
        return type(first)(size)
    if isinstance(first, SecondOrderCone):
        return SecondOrderCone(np.concatenate([f.sizes for f in functions]))
    if isinstance(first, PSDCone):
        return PSDCone(np.concatenate([f.sizes for f in functions]))
    if isinstance(first, ExpCone):
        return ExpCone(sum(f.count for f in functions))
    if isinstance(first, PowCone3D):
        return PowCone3D(np.concatenate([f.alphas for f in functions]))
    if not isinstance(first, _WEIGHTED + (GroupL2, Norm2)):
        return BlockSum(functions)
    weight = np.concatenate([weight_entries(f) for f in functions])
    if np.all(weight == weight[0]):
        weight = float(weight[0])
    if isinstance(first, (GroupL2, Norm2)):
        # Each element's l2 norm (or groups) becomes groups of one GroupL2.
        k = first.group_size if isinstance(first, GroupL2) else first.size
        if any((f.group_size if isinstance(f, GroupL2) else f.size) != k for f in functions):
            raise ValueError("groups of different sizes cannot be stacked")
        return GroupL2(size, k, weight=weight)
    if isinstance(first, Huber):
        if any(f.M != first.M for f in functions):
            raise ValueError("huber terms with different M cannot be stacked")
        return Huber(size, first.M, weight=weight)
    if isinstance(first, KLDiv):
        c = np.concatenate([np.broadcast_to(f.c, (f.size,)) for f in functions])
        return KLDiv(size, c, weight=weight)
    return type(first)(size, weight=weight)


def signature(program: Program) -> tuple:
    """What programs must share to be stacked: n and each term's kind and size."""
    return (program.n, *((type(t.function), t.size) for t in program.terms))


class StackedStructuredProgram:
    """A batch of B structured programs as one block-diagonal Program.

    Element b's variables are entries ``b*n ... (b+1)*n`` of the stacked x; term k of the
    stacked program is diag(A_k^1, ..., A_k^B) with b = (b_k^1; ...; b_k^B) and the merged
    function sum_b f_k^b (``Identity`` blocks stay one identity, so FISTA still sees a prox
    on x itself; dense matrices of one shape are applied by one batched product).

    Parameters
    ----------
    programs : list of Program
        With equal ``signature``.
    """

    def __init__(self, programs: list[Program]) -> None:
        first = signature(programs[0])
        if any(signature(p) != first for p in programs[1:]):
            raise ValueError("the programs of a batch differ in their terms")
        self.programs = programs
        self.batch = len(programs)
        self.n = programs[0].n
        terms = []
        for k, term in enumerate(programs[0].terms):
            parts = [p.terms[k] for p in programs]
            ops = [t.op for t in parts]
            if all(isinstance(op, Identity) for op in ops):
                op = Identity(sum(o.shape[0] for o in ops))
            else:
                op = BlockDiagonal(ops)
            function = _merge_functions([t.function for t in parts])
            terms.append(Term(function, op, np.concatenate([t.b for t in parts]), term.label))
        self.program = Program(
            c=np.concatenate([p.c for p in programs]),
            terms=terms,
            offset=float(sum(p.offset for p in programs)),
        )

    def split_x(self, x: np.ndarray) -> np.ndarray:
        """The stacked primal vector as (B, n)."""
        return x.reshape(self.batch, self.n)

    def split_y(self, y: np.ndarray) -> list[np.ndarray]:
        """A stacked vector over the terms' rows (duals y, arguments z; term-major) as each
        element's vector (term order)."""
        sizes = [t.size for t in self.programs[0].terms]
        out = [[] for _ in range(self.batch)]
        start = 0
        for size in sizes:
            block = y[start : start + size * self.batch].reshape(self.batch, size)
            start += size * self.batch
            for b in range(self.batch):
                out[b].append(block[b])
        return [np.concatenate(parts) if parts else np.zeros(0) for parts in out]
