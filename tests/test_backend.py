"""Array backends (``cvxprox.backend``): PDHG, the cone projections and the structured
terms' proxes and operators on torch and CuPy.

The torch backend runs on the CPU in CI; the same tests with CuPy on a GPU are marked
``gpu`` and skipped where CuPy or a CUDA device is missing. Each solve is compared with
the NumPy backend (same algorithm: objectives within 1e-7 relative) and with Clarabel
at tight tolerance; each cone projection with the NumPy projection to 1e-12.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp
from cvxpy.tests import solver_test_helpers as sths

import cvxprox
from cvxprox.backend import Backend, get_backend
from cvxprox.functions.cones import (
    Cone,
    ExpCone,
    NonnegCone,
    PowCone3D,
    ProductCone,
    PSDCone,
    SecondOrderCone,
    ZeroCone,
)

torch = pytest.importorskip("torch")

from device_options import cupy_options, torch_cuda_options  # noqa: E402
from test_fista_ladmm import (  # noqa: E402
    EPS,
    _constrained_ls,
    _deconvolution,
    _equality,
    _nnls,
    _tv1d,
    _tv2d,
)

from cvxprox.functions.prox import (  # noqa: E402
    Box,
    GroupL2,
    Huber,
    KLDiv,
    L1Ball,
    L2Ball,
    LinfBall,
    Logistic,
    NegEntropy,
    Norm1,
    Norm2,
    OnHost,
    Simplex,
    SumSquares,
)
from cvxprox.interface.options import SolverOptions  # noqa: E402
from cvxprox.ir.program import Program, Term  # noqa: E402
from cvxprox.operators.linops import (  # noqa: E402
    BlockDiagonal,
    Compose,
    Conv2D,
    Convolve1D,
    Diagonal,
    FiniteDiff,
    FourierSample,
    Gather,
    Identity,
    MatrixOp,
    ScalarMultiple,
    Sum,
    VStack,
)
from cvxprox.solvers.admm.split import StructuredADMM  # noqa: E402
from cvxprox.solvers.pdhg import PDHG as PDHG_METHOD  # noqa: E402

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
PDHG = {
    "algorithm": "pdhg",
    "eps_abs": 1e-7,
    "eps_rel": 1e-7,
    "warm_start": False,
    "structure": "never",
}


BACKENDS = [
    pytest.param(lambda: {"backend": "torch"}, id="torch"),
    pytest.param(cupy_options, id="cupy", marks=pytest.mark.gpu),
    pytest.param(torch_cuda_options, id="torch-cuda", marks=pytest.mark.gpu),
]


def _backend(options: dict[str, str], dtype: str = "float64") -> Backend:
    return get_backend(options["backend"], options.get("device", "cpu"), dtype)


# --------------------------------------------------------------------------------------------
# Whole solves
# --------------------------------------------------------------------------------------------


def _random_lp() -> cp.Problem:
    rng = np.random.default_rng(0)
    A = rng.standard_normal((30, 20))
    x = cp.Variable(20)
    b = A @ rng.random(20) + rng.random(30)
    c = rng.standard_normal(20)
    return cp.Problem(cp.Minimize(c @ x), [A @ x <= b, x >= -1, x <= 2])


def _random_qp() -> cp.Problem:
    """A QP whose P is not diagonal (PDHG linearizes it)."""
    rng = np.random.default_rng(1)
    M = rng.standard_normal((15, 10))
    x = cp.Variable(10)
    G = rng.standard_normal((8, 10))
    return cp.Problem(
        cp.Minimize(cp.sum_squares(M @ x - 1) + rng.standard_normal(10) @ x),
        [G @ x <= 1, cp.sum(x) == 1],
    )


MODELS: dict[str, Callable[[], cp.Problem]] = {
    "lp_1": lambda: sths.lp_1().prob,
    "lp_random": _random_lp,
    "qp_0": lambda: sths.qp_0().prob,
    "qp_random": _random_qp,
    "socp_1": lambda: sths.socp_1().prob,
    "expcone_1": lambda: sths.expcone_1().prob,
    "pcp_1": lambda: sths.pcp_1().prob,
    "sdp_1min": lambda: sths.sdp_1("min").prob,
}


@pytest.fixture(scope="module")
def references() -> dict[str, tuple[float, float]]:
    """Per model: Clarabel's objective at tight tolerance and the NumPy PDHG's."""
    out = {}
    for name, make in MODELS.items():
        prob = make()
        prob.solve(solver="CLARABEL", **TIGHT)
        assert prob.status == cp.OPTIMAL
        clarabel = prob.value
        prob = make()
        prob.solve(solver="NABLAPROX", **PDHG)
        assert prob.status == cp.OPTIMAL
        out[name] = (clarabel, prob.value)
    return out


@pytest.mark.parametrize("options", BACKENDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_pdhg_matches_numpy(
    name: str, options: Callable[[], dict[str, str]], references: dict
) -> None:
    """The same PDHG on another backend: the NumPy objective to 1e-7 (torch on the CPU;
    1e-6 on a GPU, whose reductions sum in another order), Clarabel's to 1e-5."""
    opts = options()
    clarabel, numpy_value = references[name]
    prob = MODELS[name]()
    prob.solve(solver="NABLAPROX", **PDHG, **opts)
    assert prob.status == cp.OPTIMAL
    assert prob.solver_stats.extra_stats["algorithm"] == "pdhg"
    rel = 1e-7 if opts.get("device", "cpu") == "cpu" else 1e-6
    assert prob.value == pytest.approx(numpy_value, rel=rel, abs=1e-9)
    assert prob.value == pytest.approx(clarabel, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("options", BACKENDS)
def test_float32(options: Callable[[], dict[str, str]], references: dict) -> None:
    """dtype='float32' iterates in single precision and reaches a loose tolerance."""
    prob = _random_lp()
    prob.solve(solver="NABLAPROX", **{**PDHG, "eps_abs": 1e-4, "eps_rel": 1e-4}, **options())
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(references["lp_random"][0], rel=1e-3)


@pytest.mark.parametrize("options", BACKENDS)
def test_auto_picks_as_on_numpy_and_warm_starts(options: Callable[[], dict[str, str]]) -> None:
    """algorithm='auto' picks the method it picks on NumPy (ADMM for this SOCP); a warm
    start from the solution takes fewer iterations."""
    opts = options()
    prob = sths.socp_1().prob
    compiled = cvxprox.compile(prob, **opts)
    assert compiled.algorithm == cvxprox.compile(prob).algorithm == "admm"
    prob.solve(solver="NABLAPROX", eps_abs=1e-7, eps_rel=1e-7, **opts)
    assert prob.status == cp.OPTIMAL
    cold = prob.solver_stats.num_iters
    prob.solve(solver="NABLAPROX", eps_abs=1e-7, eps_rel=1e-7, warm_start=True, **opts)
    assert prob.status == cp.OPTIMAL
    assert prob.solver_stats.num_iters < cold


# --------------------------------------------------------------------------------------------
# The backend protocol
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "options",
    [pytest.param(lambda: {"backend": "numpy"}, id="numpy"), *BACKENDS],
)
def test_csr_products(options: Callable[[], dict[str, str]], dtype: str) -> None:
    """csr(A) @ x and csr(A') @ y on the device equal SciPy's products on the host."""
    backend = _backend(options(), dtype)
    rng = np.random.default_rng(2)
    A = sp.random(40, 25, density=0.2, random_state=3, format="coo")
    x, y = rng.standard_normal(25), rng.standard_normal(40)
    tol = 1e-12 if dtype == "float64" else 1e-5
    Ax = backend.to_host(backend.csr(A) @ backend.asarray(x))
    Aty = backend.to_host(backend.csr(A.T) @ backend.asarray(y))
    np.testing.assert_allclose(Ax, A @ x, rtol=tol, atol=tol)
    np.testing.assert_allclose(Aty, A.T @ y, rtol=tol, atol=tol)
    assert Ax.dtype == np.float64
    z = backend.zeros(7)
    assert backend.to_host(z).shape == (7,)
    assert backend.scalar(backend.asarray(x) @ backend.asarray(x)) == pytest.approx(x @ x, tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "options",
    [pytest.param(lambda: {"backend": "numpy"}, id="numpy"), *BACKENDS],
)
def test_combine(options: Callable[[], dict[str, str]], dtype: str) -> None:
    """combine(a, v) = sum_i a_i v_i for one to four vectors, in the backend's dtype (the
    NumPy backend's compiled passes for two and three)."""
    backend = _backend(options(), dtype)
    rng = np.random.default_rng(5)
    vectors = [rng.standard_normal(33) for _ in range(4)]
    coefficients = [0.5, -2.0, 3.0, 1e-3]
    tol = 1e-13 if dtype == "float64" else 1e-5
    for count in (1, 2, 3, 4):
        a, vs = coefficients[:count], vectors[:count]
        out = backend.combine(a, [backend.asarray(v) for v in vs])
        assert out.dtype == backend.dtype
        expected = sum(ai * v for ai, v in zip(a, vs, strict=True))
        np.testing.assert_allclose(backend.to_host(out), expected, rtol=tol, atol=tol)


# --------------------------------------------------------------------------------------------
# Cone projections on the device
# --------------------------------------------------------------------------------------------


def _cones() -> dict[str, Cone]:
    return {
        "zero": ZeroCone(7),
        "nonneg": NonnegCone(9),
        "soc": SecondOrderCone([1, 4, 3, 4, 2, 4]),
        "psd": PSDCone([1, 3, 2, 3, 4]),
        "exp": ExpCone(40),
        "pow3d": PowCone3D(np.linspace(0.1, 0.9, 40)),
        "product": ProductCone([ZeroCone(2), NonnegCone(3), SecondOrderCone([3]), ExpCone(5)]),
    }


def _points(cone: Cone, seed: int) -> np.ndarray:
    """Random points with entries over many magnitudes, some exactly zero."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(cone.dim) * 10.0 ** rng.integers(-6, 7, cone.dim)
    v[rng.random(cone.dim) < 0.1] = 0.0
    return v


@pytest.mark.parametrize("options", BACKENDS)
@pytest.mark.parametrize("name", list(_cones()))
def test_cone_projections_match_numpy(name: str, options: Callable[[], dict[str, str]]) -> None:
    """project and project_polar on device arrays equal the NumPy projections to 1e-12."""
    backend = _backend(options())
    host_cone, device_cone = _cones()[name], _cones()[name]
    for seed in range(5):
        v = _points(host_cone, seed)
        scale = max(1.0, float(np.max(np.abs(v))))
        for method in ("project", "project_polar"):
            expected = getattr(host_cone, method)(v)
            got = getattr(device_cone, method)(backend.asarray(v))
            assert type(got) is type(backend.asarray(v))
            np.testing.assert_allclose(backend.to_host(got), expected, rtol=0, atol=1e-12 * scale)


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------


def _lp_problem() -> cp.Problem:
    return sths.lp_1().prob


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="option 'backend' must be one of"):
        _lp_problem().solve(solver="NABLAPROX", backend="jax")


def test_bad_device() -> None:
    with pytest.raises(ValueError, match="option 'device' must be one of"):
        _lp_problem().solve(solver="NABLAPROX", device="tpu")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "numpy", "device": "cuda"}, "backend='numpy' runs on the CPU"),
        ({"backend": "cupy"}, "backend='cupy' runs on a GPU: pass device='cuda'"),
    ],
)
def test_backend_device_mismatch(options: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _lp_problem().solve(solver="NABLAPROX", **options)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_cuda_without_cupy() -> None:
    """device='cuda' without CuPy says what to install."""
    message = r"device='cuda' needs CuPy \(pip install cvxprox\[gpu\]\) or backend='torch'"
    with pytest.raises(ValueError, match=message):
        _lp_problem().solve(solver="NABLAPROX", device="cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch has CUDA here")
def test_torch_cuda_without_gpu() -> None:
    with pytest.raises(ValueError, match="needs a CUDA build of torch and a GPU"):
        _lp_problem().solve(solver="NABLAPROX", backend="torch", device="cuda")


def test_torch_runs_the_forced_algorithm() -> None:
    """algorithm='admm' runs ADMM on torch too, to NumPy's objective."""
    prob = _lp_problem()
    prob.solve(solver="NABLAPROX", algorithm="admm")
    reference = prob.value
    prob.solve(solver="NABLAPROX", backend="torch", algorithm="admm")
    assert prob.solver_stats.extra_stats["algorithm"] == "admm"
    assert prob.value == pytest.approx(reference, rel=1e-7)


# --------------------------------------------------------------------------------------------
# Structured programs
# --------------------------------------------------------------------------------------------

STRUCTURED = {
    "tv1d": _tv1d,
    "tv2d": _tv2d,
    "deconvolution": _deconvolution,
    "nnls": _nnls,
    "constrained_ls": _constrained_ls,
    "equality": _equality,
}


@pytest.mark.parametrize("options", BACKENDS)
@pytest.mark.parametrize("name", list(STRUCTURED))
def test_structured_pdhg_matches_numpy(name: str, options: Callable[[], dict[str, str]]) -> None:
    """PDHG on a Program (l1 of finite differences, group l2 of a 2-D gradient,
    an FFT convolution, sums of squares, nonnegativity, boxes, equalities) on another
    backend: NumPy's objective to 1e-7 relative and its solution to 1e-7 (1e-6 on a GPU)."""
    opts = options()
    program = STRUCTURED[name]()[0]
    solve = {"eps_abs": EPS, "eps_rel": EPS}
    reference = PDHG_METHOD(program, SolverOptions(**solve)).solve()
    result = PDHG_METHOD(program, SolverOptions(**solve, **opts)).solve()
    assert reference.status == result.status == cp.OPTIMAL
    rel = 1e-7 if opts.get("device", "cpu") == "cpu" else 1e-6
    assert result.kkt.primal_objective == pytest.approx(
        reference.kkt.primal_objective, rel=rel, abs=1e-9
    )
    np.testing.assert_allclose(result.x, reference.x, rtol=0, atol=10 * rel)


def _count_copies(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The shapes of the vectors ``TorchBackend.to_host`` copies from now on."""
    from cvxprox.backend.torch import TorchBackend  # noqa: PLC0415

    copies = []
    to_host = TorchBackend.to_host

    def counted(self: TorchBackend, a: object) -> np.ndarray:
        copies.append(tuple(a.shape))
        return to_host(self, a)

    monkeypatch.setattr(TorchBackend, "to_host", counted)
    return copies


def test_structured_checks_read_back_scalars_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """On torch a structured solve copies no vector to the host but the returned x, z, y
    (the last iterate, or the best one when a limit stops the run): steps, termination
    tests and restarts read back scalars only."""
    copies = _count_copies(monkeypatch)
    program = _tv2d()[0]
    result = PDHG_METHOD(program, SolverOptions(eps_abs=EPS, eps_rel=EPS, backend="torch")).solve()
    assert result.status == cp.OPTIMAL and result.iterations > 100
    assert copies == [(program.n,), (program.m,), (program.m,)]
    limited = PDHG_METHOD(program, SolverOptions(backend="torch", max_iters=3)).solve()
    assert limited.status == cp.USER_LIMIT and isinstance(limited.x, np.ndarray)
    assert len(copies) == 6


def test_inner_tv_prox_stays_on_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """FISTA on TV deblurring takes the TV prox by an inner dual solver at every outer
    step (``TVProxTerm``); on torch its data and iterates stay on the device: a solve
    copies no vector to the host but the returned x, z, y."""
    from compare.suites.structured import build_tv_deblurring  # noqa: PLC0415

    copies = _count_copies(monkeypatch)
    prob = build_tv_deblurring(size=16)
    prob.solve(solver="NABLAPROX", algorithm="fista", backend="torch")
    assert prob.status == cp.OPTIMAL and prob.solver_stats.num_iters > 10
    assert prob.solver_stats.extra_stats["inner_iterations"] > prob.solver_stats.num_iters
    assert len(copies) == 3


@pytest.mark.parametrize("options", BACKENDS)
def test_structured_host_prox(options: Callable[[], dict[str, str]]) -> None:
    """A term whose prox runs on NumPy arrays only (CVXPY's 1-D tv lowers to the tv1d
    prox, a sequential walk) is evaluated on the host (``OnHost``) inside a device solve:
    NumPy's objective and solution to 1e-7."""
    opts = options()
    x = cp.Variable(30)
    y = np.sin(np.linspace(0, 3, 30))
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - y) + cp.tv(x)))
    prob.solve(solver="NABLAPROX", structure="always", eps_abs=EPS, eps_rel=EPS)
    reference, x_ref = prob.value, x.value
    prob.solve(solver="NABLAPROX", structure="always", eps_abs=EPS, eps_rel=EPS, **opts)
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(reference, rel=1e-7)
    np.testing.assert_allclose(x.value, x_ref, rtol=0, atol=1e-7)


@pytest.mark.parametrize("options", BACKENDS)
def test_device_proxes_and_operators(options: Callable[[], dict[str, str]]) -> None:
    """Each prox, prox_conj and gradient with a device version, and each operator's
    products, on the backend's arrays against NumPy to 1e-12 (device functions keep
    their names; one without a device version, logistic, runs on the host: ``OnHost``);
    operators without device products raise, naming themselves."""
    backend = _backend(options())
    rng = np.random.default_rng(3)
    m = 6
    functions = [
        ZeroCone(m),
        NonnegCone(m),
        Box(-rng.random(m), rng.random(m)),
        Box(0.0, np.inf, m),
        Norm1(m, rng.random(m)),
        SumSquares(m, 0.5),
        Huber(m, 0.5, rng.random(m)),
        Norm2(m, 0.7),
        Norm2(m, 100.0),
        GroupL2(m, 2, rng.random(3)),
        Logistic(m, rng.random(m)),
    ]
    for f in functions:
        device = f.on(backend)
        v = 2.0 * rng.standard_normal(m)
        pairs = [
            (device.prox(backend.asarray(v), 0.7), f.prox(v, 0.7)),
            (device.prox_conj(backend.asarray(v), 0.7), f.prox_conj(v, 0.7)),
        ]
        if f.smooth:
            pairs.append((device.grad(backend.asarray(v)), f.grad(v)))
        for got, want in pairs:
            np.testing.assert_allclose(backend.to_host(got), want, rtol=0, atol=1e-12)
        assert device.describe() == f.describe()
    assert isinstance(Logistic(m).on(backend), OnHost)
    n = 7
    operators = [
        Identity(n),
        Diagonal(rng.random(n)),
        Gather(np.array([0, 3, 3, 6]), n),
        MatrixOp(rng.random((5, n))),
        MatrixOp(sp.random(5, n, density=0.4, random_state=1)),
        Convolve1D(rng.random(3), n),
        FiniteDiff((n,), k=2),
        Compose(FiniteDiff(6), MatrixOp(rng.random((6, n)))),
        VStack([FiniteDiff(n), ScalarMultiple(2.0, Identity(n))]),
        Sum([Diagonal(rng.random(n)), MatrixOp(rng.random((n, n)))]),
        BlockDiagonal([FiniteDiff(3), MatrixOp(rng.random((2, 4)))]),
    ]
    operators += [Conv2D(rng.random((2, 3)), (n, 5), mode) for mode in ("full", "same", "circular")]
    for op in operators:
        device = op.on(backend)
        x, y = rng.random(op.shape[1]), rng.random(op.shape[0])
        np.testing.assert_allclose(
            backend.to_host(device.matvec(backend.asarray(x))), op.matvec(x), atol=1e-12
        )
        np.testing.assert_allclose(
            backend.to_host(device.rmatvec(backend.asarray(y))), op.rmatvec(y), atol=1e-12
        )
    with pytest.raises(ValueError, match="fourier.*has no products on"):
        FourierSample(rng.random((4, 4)) > 0.5).on(backend)


def test_import_needs_neither_torch_nor_cupy() -> None:
    """With torch and CuPy unimportable, cvxprox imports and solves on NumPy, and asking
    for torch names the missing package."""
    code = """
import importlib.abc
import sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "cupy"):
            raise ImportError(f"{name} is blocked")

sys.meta_path.insert(0, Block())
import cvxpy as cp
import cvxprox
x = cp.Variable(2)
prob = cp.Problem(cp.Minimize(cp.sum(x)), [x >= 1])
prob.solve(solver="NABLAPROX")
assert prob.status == "optimal", prob.status
try:
    prob.solve(solver="NABLAPROX", backend="torch")
except ValueError as exc:
    print(exc)
assert "torch" not in sys.modules and "cupy" not in sys.modules
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "backend='torch' needs PyTorch (pip install cvxprox[torch])" in out.stdout


def _socp() -> cp.Problem:
    """A random SOCP (not polishable: its checks are the only reason to copy)."""
    rng = np.random.default_rng(3)
    x = cp.Variable(12)
    A = rng.standard_normal((20, 12))
    return cp.Problem(
        cp.Minimize(rng.standard_normal(12) @ x),
        [cp.norm(A @ x - 1) <= 8 + cp.sum(x) / 10, cp.abs(x) <= 1],
    )


def test_cone_checks_read_back_scalars_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """On torch a cone program's termination tests and certificate tests run on the
    device: a solve copies no vector to the host but the returned x, z, y."""
    copies = _count_copies(monkeypatch)
    prob = _socp()
    prob.solve(solver="NABLAPROX", **PDHG, backend="torch", check_every=1)
    assert prob.status == cp.OPTIMAL and prob.solver_stats.num_iters > 100
    assert len(copies) == 3
    reference = _socp()
    reference.solve(solver="CLARABEL", **TIGHT)
    assert prob.value == pytest.approx(reference.value, rel=1e-5)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "make, status",
    [
        (lambda: sths.lp_4().prob, cp.INFEASIBLE),
        (lambda: sths.lp_3().prob, cp.UNBOUNDED),
    ],
    ids=["infeasible", "unbounded"],
)
def test_torch_certificates(make: Callable[[], cp.Problem], status: str, dtype: str) -> None:
    """Certificates found on the device (float64 tests, also for float32 iterates) give
    the NumPy route's status and, for an infeasible problem, Farkas duals in the
    constraints' dual_values."""
    prob = make()
    prob.solve(solver="NABLAPROX", **PDHG, backend="torch", dtype=dtype)
    assert prob.status == status
    if status == cp.INFEASIBLE:
        assert all(isinstance(c.dual_value, np.ndarray) for c in prob.constraints)
    numpy_prob = make()
    numpy_prob.solve(solver="NABLAPROX", **PDHG)
    assert numpy_prob.status == status


def test_admm_checks_read_back_scalars_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cone-route ADMM on torch checks every iteration on the device (termination,
    certificates, best iterate, penalty update) and solves the KKT system by a dense LU
    there: a solve copies no vector to the host but the returned x, z, y; an LP copies
    x, z and y besides for each polishing attempt (refined from the iterate). The SOCP
    starts from a poor penalty, so that the penalty is updated (and the KKT matrix
    refactored) on the way."""
    copies = _count_copies(monkeypatch)
    options = {"algorithm": "admm", "structure": "never", "backend": "torch"}
    prob = _socp()
    prob.solve(solver="NABLAPROX", **options, rho=1e-3, check_every=1, eps_abs=1e-7, eps_rel=1e-7)
    stats = prob.solver_stats
    assert prob.status == cp.OPTIMAL and stats.num_iters > 100
    assert stats.extra_stats["algorithm"] == "admm"
    assert stats.extra_stats["refactorizations"] > 0
    assert len(copies) == 3
    reference = _socp()
    reference.solve(solver="CLARABEL", **TIGHT)
    assert prob.value == pytest.approx(reference.value, rel=1e-5)

    copies.clear()
    lp = _random_lp()
    lp.solve(solver="NABLAPROX", **options, eps_abs=1e-7, eps_rel=1e-7)
    extra = lp.solver_stats.extra_stats
    assert lp.status == cp.OPTIMAL and extra["polish_attempts"] > 0
    assert len(copies) == 3 * extra["polish_attempts"] + (0 if extra["polished"] else 3)
    reference = _random_lp()
    reference.solve(solver="CLARABEL", **TIGHT)
    assert lp.value == pytest.approx(reference.value, rel=1e-5)


@pytest.mark.parametrize(
    "make, status",
    [
        (lambda: sths.lp_4().prob, cp.INFEASIBLE),
        (lambda: sths.lp_3().prob, cp.UNBOUNDED),
    ],
    ids=["infeasible", "unbounded"],
)
def test_admm_torch_certificates(make: Callable[[], cp.Problem], status: str) -> None:
    """Cone-route ADMM's certificates found on the device: NumPy's status and Farkas
    duals (in the constraints' dual_values)."""
    options = {"algorithm": "admm", "structure": "never"}
    prob = make()
    prob.solve(solver="NABLAPROX", **options, backend="torch")
    reference = make()
    reference.solve(solver="NABLAPROX", **options)
    assert prob.status == reference.status == status
    for got, want in zip(prob.constraints, reference.constraints, strict=True):
        if status == cp.INFEASIBLE:
            np.testing.assert_allclose(got.dual_value, want.dual_value, rtol=0, atol=1e-7)
        else:
            assert got.dual_value is None and want.dual_value is None


def test_split_admm_checks_read_back_scalars_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split ADMM on torch (1-D TV denoising: an exact DCT Gram x-update and an l1 prox,
    both on the device) tests on the device, Farkas test included: a solve copies the
    returned x, z, y and nothing else (the best iterate when a limit stops it); the
    objective is NumPy's."""
    copies = _count_copies(monkeypatch)
    program = _tv1d()[0]
    solve = {"eps_abs": EPS, "eps_rel": EPS}
    result = StructuredADMM(program, SolverOptions(**solve, backend="torch")).solve()
    assert result.status == cp.OPTIMAL and result.iterations > 50
    assert "DCT" in result.info["x_update"]
    assert copies == [(program.n,), (program.m,), (program.m,)]
    reference = StructuredADMM(program, SolverOptions(**solve)).solve()
    assert result.kkt.primal_objective == pytest.approx(reference.kkt.primal_objective, rel=1e-7)
    limited = StructuredADMM(program, SolverOptions(backend="torch", max_iters=3)).solve()
    assert limited.status == cp.USER_LIMIT and isinstance(limited.x, np.ndarray)
    assert len(copies) == 6


def _infeasible_program(upper: str) -> Program:
    """x >= 1 (a nonnegative cone) and x <= 0 (a nonnegative cone of -x, or a box),
    with an l1 term (no set: zero in the certificate)."""
    n = 10
    below = (
        Term(NonnegCone(n), ScalarMultiple(-1.0, Identity(n)), np.zeros(n), "x <= 0")
        if upper == "cone"
        else Term(Box(-np.inf, 0.0, n), Identity(n), np.zeros(n), "x <= 0")
    )
    return Program(
        np.zeros(n),
        [
            Term(Norm1(n), Identity(n), np.zeros(n), "l1"),
            Term(NonnegCone(n), Identity(n), np.ones(n), "x >= 1"),
            below,
        ],
    )


@pytest.mark.parametrize("upper", ["cone", "box"])
def test_split_admm_farkas_on_the_device(upper: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Split ADMM's Farkas test on torch (cones' and a box's support functions on the
    device): NumPy's iteration count and certificate, and only the certificate copied."""
    copies = _count_copies(monkeypatch)
    program = _infeasible_program(upper)
    result = StructuredADMM(program, SolverOptions(backend="torch")).solve()
    reference = StructuredADMM(program, SolverOptions()).solve()
    assert result.status == reference.status == cp.INFEASIBLE
    assert result.iterations == reference.iterations
    assert copies == [(sum(t.size for t in program.terms),)]
    np.testing.assert_allclose(result.y, reference.y, rtol=0, atol=1e-9)


def test_support_functions_on_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``support`` (boxes with finite, infinite and per-entry bounds, the simplex,
    the balls, the entropy domains, cones) on torch vectors, through ``ProxFunction.on``
    (``OnHost`` for the host-only functions): NumPy's y' and sigma_C(y'), no copy."""
    backend = get_backend("torch")
    rng = np.random.default_rng(8)
    n = 7
    functions = [
        Box(-1.0, 2.0, n),
        Box(-np.inf, 0.5, n),
        Box(np.where(rng.random(n) < 0.5, -np.inf, -1.0), rng.random(n) + 1.0),
        Simplex(n, 2.0),
        L2Ball(n, 1.5),
        L1Ball(n, 0.5),
        LinfBall(n, 3.0),
        NegEntropy(n),
        KLDiv(n, np.ones(n)),
        SecondOrderCone(n),
        NonnegCone(n),
    ]
    copies = _count_copies(monkeypatch)
    for function in functions:
        y = rng.standard_normal(n)
        want, want_value = function.support(y)
        got, got_value = function.on(backend).support(backend.asarray(y))
        assert got_value == pytest.approx(want_value, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)
    assert copies == []
