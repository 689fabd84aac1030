"""The residual map of a program whose rows come in blocks, each with its own prox.

A program

    minimize  c'x + 1/2 x'Px + sum_i f_i(A_i x - b_i),      x in R^n, A_i of shape (m_i, n),

is either a Program's assembled view (``AssembledProgram``: A_i rows of one sparse matrix,
f_i cone indicators) or a Program's own terms (A_i operators, f_i prox functions); here
both are a list of ``Block`` s. A primal-dual solution (x, y) with
z_i = A_i x - b_i and y_i in df_i(z_i) gives v_i = z_i + y_i, and z_i = p_i(v_i) with p_i
the prox of f_i at step 1 (the projection for a cone: Moreau's decomposition). So the
solution is a zero of the residual map

    R(x, v) = [ c + P x + sum_i A_i'(v_i - p_i(v_i)) ]      (n rows)
              [ A_i x - b_i - p_i(v_i)               ]      (m_i rows per block),

whose Jacobian, with D_i = dp_i/dv_i (``cvxprox.diff.jacobian``), A the blocks' A_i
stacked (m x n) and D = diag(D_1, ..., D_k) (m x m), is

    J = [ P   A'(I - D) ]            J' = [ P          A' ]
        [ A   -D        ],                [ (I - D) A  -D ].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from cvxprox.diff.jacobian import ProxJacobian, prox_jacobian, prox_map
from cvxprox.functions.cones import Cone
from cvxprox.functions.prox import ProxFunction
from cvxprox.ir.program import AssembledProgram, Program
from cvxprox.operators.linops import Identity, LinOp, MatrixOp

#: A block's matrix: dense, sparse CSR, or None for the identity.
Matrix = np.ndarray | sp.csr_array | None


@dataclass
class Block:
    """One term f(A x - b) of the program.

    Attributes
    ----------
    function : Cone or ProxFunction
    A : ndarray or csr_array, shape (m_i, n), or None (the identity, m_i = n)
    b : ndarray, shape (m_i,)
    """

    function: Cone | ProxFunction
    A: Matrix
    b: np.ndarray

    @property
    def size(self) -> int:
        return self.b.shape[0]

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """A x, shape (m_i,)."""
        return x.copy() if self.A is None else self.A @ x

    def rmatvec(self, y: np.ndarray) -> np.ndarray:
        """A' y, shape (n,)."""
        return y.copy() if self.A is None else self.A.T @ y

    def sparse(self, n: int) -> sp.csr_array:
        """A as a CSR array, shape (m_i, n)."""
        return sp.eye_array(n, format="csr") if self.A is None else sp.csr_array(self.A)


class ResidualMap:
    """R(x, v) of the module docstring for ``minimize c'x + 1/2 x'Px + sum_i f_i(A_i x - b_i)``.

    Parameters
    ----------
    c : ndarray, shape (n,)
    P : sparse array, shape (n, n), or None (a linear objective)
    blocks : list of Block
        In row order; v and the rows of R after the first n follow it.
    A : sparse array, shape (m, n), optional
        The blocks' matrices already stacked (an AssembledProgram's A), which ``matrix`` returns
        instead of stacking them again.

    Attributes
    ----------
    n, m : int
        Variables and rows (the blocks' sizes summed).
    starts : list of int
        The first row of each block, then m.
    """

    def __init__(
        self,
        c: np.ndarray,
        P: sp.sparray | None,
        blocks: list[Block],
        A: sp.sparray | None = None,
    ) -> None:
        self.c = np.asarray(c, dtype=np.float64)
        self._A = A
        self.P = P
        self.blocks = blocks
        self.n = self.c.shape[0]
        self.starts = [0]
        for block in blocks:
            self.starts.append(self.starts[-1] + block.size)
        self.m = self.starts[-1]

    @classmethod
    def from_program(cls, program: AssembledProgram | Program) -> ResidualMap:
        """The residual map of an assembled view or of a Program's terms."""
        if isinstance(program, AssembledProgram):
            A = sp.csr_array(program.A)
            blocks = [Block(t.function, A[t.rows], program.b[t.rows]) for t in program.terms]
            return cls(program.c, program.P, blocks, A)
        blocks = [Block(t.function, _matrix(t.op), t.b) for t in program.terms]
        return cls(program.c, program.P, blocks)

    def split(self, v: np.ndarray) -> list[np.ndarray]:
        """A vector over the m rows (shape (m,)) as one piece per block."""
        return [v[a:e] for a, e in zip(self.starts[:-1], self.starts[1:], strict=True)]

    def __call__(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """R(x, v), shape (n + m,)."""
        top = self.c.copy() if self.P is None else self.c + self.P @ x
        rows = []
        for block, v_i in zip(self.blocks, self.split(v), strict=True):
            p_i = prox_map(block.function, v_i)
            top += block.rmatvec(v_i - p_i)
            rows.append(block.matvec(x) - block.b - p_i)
        return np.concatenate([top, *rows])

    def jacobians(self, v: np.ndarray) -> list[ProxJacobian]:
        """The blocks' prox Jacobians D_i at v (shape (m,))."""
        return [
            prox_jacobian(block.function, v_i)
            for block, v_i in zip(self.blocks, self.split(v), strict=True)
        ]

    def matrix(self) -> sp.csr_array:
        """A, the blocks' matrices stacked, shape (m, n)."""
        if self._A is not None:
            return sp.csr_array(self._A)
        if not self.blocks:
            return sp.csr_array((0, self.n))
        return sp.csr_array(sp.vstack([block.sparse(self.n) for block in self.blocks]))

    def prox_jacobian_matrix(self, jacobians: list[ProxJacobian]) -> sp.csr_array:
        """D = diag(D_1, ..., D_k), shape (m, m), from the blocks' prox Jacobians."""
        if not jacobians:
            return sp.csr_array((0, 0))
        if all(jac.d is not None for jac in jacobians):
            return sp.csr_array(sp.diags_array(np.concatenate([jac.d for jac in jacobians])))
        return sp.csr_array(sp.block_diag([jac.D for jac in jacobians], format="csr"))

    def jacobian_transpose(self, jacobians: list[ProxJacobian]) -> sp.csc_array:
        """J' = [[P, A'], [(I - D) A, -D]], shape (n + m, n + m)."""
        A = self.matrix()
        D = self.prox_jacobian_matrix(jacobians)
        P = sp.csr_array((self.n, self.n)) if self.P is None else sp.csr_array(self.P)
        eye = sp.eye_array(self.m, format="csr")
        return sp.csc_array(sp.block_array([[P, A.T], [(eye - D) @ A, -D]]))


def _matrix(op: LinOp) -> Matrix:
    """An operator as a dense array (a dense MatrixOp), a CSR array, or None (identity)."""
    if isinstance(op, Identity):
        return None
    if isinstance(op, MatrixOp) and isinstance(op.matrix, np.ndarray):
        return op.matrix
    return sp.csr_array(op.to_sparse())
