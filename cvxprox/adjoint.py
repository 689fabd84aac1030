"""Implicit differentiation of a cone program's solution map (the adjoint solve).

For ``minimize c'x + 1/2 x'Px + f_K(A x - b)`` (``cvxprox.ir.ProxProgram``) a primal-dual
solution (x, y) with z = A x - b in K, y in K° and z'y = 0 is a zero of the residual map

    R(x, v) = [ P x + c + A' (v - Pi_K(v)) ]
              [ A x - b - Pi_K(v)           ],     v = z + y,

because Moreau's decomposition gives z = Pi_K(v) and y = Pi_{K°}(v) = v - Pi_K(v). Where R
is differentiable with an invertible Jacobian, the implicit function theorem gives the
derivative of the solution; the adjoint of that derivative needs one linear solve with

    J' = [ P           A' ]        D = DPi_K(v) (symmetric, 0 <= D <= I),
         [ (I - D) A   -D ],

    J' [u; w] = [dL/dx; (I - D) dL/dy],

after which the gradients of a loss L(x, y) with respect to the data are

    dL/dc = -u,   dL/db = w,   dL/dA = -(y u' + w x'),   dL/dP = -u x'.

The solve uses the same sparse data as the forward problem and nothing from the
iterations, so its memory does not depend on how many iterations the forward solve took.
It is a sparse LU factorization, or, when J is singular (a non-unique solution) or too
large to factor, the least-squares solution from LSMR (matrix-free: products with J'
and J only), which is the gradient of the minimum-norm generalized solution.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from cvxprox.ir import ProxProgram

ADJOINT_METHODS = ("auto", "lu", "lsmr")
# Above this many nonzeros in J, "auto" uses LSMR instead of a factorization.
_LU_MAX_NNZ = 20_000_000


@dataclass
class DataGradient:
    """Gradients of a loss with respect to a ProxProgram's data.

    Attributes
    ----------
    c : ndarray, shape (n,)
    b : ndarray, shape (m,)
    A_data : ndarray, shape (nnz(A),)
        On the CSC pattern of ``program.A``, in the order of ``program.A.data``.
    P_data : ndarray, shape (nnz(P),), or None
        On the CSC pattern of ``program.P``.
    """

    c: np.ndarray
    b: np.ndarray
    A_data: np.ndarray
    P_data: np.ndarray | None


class ResidualMapAdjoint:
    """The adjoint of the derivative of a cone program's solution map at (x, y, z).

    Parameters
    ----------
    program : ProxProgram
        Cone indicators only (every term's function is a ``Cone``).
    x : ndarray, shape (n,)
    y : ndarray, shape (m,)
        IR duals (in the polar cone).
    z : ndarray, shape (m,)
        ``A x - b`` projected onto the cone, as the solver returns it.
    method : {"auto", "lu", "lsmr"}
    """

    def __init__(
        self,
        program: ProxProgram,
        x: np.ndarray,
        y: np.ndarray,
        z: np.ndarray,
        method: str = "auto",
    ) -> None:
        if method not in ADJOINT_METHODS:
            raise ValueError(f"adjoint method must be one of {ADJOINT_METHODS}, got {method!r}")
        self.program = program
        self.x, self.y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        n, m = program.n, program.m
        self.D = sp.csr_array(program.cone.project_derivative(z + self.y))
        A = sp.csr_array(program.A)
        P = sp.csr_array((n, n)) if program.P is None else sp.csr_array(program.P)
        eye = sp.eye_array(m, format="csr")
        self.JT = sp.csc_array(sp.block_array([[P, A.T], [(eye - self.D) @ A, -self.D]]))
        self.method = method
        if method == "auto":
            self.method = "lu" if self.JT.nnz <= _LU_MAX_NNZ else "lsmr"
        self._lu = None

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """Solve ``J' s = rhs``; least squares when J' is singular."""
        if self.method == "lu":
            try:
                if self._lu is None:
                    with warnings.catch_warnings():
                        warnings.simplefilter("error", sp.linalg.MatrixRankWarning)
                        self._lu = spla.splu(self.JT, permc_spec="COLAMD")
                sol = self._lu.solve(rhs)
                if np.all(np.isfinite(sol)) and np.linalg.norm(self.JT @ sol - rhs) <= 1e-8 * max(
                    1.0, np.linalg.norm(rhs)
                ):
                    return sol
            except (RuntimeError, sp.linalg.MatrixRankWarning):
                pass
        return self._lsmr(rhs)

    def _lsmr(self, rhs: np.ndarray) -> np.ndarray:
        size = rhs.size
        sol = spla.lsmr(self.JT, rhs, atol=1e-14, btol=1e-14, maxiter=20 * size + 1000)[0]
        return sol

    def gradient(self, dx: np.ndarray, dy: np.ndarray | None = None) -> DataGradient:
        """Gradients with respect to (c, b, A, P) of a loss with gradients dx, dy."""
        n = self.program.n
        rhs_y = np.zeros(self.program.m) if dy is None else dy - self.D @ dy
        sol = self.solve(np.concatenate([np.asarray(dx, dtype=np.float64), rhs_y]))
        u, w = sol[:n], sol[n:]
        A = sp.csc_array(self.program.A)
        rows = A.indices
        cols = np.repeat(np.arange(n), np.diff(A.indptr))
        A_data = -(self.y[rows] * u[cols] + w[rows] * self.x[cols])
        P_data = None
        if self.program.P is not None:
            P = sp.csc_array(self.program.P)
            p_cols = np.repeat(np.arange(n), np.diff(P.indptr))
            P_data = -(u[P.indices] * self.x[p_cols])
        return DataGradient(c=-u, b=w, A_data=A_data, P_data=P_data)
