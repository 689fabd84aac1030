"""Public test sets as ordinary CVXPY models.

The data lives outside the repository, in ``<repo>/../shared/data`` (override with the
environment variable ``CVXPROX_DATA``); see the ``README.md`` there.

Netlib (``netlib/*.npz``, SciPy's ``linprog`` format)::

    minimize c'x  s.t.  A_ub x <= b_ub,  A_eq x == b_eq,  lb <= x <= ub

Maros-Meszaros (``maros_meszaros/*.mat``, OSQP format)::

    minimize 0.5 x'Px + q'x + r  s.t.  l <= A x <= u

Both are modelled the way a user would write them: one vector variable ``x``, vectorized
constraints, and only the finite bounds (fixed bounds ``lb == ub`` become equalities).

Example::

    from compare.datasets import load_netlib

    prob, known = load_netlib("AFIRO")
    prob.solve(solver="NABLAPROX")
    assert abs(prob.value - known) <= 1e-4 * max(1.0, abs(known))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import cvxpy as cp
import numpy as np
import scipy.io as sio
import scipy.sparse as sp

#: Maros-Meszaros bounds at or beyond this magnitude mean "no bound" (the files use 1e20;
#: qpbenchmark uses the same 9e19 cut).
MM_INFINITY = 9e19

#: Rows with ``u - l`` below this are equalities (as in qpbenchmark).
MM_EQUALITY_GAP = 1e-10


def data_dir() -> Path:
    """Root of the benchmark data: ``$CVXPROX_DATA`` or ``<repo>/../shared/data``."""
    override = os.environ.get("CVXPROX_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _by_file_size(paths: list[Path]) -> list[str]:
    """Names (file stems) sorted by file size, smallest first, then by name."""
    return [p.stem for p in sorted(paths, key=lambda p: (p.stat().st_size, p.stem))]


def _select(x: cp.Variable, idx: np.ndarray) -> cp.Expression:
    """``x[idx]``, or ``x`` itself when ``idx`` covers every entry in order."""
    return x if idx.size == x.size else x[idx]


def _bound_constraints(x: cp.Variable, lb: np.ndarray, ub: np.ndarray) -> list[cp.Constraint]:
    """Vectorized bound constraints on the finite entries of ``lb`` and ``ub``.

    Entries with ``lb == ub`` become one equality; the result has at most three
    constraints, in the order: fixed (``==``), upper (``<=``), lower (``>=``).
    """
    fixed = lb == ub
    constraints = []
    idx = np.flatnonzero(fixed)
    if idx.size:
        constraints.append(_select(x, idx) == lb[idx])
    idx = np.flatnonzero(np.isfinite(ub) & ~fixed)
    if idx.size:
        constraints.append(_select(x, idx) <= ub[idx])
    idx = np.flatnonzero(np.isfinite(lb) & ~fixed)
    if idx.size:
        constraints.append(_select(x, idx) >= lb[idx])
    return constraints


# --------------------------------------------------------------------------- Netlib


class NetlibData(NamedTuple):
    """One Netlib LP with dense bounds (``-inf``/``inf`` where unbounded)."""

    name: str
    c: np.ndarray
    A_ub: sp.csr_matrix
    b_ub: np.ndarray
    A_eq: sp.csr_matrix
    b_eq: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    obj: float | None  # known optimal value; None for the infeasible set


def _netlib_dir(infeasible: bool) -> Path:
    folder = data_dir() / "netlib"
    return folder / "infeasible" if infeasible else folder


def netlib_path(name: str, infeasible: bool = False) -> Path:
    """The ``.npz`` file of one Netlib LP."""
    return _netlib_dir(infeasible) / f"{name}.npz"


def netlib_problems(infeasible: bool = False) -> list[str]:
    """Names of the Netlib LPs (92 feasible, or 28 infeasible), smallest file first.

    File size is a cheap proxy for the number of nonzeros, so ``[:k]`` is a fast subset.
    """
    return _by_file_size(list(_netlib_dir(infeasible).glob("*.npz")))


def _netlib_bounds(raw: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Convert SciPy ``linprog`` bounds to dense ``(lb, ub)``.

    The files hold an empty array (the ``linprog`` default ``0 <= x``), or ``(1, n, 2)`` /
    ``(n, 2)`` arrays, often of dtype object, where ``None`` means unbounded.
    """
    if raw.size == 0:
        return np.zeros(n), np.full(n, np.inf)
    pairs = np.broadcast_to(raw.reshape(-1, 2), (n, 2))
    lb = np.array([-np.inf if v is None else float(v) for v in pairs[:, 0]])
    ub = np.array([np.inf if v is None else float(v) for v in pairs[:, 1]])
    return lb, ub


def read_netlib(name: str, infeasible: bool = False) -> NetlibData:
    """Read one Netlib LP; the dense matrices in the files are converted to CSR."""
    with np.load(netlib_path(name, infeasible), allow_pickle=True) as f:
        c = np.asarray(f["c"], dtype=float)
        lb, ub = _netlib_bounds(f["bounds"], c.size)
        return NetlibData(
            name=name,
            c=c,
            A_ub=sp.csr_matrix(np.asarray(f["A_ub"], dtype=float).reshape(-1, c.size)),
            b_ub=np.asarray(f["b_ub"], dtype=float).ravel(),
            A_eq=sp.csr_matrix(np.asarray(f["A_eq"], dtype=float).reshape(-1, c.size)),
            b_eq=np.asarray(f["b_eq"], dtype=float).ravel(),
            lb=lb,
            ub=ub,
            # The infeasible files carry a placeholder obj = 0.0: ignore it.
            obj=None if infeasible else float(f["obj"]),
        )


def netlib_problem(data: NetlibData) -> cp.Problem:
    """Build the CVXPY model of a Netlib LP."""
    x = cp.Variable(data.c.size, name="x")
    constraints = []
    if data.A_ub.shape[0]:
        constraints.append(data.A_ub @ x <= data.b_ub)
    if data.A_eq.shape[0]:
        constraints.append(data.A_eq @ x == data.b_eq)
    constraints += _bound_constraints(x, data.lb, data.ub)
    return cp.Problem(cp.Minimize(data.c @ x), constraints)


def load_netlib(name: str, infeasible: bool = False) -> tuple[cp.Problem, float | None]:
    """CVXPY model of a Netlib LP and its known optimal value (None if infeasible)."""
    data = read_netlib(name, infeasible)
    return netlib_problem(data), data.obj


# ------------------------------------------------------------------- Maros-Meszaros


class ConstraintBlock(NamedTuple):
    """Rows of the OSQP-form ``A`` that one CVXPY constraint of the model covers.

    ``kind`` is ``"eq"`` (``A[rows] x == u[rows]``), ``"upper"`` (``<= u[rows]``) or
    ``"lower"`` (``>= l[rows]``); ``bound`` marks rows of the trailing identity block,
    modelled as bounds on ``x[rows - (m - n)]``.
    """

    kind: str
    rows: np.ndarray
    bound: bool


def maros_meszaros_problems() -> list[str]:
    """Names of the 137 Maros-Meszaros QPs, smallest file first."""
    return _by_file_size(list((data_dir() / "maros_meszaros").glob("*.mat")))


def maros_meszaros_path(name: str) -> Path:
    """The ``.mat`` file of one Maros-Meszaros QP."""
    return data_dir() / "maros_meszaros" / f"{name}.mat"


def read_maros_meszaros(name: str) -> dict[str, Any]:
    """Read one Maros-Meszaros QP in OSQP form.

    Returns a dict with ``P`` (CSC, full symmetric), ``q``, ``r`` (float), ``A`` (CSR,
    ``m x n``), ``l``, ``u`` (``+-inf`` where ``|bound| >= 9e19``) and ``n``. The last
    ``n`` rows of ``A`` are the identity: they carry the variable bounds.
    """
    mat = sio.loadmat(str(maros_meszaros_path(name)))
    l = np.asarray(mat["l"], dtype=float).ravel()
    u = np.asarray(mat["u"], dtype=float).ravel()
    l[l <= -MM_INFINITY] = -np.inf
    u[u >= MM_INFINITY] = np.inf
    return {
        "P": sp.csc_matrix(mat["P"], dtype=float),
        "q": np.asarray(mat["q"], dtype=float).ravel(),  # stored as int16 in some files
        "r": float(np.asarray(mat["r"]).ravel()[0]),  # stored as uint16 in some files
        "A": sp.csr_matrix(mat["A"], dtype=float),
        "l": l,
        "u": u,
        "n": int(np.asarray(mat["n"]).ravel()[0]),
    }


def maros_meszaros_blocks(data: dict[str, Any]) -> list[ConstraintBlock]:
    """Constraint blocks of the model, in the order of ``problem.constraints``.

    General rows first (equalities where ``u - l < 1e-10``, then finite upper, then
    finite lower bounds), then the same three kinds for the variable bounds.
    """
    l, u, n = data["l"], data["u"], data["n"]
    equal = u - l < MM_EQUALITY_GAP
    is_bound = np.arange(l.size) >= l.size - n
    blocks = []
    for bound in (False, True):
        for kind, mask in (
            ("eq", equal),
            ("upper", np.isfinite(u) & ~equal),
            ("lower", np.isfinite(l) & ~equal),
        ):
            rows = np.flatnonzero(mask & (is_bound == bound))
            if rows.size:
                blocks.append(ConstraintBlock(kind, rows, bound))
    return blocks


def maros_meszaros_problem(data: dict[str, Any]) -> cp.Problem:
    """Build the CVXPY model ``minimize 0.5 x'Px + q'x + r s.t. l <= Ax <= u``."""
    A, l, u, n = data["A"], data["l"], data["u"], data["n"]
    m_c = A.shape[0] - n
    x = cp.Variable(n, name="x")
    constraints = []
    for block in maros_meszaros_blocks(data):
        rhs = l[block.rows] if block.kind == "lower" else u[block.rows]
        expr = _select(x, block.rows - m_c) if block.bound else A[block.rows] @ x
        if block.kind == "eq":
            constraints.append(expr == rhs)
        elif block.kind == "upper":
            constraints.append(expr <= rhs)
        else:
            constraints.append(expr >= rhs)
    # psd_wrap: P is PSD by construction; skip CVXPY's (slow, sparse) eigenvalue check.
    objective = 0.5 * cp.quad_form(x, cp.psd_wrap(data["P"])) + data["q"] @ x + data["r"]
    return cp.Problem(cp.Minimize(objective), constraints)


def load_maros_meszaros(name: str) -> tuple[cp.Problem, dict[str, Any]]:
    """CVXPY model of a Maros-Meszaros QP and its raw data (see ``read_maros_meszaros``)."""
    data = read_maros_meszaros(name)
    return maros_meszaros_problem(data), data
