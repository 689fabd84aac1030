"""The termination test and the certificates of an assembled view (A x - b in K).

All tests are made on the unscaled program (``cvxprox.ir.program`` conventions: z = Ax - b,
y in the subdifferential of f at z, so y lies in the polar cone for cone indicators).
Optimality is ``cvxprox.solvers.common.termination``'s test, per row and per variable, with
the equilibration's units, at most 1 (u = min(1/E, 1), v = min(1/(k D), 1),
w = min(1/k, 1), k = 1 / ``cost_norm``, the objective's largest magnitude on the
column-scaled data, unclipped):

    |A x - b - z|_i  <= eps_abs u_i + eps_rel max(|(A x)_i|, |z_i|, |b_i|)
    |P x + c + A'y|_j <= eps_abs v_j + eps_rel max(|c_j|, (|A|'|y|)_j, (|P||x|)_j)
    |pobj - dobj|    <= eps_abs w   + eps_rel max(|pobj|, |dobj|, |c'x|, |b'y|, x'Px)
    pobj = 1/2 x'Px + c'x,  dobj = -1/2 x'Px - b'y

Infeasibility certificates (Farkas vectors, as in SCS and in Banjac et al. 2019):

    primal infeasible:  y in K°, A'y = 0, b'y < 0   ->  ||A'y|| <= eps_infeas (-b'y)
    unbounded:          d with P d = 0, A d in K, c'd < 0
                        ->  max(||P d||, dist(A d, K)) <= eps_infeas (-c'd)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import cvxpy.settings as s
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import lsqr

from cvxprox.backend import Backend, array_namespace, get_backend
from cvxprox.backend.jit import csc_arrays
from cvxprox.backend.jit.cones import cone_layout, project
from cvxprox.backend.jit.residuals import kkt_worst
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import AssembledProgram
from cvxprox.solvers.common.scaling import DiagonalScaling, RuizScaling
from cvxprox.solvers.common.termination import KKTError, kkt_error, kkt_error_of_worst

# The certificate tests on the equilibrated data use this multiple of eps_infeas.
_SCALED_FACTOR = 100.0
# ``refine_farkas``: how far from SCS's test a direction may be to be refined (a multiple
# of eps_infeas), how many projection rounds, and LSQR's iterations in each.
_REFINE_WINDOW = 1e3
_REFINE_ROUNDS = 5
_REFINE_LSQR_ITERS = 500


@dataclass(frozen=True)
class KKTUnits:
    """The units of the termination test (module docstring): rows u (m,), columns v (n,)
    and the gap's w, each at most 1 where they come from an equilibration
    (``of_scaling``); and what the program leaves out of another one that it stands for
    (a presolved program's fixed columns x_F = v), so that its magnitudes are that
    program's: ``row_offset`` f (m,) or None, each row's part A_F v (moved into b; the
    row's magnitudes are |(A x)_i + f_i| and |b_i + f_i|), and ``objective_offset`` delta,
    the objective's part c_F'v + 1/2 v'P_FF v (moved into the offset; the gap's
    magnitudes are those of pobj + delta, dobj + delta, c'x + delta and b'y - delta)."""

    row: np.ndarray
    col: np.ndarray
    gap: float
    row_offset: np.ndarray | None = None
    objective_offset: float = 0.0

    @classmethod
    def of_scaling(cls, scaling: RuizScaling) -> KKTUnits:
        """u = min(1/E, 1), v = min(1/(k D), 1), w = min(1/k, 1) with k = 1 / cost_norm."""
        cost = scaling.cost_norm
        return cls(
            np.minimum(1.0 / scaling.E, 1.0), np.minimum(cost / scaling.D, 1.0), min(cost, 1.0)
        )


@dataclass
class _CheckData:
    """A program's data where the iterates live (host NumPy or a backend's device, float64):
    c (n,), b (m,), A, A' and the entrywise magnitude |A|' (CSR on that side), P
    and |P| (None without P), the termination units (m,) and (n,), and Pi_K."""

    c: Any
    b: Any
    A: Any
    At: Any
    abs_At: Any
    P: Any
    abs_P: Any
    row_unit: Any
    col_unit: Any
    row_offset: Any
    project: Callable[[Any], Any]


@dataclass
class _ScaledData:
    """The equilibrated A^, A^' and P^ (None without P) and the scaling maps, on one side."""

    A: Any
    At: Any
    P: Any
    scaling: DiagonalScaling


class KKTChecker:
    """Evaluates KKT errors and certificates of a program from its iterates.

    Every method takes NumPy arrays (the host) or arrays of the options' backend (its
    device) and computes there, reading back scalars only: the data each side needs is
    built once, on its first use, in float64.
    """

    def __init__(
        self, program: AssembledProgram, scaling: RuizScaling, options: SolverOptions
    ) -> None:
        self.program = program
        self.scaling = scaling
        self.opts = options
        # The termination test's units: the program's own where it stands for another
        # one (a presolved program), else its equilibration's.
        self.units = program.units if program.units is not None else KKTUnits.of_scaling(scaling)
        offset = self.units.row_offset
        # The compiled test's form of the offsets: an empty array for none.
        self._row_offset = np.zeros(0) if offset is None else offset
        # The certificate tests project onto K on every check: compiled, with their own
        # warm starts (separate from the iteration's).
        self._layout = cone_layout(program.cone)
        self._A, self._P = csc_arrays(program.A), csc_arrays(program.P)

    @cached_property
    def device(self) -> Backend:
        """The options' backend in float64: where device-side checks compute."""
        return get_backend(self.opts.backend, self.opts.device, "float64")

    def _side(self, v: Any) -> Backend | None:
        """None for a NumPy array (the host), else the device backend."""
        return None if isinstance(v, np.ndarray) else self.device

    def _data(self, v: Any) -> _CheckData:
        return self._host_data if self._side(v) is None else self._device_data

    def _scaled(self, v: Any) -> _ScaledData:
        return self._host_scaled if self._side(v) is None else self._device_scaled

    @cached_property
    def _host_data(self) -> _CheckData:
        return self._build_data(None)

    @cached_property
    def _device_data(self) -> _CheckData:
        return self._build_data(self.device)

    @cached_property
    def _host_scaled(self) -> _ScaledData:
        sc = self.scaling
        return _ScaledData(sc.A, sc.A.T.tocsr(), sc.P, sc)

    @cached_property
    def _device_scaled(self) -> _ScaledData:
        bk, sc = self.device, self.scaling
        P = None if sc.P is None or not sc.P.nnz else bk.csr(sc.P)
        return _ScaledData(bk.csr(sc.A), bk.csr(sc.A.T), P, sc.on(bk))

    def _build_data(self, bk: Backend | None) -> _CheckData:
        prog = self.program
        abs_A = abs(prog.A).tocsr()
        has_P = prog.P is not None and prog.P.nnz > 0
        if bk is None:
            return _CheckData(
                prog.c,
                prog.b,
                prog.A,
                prog.A.T.tocsr(),
                abs_A.T.tocsr(),
                prog.P if has_P else None,
                abs(prog.P).tocsr() if has_P else None,
                self.units.row,
                self.units.col,
                self.units.row_offset,
                self.project,
            )
        return _CheckData(
            bk.asarray(prog.c),
            bk.asarray(prog.b),
            bk.csr(prog.A),
            bk.csr(prog.A.T),
            bk.csr(abs_A.T),
            bk.csr(prog.P) if has_P else None,
            bk.csr(abs(prog.P)) if has_P else None,
            bk.asarray(self.units.row),
            bk.asarray(self.units.col),
            None if self.units.row_offset is None else bk.asarray(self.units.row_offset),
            prog.cone.project,
        )

    def to_host(self, v: Any) -> np.ndarray | None:
        """A host (NumPy float64) copy of a host or device vector; None stays None."""
        if v is None:
            return None
        side = self._side(v)
        return v if side is None else side.to_host(v)

    def project(self, v: np.ndarray) -> np.ndarray:
        """Pi_K(v) for the program's cone, on the host (a new float64 array)."""
        return project(self._layout, v)

    def kkt_error(self, x: Any, z: Any, y: Any, Ax: Any, Aty: Any, Px: Any | None) -> KKTError:
        """KKT error of the unscaled iterate; Ax, Aty, Px are unscaled products. Host or
        device arrays (computed where they are)."""
        d = self._data(x)
        xp = array_namespace(x)
        abs_x = xp.abs(x)
        dual_vec = d.c + Aty
        abs_Px = xp.zeros_like(x)
        xPx = 0.0
        if Px is not None:
            dual_vec = dual_vec + Px
            xPx = float(x @ Px)
            if d.abs_P is not None:
                abs_Px = d.abs_P @ abs_x
        cx, by = float(d.c @ x), float(d.b @ y)
        return kkt_error(
            (Ax - d.b - z, self._row_magnitudes(d, Ax, z), d.row_unit),
            (dual_vec, [d.c, d.abs_At @ xp.abs(y), abs_Px], d.col_unit),
            *self._objectives(xPx, cx, by),
        )

    def _objectives(self, xPx: float, cx: float, by: float) -> tuple:
        """The arguments of ``kkt_error_of_worst`` after the worst entries: the objectives
        and the gap's magnitudes (shifted by ``KKTUnits.objective_offset``), the
        tolerances and the offset that completes the objectives."""
        delta = self.units.objective_offset
        objectives = (
            0.5 * xPx + cx + delta,
            -0.5 * xPx - by + delta,
            [cx + delta, by - delta, xPx],
            self.units.gap,
        )
        return objectives, self.opts.eps_abs, self.opts.eps_rel, self.program.offset - delta

    @staticmethod
    def _row_magnitudes(d: _CheckData, Ax: Any, z: Any) -> list[Any]:
        """The vectors whose largest magnitude per row scales its relative tolerance."""
        if d.row_offset is None:
            return [Ax, z, d.b]
        return [Ax + d.row_offset, z, d.b + d.row_offset]

    def evaluate(self, x: np.ndarray, z: np.ndarray, y: np.ndarray) -> KKTError:
        """KKT error of the unscaled float64 NumPy iterate (products and worst entries
        computed here, compiled)."""
        prog = self.program
        primal, dual, xPx, cx, by = kkt_worst(
            self._A,
            self._P,
            (prog.c, prog.b, x, z, y),
            (self.units.row, self.units.col, self._row_offset),
            self.opts.eps_abs,
            self.opts.eps_rel,
        )
        return kkt_error_of_worst(
            primal,
            dual,
            *self._objectives(xPx, cx, by),
        )

    def primal_infeasibility(self, dy: Any, eps: float, x: Any | None = None) -> Any | None:
        """A Farkas certificate built from the dual direction dy, normalized to b'y = -1
        (host or device arrays; the certificate is on the same side).

        Three tests must pass: SCS's ``||A'y|| <= eps (-b'y)`` on the original data;
        OSQP's ``||A^'y^|| <= eps_s ||y^||`` on the equilibrated data (eps_s = 100 eps);
        and, given the current primal iterate x, a radius test: with b'y = -1 the vector
        rules out every x with ||x||_1 < 1 / ||A'y||_inf, and that radius must exceed
        ``1 / eps_s`` times ||x||_1, so that a problem whose solution is merely large is
        not declared infeasible.
        """
        y = self._farkas(dy, eps)
        if y is None:
            return None
        scaled_eps = _SCALED_FACTOR * eps
        sc = self._scaled(y)
        y_scaled = sc.scaling.scale_y(y)
        if _inf_norm(sc.At @ y_scaled) > scaled_eps * _inf_norm(y_scaled):
            return None
        if x is not None:
            xp = array_namespace(x)
            if _inf_norm(self._data(y).At @ y) * float(xp.sum(xp.abs(x))) > scaled_eps:
                return None
        return y

    def refine_farkas(self, dy: np.ndarray, eps: float) -> np.ndarray | None:
        """A direction nearer a Farkas certificate than the host vector ``dy``, or None.

        An iterate heading for a certificate can stall short of SCS's test (Netlib's
        pang at eps 1e-4: ||A'y|| / (-b'y) stays at 1.3e-6 against eps_infeas 1e-7 for
        800000 iterations of the embedding while the tests on the equilibrated data
        pass). On an LP or QP, with y the polar part of dy normalized to b'y = -1 and
        within ``_REFINE_WINDOW`` eps of the test, the refinement moves y onto the affine
        subspace {A'y = 0, b'y = -1} by the least-norm correction (LSQR) of its entries
        off the polar cone's boundary (the equality rows' and the negative ones: the
        face of the cone y lies in), projects onto the polar cone, and repeats at most
        ``_REFINE_ROUNDS`` times, until the test holds. The result is a candidate only:
        ``certificate`` applies all its tests to it.
        """
        prog = self.program
        if not prog.is_polyhedral:
            return None
        y = dy - self.project(dy)
        by = float(prog.b @ y)
        if not by < 0.0:
            return None
        y = y / -by
        At = self._host_data.At
        if _inf_norm(At @ y) > _REFINE_WINDOW * eps:
            return None
        free = prog.equality_rows
        M = self._farkas_system
        target = np.zeros(M.shape[0])
        target[-1] = -1.0
        for _ in range(_REFINE_ROUNDS):
            face = free | (y < 0.0)
            if not face.any():
                return None
            step = lsqr(
                M[:, face], target - M @ y, atol=0.0, btol=0.0, iter_lim=_REFINE_LSQR_ITERS
            )[0]
            y[face] += step
            y = y - self.project(y)
            by = float(prog.b @ y)
            if by < 0.0 and _inf_norm(At @ y) <= eps * -by:
                break
        return y

    @cached_property
    def _farkas_system(self) -> sp.csc_array:
        """[A'; b'] ((n + 1) x m, CSC): a Farkas certificate solves [A'; b'] y = (0, -1)."""
        prog = self.program
        return sp.vstack([self._host_data.At, sp.csr_array(prog.b[np.newaxis, :])]).tocsc()

    def dual_infeasibility(self, dx: Any, eps: float) -> Any | None:
        """An unboundedness direction built from dx, normalized to c'd = -1 (host or
        device arrays; the direction is on the same side).

        As for the Farkas certificate, the tests are made both relative to c'd on the
        original data and relative to ||d^|| on the equilibrated data.
        """
        d = self._ray(dx, eps)
        if d is None:
            return None
        sc = self._scaled(d)
        d_scaled = sc.scaling.scale_x(d)
        viol = _recession_violation(sc.A, sc.P, self._data(d).project, d_scaled)
        if viol > _SCALED_FACTOR * eps * _inf_norm(d_scaled):
            return None
        return d

    def certificate(
        self,
        dx: Any | None,
        dy: Any | None,
        eps: float,
        x: Any | None = None,
    ) -> tuple[str | None, Any | None]:
        """INFEASIBLE and a Farkas vector, UNBOUNDED and a direction, or (None, None).

        ``dy``/``dx`` are the unscaled dual and primal directions (either may be None),
        ``x`` the current primal iterate for the radius test; host or device arrays.
        """
        if dy is not None:
            cert = self.primal_infeasibility(dy, eps, x)
            if cert is not None:
                return s.INFEASIBLE, cert
        if dx is not None:
            cert = self.dual_infeasibility(dx, eps)
            if cert is not None:
                return s.UNBOUNDED, cert
        return None, None

    def suspects_infeasibility(self, dx: Any, dy: Any, eps: float) -> bool:
        """Whether the directions pass the tests on the original data (a certificate is
        forming); accelerated methods then fall back to plain steps to confirm it."""
        return self._farkas(dy, eps) is not None or self._ray(dx, eps) is not None

    def _farkas(self, dy: Any, eps: float) -> Any | None:
        d = self._data(dy)
        y = dy - d.project(dy)
        by = float(d.b @ y)
        if not by < 0 or _inf_norm(d.At @ y) > eps * -by:
            return None
        return y / -by

    def _ray(self, dx: Any, eps: float) -> Any | None:
        d = self._data(dx)
        cd = float(d.c @ dx)
        if not cd < 0 or _recession_violation(d.A, d.P, d.project, dx) > eps * -cd:
            return None
        return dx / -cd


def _recession_violation(A: Any, P: Any, project: Callable[[Any], Any], d: Any) -> float:
    """max(dist(A d, K), ||P d||): zero exactly when d is a recession direction.

    ``project`` is the projection onto K; A and P (None without P) are on d's side."""
    Ad = A @ d
    viol = _inf_norm(Ad - project(Ad))
    if P is not None:
        viol = max(viol, _inf_norm(P @ d))
    return viol


def _inf_norm(v: Any) -> float:
    """max |v_i| (0 for an empty vector) of a host or device vector, as a float."""
    if v.shape[0] == 0:
        return 0.0
    xp = array_namespace(v)
    return float(xp.max(xp.abs(v)))
