"""ADMM and HQS on Programs, and the x-update solvers, against CVXPY + Clarabel."""

from __future__ import annotations

from collections.abc import Sequence

import cvxpy as cp
import cvxpy.settings as s
import numpy as np
import pytest

from cvxprox.backend import get_backend
from cvxprox.functions.cones import NonnegCone, ZeroCone
from cvxprox.functions.prox import Huber, Norm1, ProxFunction, SumSquares
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import Program, Term
from cvxprox.operators.linops import (
    Conv2D,
    Convolve1D,
    Diagonal,
    FiniteDiff,
    Gather,
    Identity,
    LinOp,
    MatrixOp,
    ScalarMultiple,
)
from cvxprox.solvers.admm import xupdate
from cvxprox.solvers.admm.split import HQS, StructuredADMM
from cvxprox.solvers.admm.xupdate import (
    CGXUpdate,
    DenseCholeskyXUpdate,
    GramXUpdate,
    NormalOperator,
    SparseLDLXUpdate,
    WoodburyXUpdate,
    make_xupdate,
)
from cvxprox.solvers.common.algorithm import Algorithm
from cvxprox.solvers.common.result import SolveResult

TIGHT = {"eps_abs": 1e-8, "eps_rel": 1e-8}


def _term(function: ProxFunction, op: LinOp, b: np.ndarray | None = None, label: str = "") -> Term:
    return Term(function, op, np.zeros(op.shape[0]) if b is None else b, label)


def _solve(
    program: Program,
    algorithm: type[Algorithm] = StructuredADMM,
    warm_start: dict | None = None,
    **options: float,
) -> SolveResult:
    opts = SolverOptions(**{**TIGHT, **options})
    return algorithm(program, opts, warm_start).solve("test")


def _clarabel(objective: cp.Expression, constraints: Sequence[cp.Constraint] = ()) -> cp.Problem:
    problem = cp.Problem(cp.Minimize(objective), list(constraints))
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    assert problem.status == cp.OPTIMAL
    return problem


def _assert_matches(result: SolveResult, reference: cp.Problem) -> None:
    assert result.status == s.OPTIMAL
    objective = result.kkt.primal_objective  # indicators hold to the primal tolerance only
    assert abs(objective - reference.value) <= 1e-5 * max(1.0, abs(reference.value))
    x_ref = np.concatenate([v.value.flatten(order="F") for v in reference.variables()])
    assert np.max(np.abs(result.x - x_ref)) <= 1e-4 * max(1.0, np.max(np.abs(x_ref)))


def _lasso(m: int, n: int, lam: float) -> tuple[Program, cp.Problem]:
    rng = np.random.default_rng(m + n)
    A = rng.standard_normal((m, n))
    b = A @ (rng.standard_normal(n) * (rng.random(n) < 0.2)) + 0.1 * rng.standard_normal(m)
    program = Program(
        np.zeros(n),
        [_term(SumSquares(m), MatrixOp(A), b, "fit"), _term(Norm1(n, lam), Identity(n))],
    )
    x = cp.Variable(n)
    reference = _clarabel(cp.sum_squares(A @ x - b) + lam * cp.norm1(x))
    return program, reference


@pytest.mark.parametrize(("m", "n", "kind"), [(40, 120, "Woodbury"), (120, 40, "dense Cholesky")])
def test_lasso(m: int, n: int, kind: str) -> None:
    program, reference = _lasso(m, n, lam=2.0)
    result = _solve(program)
    assert kind in result.info["x_update"]
    _assert_matches(result, reference)


def test_tv_denoising_1d_cosine_gram() -> None:
    rng = np.random.default_rng(1)
    n, lam = 200, 0.5
    b = np.repeat(rng.standard_normal(8), n // 8) + 0.3 * rng.standard_normal(n)
    D = FiniteDiff((n,), 0)
    program = Program(
        np.zeros(n),
        [_term(SumSquares(n), Identity(n), b), _term(Norm1(n - 1, lam), D)],
    )
    result = _solve(program)
    assert result.info["x_update"] == "x-update: DCT-diagonal Gram (exact)"
    x = cp.Variable(n)
    reference = _clarabel(cp.sum_squares(x - b) + lam * cp.norm1(cp.diff(x)))
    _assert_matches(result, reference)


def _deconvolution_2d() -> tuple[Program, cp.Problem]:
    rng = np.random.default_rng(2)
    shape, lam = (12, 10), 0.05
    kernel = rng.random((3, 3))
    K = Conv2D(kernel, shape, "circular")
    image = (rng.random(shape) < 0.2).astype(float)
    b = K.matvec(image.flatten(order="F")) + 0.01 * rng.standard_normal(K.shape[0])
    n = K.shape[1]
    program = Program(np.zeros(n), [_term(SumSquares(n), K, b), _term(Norm1(n, lam), Identity(n))])
    x = cp.Variable(n)
    reference = _clarabel(cp.sum_squares(K.to_sparse() @ x - b) + lam * cp.norm1(x))
    return program, reference


def test_deconvolution_2d_fourier_gram() -> None:
    program, reference = _deconvolution_2d()
    result = _solve(program)
    assert result.info["x_update"] == "x-update: FFT-diagonal Gram (exact)"
    _assert_matches(result, reference)


def _deblur_1d() -> tuple[Program, cp.Problem]:
    rng = np.random.default_rng(3)
    n, lam = 120, 0.2
    kernel = np.array([0.2, 0.5, 0.3])
    C = Convolve1D(kernel, n)
    signal = np.repeat(rng.standard_normal(6), n // 6)
    b = C.matvec(signal) + 0.05 * rng.standard_normal(C.shape[0])
    D = FiniteDiff((n,), 0)
    program = Program(
        np.zeros(n), [_term(SumSquares(C.shape[0]), C, b), _term(Norm1(n - 1, lam), D)]
    )
    x = cp.Variable(n)
    reference = _clarabel(cp.sum_squares(cp.convolve(kernel, x) - b) + lam * cp.norm1(cp.diff(x)))
    return program, reference


def test_deblurring_conjugate_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    program, reference = _deblur_1d()
    monkeypatch.setattr(xupdate, "ASSEMBLY_NNZ_LIMIT", 0)
    result = _solve(program)
    assert "conjugate gradients with Jacobi" in result.info["x_update"]
    assert result.info["cg_iterations"] > 0
    _assert_matches(result, reference)


def test_deblurring_conjugate_gradients_on_assembled_h(monkeypatch: pytest.MonkeyPatch) -> None:
    program, reference = _deblur_1d()
    monkeypatch.setattr(xupdate, "_FILL_LIMIT", 0)
    result = _solve(program)
    assert "H assembled sparse" in result.info["x_update"]
    assert result.info["cg_iterations"] > 0
    _assert_matches(result, reference)


def test_deblurring_sparse_ldl() -> None:
    program, reference = _deblur_1d()
    result = _solve(program)
    assert "sparse LDL'" in result.info["x_update"]
    _assert_matches(result, reference)


def test_huber_regression_nonneg() -> None:
    rng = np.random.default_rng(4)
    m, n = 80, 30
    A = rng.standard_normal((m, n))
    b = A @ rng.standard_normal(n) + rng.standard_normal(m) * (rng.random(m) < 0.1) * 10
    program = Program(
        np.zeros(n),
        [_term(Huber(m, M=1.0), MatrixOp(A), b), _term(NonnegCone(n), Identity(n))],
    )
    result = _solve(program)
    x = cp.Variable(n)
    reference = _clarabel(cp.sum(cp.huber(A @ x - b, 1.0)), [x >= 0])
    _assert_matches(result, reference)


def test_equality_constraint_dual() -> None:
    rng = np.random.default_rng(5)
    n, p = 30, 5
    C = rng.standard_normal((p, n))
    d = rng.standard_normal(p)
    b = rng.standard_normal(n)
    c = rng.standard_normal(n)
    program = Program(
        c,
        [
            _term(SumSquares(n, 0.5), Identity(n), b),
            _term(Norm1(n, 0.3), Identity(n)),
            _term(ZeroCone(p), MatrixOp(C), d, "C x == d"),
        ],
    )
    result = _solve(program)
    x = cp.Variable(n)
    constraint = C @ x == d
    reference = _clarabel(c @ x + 0.5 * cp.sum_squares(x - b) + 0.3 * cp.norm1(x), [constraint])
    _assert_matches(result, reference)
    y_eq = result.y[2 * n :]
    # CVXPY's Lagrangian is f(x) + nu'(C x - d) as well: the duals agree without a flip.
    assert np.allclose(y_eq, constraint.dual_value, atol=1e-5)


def test_hqs_deconvolution() -> None:
    program, reference = _deconvolution_2d()
    result = _solve(program, HQS, eps_abs=1e-4, eps_rel=1e-4)
    assert result.status == s.OPTIMAL
    assert result.info["x_update"] == "x-update: FFT-diagonal Gram (exact)"
    # A penalty method: accurate to about the tolerance.
    relative = abs(result.kkt.primal_objective - reference.value) / abs(reference.value)
    assert relative <= 1e-3


def test_warm_start_takes_fewer_iterations() -> None:
    program, _ = _lasso(40, 120, lam=2.0)
    cold = _solve(program)
    warm = _solve(program, warm_start=cold.info["warm_start"])
    assert warm.status == s.OPTIMAL
    assert warm.iterations < cold.iterations


def test_iteration_limit_is_a_user_limit() -> None:
    program, _ = _lasso(40, 120, lam=2.0)
    result = _solve(program, max_iters=5)
    assert result.status == s.USER_LIMIT
    assert result.info["limit"] == "max_iters"
    assert result.iterations == 5
    assert result.x is not None and result.kkt is not None


def test_infeasible_bounds() -> None:
    n = 10
    program = Program(
        np.zeros(n),
        [
            _term(Norm1(n), Identity(n)),
            _term(NonnegCone(n), Identity(n), np.ones(n), "x >= 1"),
            _term(NonnegCone(n), ScalarMultiple(-1.0, Identity(n)), None, "x <= 0"),
        ],
    )
    result = _solve(program)
    assert result.status == s.INFEASIBLE
    assert result.iterations <= 500
    y = result.y
    assert np.all(y[n:] <= 0) and np.allclose(y[:n], 0)
    Aty = y[n : 2 * n] - y[2 * n :]
    assert np.max(np.abs(Aty)) <= 1e-6
    assert np.isclose(np.ones(n) @ y[n : 2 * n], -1.0)


def test_unused_variable() -> None:
    rng = np.random.default_rng(7)
    n = 6
    b = rng.standard_normal(4)
    fit = _term(SumSquares(4), Gather(np.arange(4), n), b)
    sparse = _term(Norm1(4, 0.1), Gather(np.arange(4), n))
    result = _solve(Program(np.zeros(n), [fit, sparse]))
    assert result.status == s.OPTIMAL
    assert result.info["sigma"] > 0
    assert np.allclose(result.x[:4], np.sign(b) * np.maximum(np.abs(b) - 0.05, 0), atol=1e-6)
    c = np.zeros(n)
    c[5] = 2.0
    unbounded = _solve(Program(c, [fit, sparse]))
    assert unbounded.status == s.UNBOUNDED
    assert np.isclose(c @ unbounded.x, -1.0)


def _normal_parts(kind: str) -> tuple[int, list[LinOp], list[float | np.ndarray]]:
    """Operators and weights of a NormalOperator that the given solver handles."""
    rng = np.random.default_rng(8)
    n = 300 if kind in ("sparse", "fill") else 48
    if kind == "diagonal":
        index = rng.integers(0, n, 70)
        return n, [Gather(index, n), Identity(n)], [rng.random(70), rng.random(n) + 0.1]
    if kind == "cosine":
        return n, [FiniteDiff((n,), 0), Identity(n)], [1.0, 2.0 * np.ones(n)]
    if kind == "cosine2d":
        return n, [FiniteDiff((8, 6), 0), Identity(n)], [1.0, 2.0 * np.ones(n)]
    if kind == "fourier":
        return n, [Conv2D(rng.random((2, 3)), (8, 6), "circular"), Identity(n)], [1.0, 0.5]
    if kind == "woodbury":
        B = MatrixOp(rng.standard_normal((20, n)))
        return n, [B, Diagonal(rng.random(n) + 0.5)], [2.0 * rng.random(20), 1.0]
    if kind == "dense":
        return n, [MatrixOp(rng.standard_normal((60, n))), FiniteDiff((n,), 0)], [1.0, 1.0]
    C = Convolve1D(np.array([1.0, -0.5, 0.25]), n)
    return n, [C, FiniteDiff((n,), 0)], [rng.random(n + 2), 1.0]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(
    ("kind", "cls", "limit"),
    [
        ("diagonal", GramXUpdate, None),
        ("cosine", GramXUpdate, None),
        ("cosine2d", GramXUpdate, None),
        ("fourier", GramXUpdate, None),
        ("woodbury", WoodburyXUpdate, None),
        ("dense", DenseCholeskyXUpdate, None),
        ("sparse", SparseLDLXUpdate, None),
        ("sparse", CGXUpdate, 0),
        ("fill", CGXUpdate, None),
    ],
)
def test_xupdate_solvers(
    kind: str, cls: type, limit: float | None, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each x-update solves H x = r on its backend's vectors (torch: the Gram solves by
    torch's FFT, the DCT by FFTs, the Cholesky factors on the device, CG in torch, the
    sparse LDL' factor on the host), before and after a change of the scales. "fill" is
    the sparse case whose factor is refused: CG on the assembled H."""
    if backend == "torch":
        pytest.importorskip("torch")
    if kind == "fill":
        monkeypatch.setattr(xupdate, "_FILL_LIMIT", 0)
    device = get_backend(backend)
    n, ops, weights = _normal_parts(kind)
    normal = NormalOperator(n, ops, weights, np.array([1.0, 3.0]))
    solver = make_xupdate(normal, limit, device)
    assert isinstance(solver, cls)
    assert ("H assembled sparse" in solver.description) == (kind == "fill")
    rhs = np.random.default_rng(9).standard_normal(n)

    def solve() -> np.ndarray:
        return device.to_host(solver.solve(device.asarray(rhs), device.zeros(n)))

    H = np.column_stack([normal.matvec(e) for e in np.eye(n)])
    solver.set_tolerance(1e-12)
    assert np.allclose(H @ solve(), rhs, atol=1e-9)
    solver.rescale(np.array([2.0, 0.5]))
    H = np.column_stack([normal.matvec(e) for e in np.eye(n)])
    assert np.allclose(H @ solve(), rhs, atol=1e-9)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_anderson_acceleration_cuts_the_iterations_of_tv_inpainting(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """TV inpainting (20 x 20, 60% missing, in [0, 1]) at eps 1e-6: ADMM with Anderson
    acceleration of its prox arguments takes less than half the plain iterations (with
    no room for a memory, ``_AA_STORAGE`` = 0), and both reach Clarabel's value, on
    NumPy and on torch (its steps on the device's arrays)."""
    if backend == "torch":
        pytest.importorskip("torch")
    from compare.suites.structured import build_tv_inpainting  # noqa: PLC0415
    from cvxprox.solvers.admm import split  # noqa: PLC0415

    reference = build_tv_inpainting(size=20)
    reference.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    iterations = {}
    default = split._AA_STORAGE  # noqa: SLF001
    for storage in (default, 0):
        monkeypatch.setattr(split, "_AA_STORAGE", storage)
        prob = build_tv_inpainting(size=20)
        prob.solve(
            solver="NABLAPROX", eps_abs=1e-6, eps_rel=1e-6, backend=backend, algorithm="admm"
        )
        assert prob.status == cp.OPTIMAL
        assert prob.value == pytest.approx(reference.value, rel=1e-5)
        iterations[storage] = prob.solver_stats.num_iters
        memory = prob.solver_stats.extra_stats["anderson_memory"]
        assert memory == (split._AA_MEMORY if storage else 0)  # noqa: SLF001
    assert iterations[default] < iterations[0] / 2


def test_no_anderson_acceleration_with_conjugate_gradients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Conjugate gradients' inexact x-updates change the map from one iteration to the
    next: ADMM then runs plain (L1-TV denoising, a factor's fill limit of 0 forcing CG),
    and still reaches Clarabel's value."""
    monkeypatch.setattr(xupdate, "_FILL_LIMIT", 0)
    noisy = np.random.default_rng(5).random((12, 12))
    X = cp.Variable((12, 12))
    prob = cp.Problem(cp.Minimize(cp.norm1(X - noisy) + 0.5 * cp.tv(X)))
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    value = prob.value
    prob.solve(solver="NABLAPROX", eps_abs=1e-6, eps_rel=1e-6)
    stats = prob.solver_stats.extra_stats
    assert stats["algorithm"] == "admm"
    assert "conjugate gradients" in stats["x_update"]
    assert stats["anderson_memory"] == 0
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(value, rel=1e-5)
