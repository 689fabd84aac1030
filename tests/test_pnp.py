"""Plug-and-play priors (``cvxprox.torch.pnp``): the splitting against CVXPY solutions,
torch forms of the operators and x-update solvers, gradients (unrolled and implicit),
batching, errors, and the ``learned_prior.py`` example at a tiny size."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

import cvxprox  # noqa: E402,F401  (registers NABLAPROX)
from cvxprox.atoms import conv2d, fourier_sample  # noqa: E402
from cvxprox.functions.prox import Norm1  # noqa: E402
from cvxprox.operators.linops import (  # noqa: E402
    Compose,
    Conv2D,
    Convolve1D,
    Diagonal,
    DiagonalGram,
    FiniteDiff,
    FourierSample,
    Gather,
    Identity,
    MatrixOp,
    ScalarMultiple,
    Sum,
    VStack,
)
from cvxprox.reductions.structure import StructureLowering  # noqa: E402
from cvxprox.torch.pnp import (  # noqa: E402
    PlugAndPlay,
    _CGSolver,
    _GramSolver,
    torch_maps,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is fastest and immune to a loaded machine's thread stalls."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def blur_kernel() -> np.ndarray:
    k = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0])
    return k / k.sum()


class L1Prox(torch.nn.Module):
    """The exact prox of lam ||.||_1 with step 1/rho, by ``cvxprox.functions.prox.Norm1``."""

    def __init__(self, lam: float, rho: float) -> None:
        super().__init__()
        self.lam, self.rho = lam, rho

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        f = Norm1(v[0].numel(), weight=self.lam)
        rows = [f.prox(r.reshape(-1).numpy(), 1.0 / self.rho) for r in v.detach()]
        return torch.from_numpy(np.stack(rows)).reshape(v.shape).to(v.dtype)


class SmoothDenoiser(torch.nn.Module):
    """v -> a v + b tanh(conv3x3(v)): smooth, and a contraction for small a, b."""

    def __init__(self, a: float = 0.5, b: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.rand(1, 1, 3, 3, generator=generator) / 9)
            self.conv.bias.fill_(0.05)
        self.a, self.b = a, b

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.a * v + self.b * torch.tanh(self.conv(v.unsqueeze(1))).squeeze(1)


def model(kind: str, m: int = 10, lam: float = 0.05, seed: int = 0):
    """(problem, X, Y, reg, observed value) for a small imaging model with an l1 prior."""
    rng = np.random.default_rng(seed)
    X = cp.Variable((m, m), name="X")
    reg = lam * cp.norm1(X)
    if kind in ("same", "circular", "full"):
        out = (m + 2, m + 2) if kind == "full" else (m, m)
        Y = cp.Parameter(out, name="Y")
        fit = cp.sum_squares(conv2d(blur_kernel(), X, mode=kind) - Y)
    elif kind == "inpainting":
        Y = cp.Parameter((m, m), name="Y")
        mask = (rng.random((m, m)) < 0.6).astype(float)
        fit = cp.sum_squares(cp.multiply(mask, X) - Y) + 0.1 * cp.sum_squares(X)
    elif kind == "mri":
        mask = rng.random((m, m)) < 0.5
        mask[0, 0] = True
        Y = cp.Parameter(2 * int(mask.sum()), name="Y")
        fit = 0.5 * cp.sum_squares(fourier_sample(X, mask) - Y)
    else:  # "smooth": denoising with a quadratic smoothness term (a DCT-diagonal Gram)
        Y = cp.Parameter((m, m), name="Y")
        fit = cp.sum_squares(X - Y) + 0.5 * cp.sum_squares(cp.diff(X, axis=0))
    problem = cp.Problem(cp.Minimize(fit + reg))
    return problem, X, Y, reg, rng.random(Y.shape)


def relative_objective_error(problem, X, Y, value, estimate) -> float:
    Y.value = value
    problem.solve(solver="CLARABEL")
    reference = problem.value
    X.value = estimate
    return abs(problem.objective.value - reference) / abs(reference)


# -- the splitting ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["same", "circular", "full", "inpainting", "mri", "smooth"])
def test_exact_prox_admm_converges_to_cvxpy_solution(kind):
    problem, X, Y, reg, value = model(kind)
    rho = 0.5
    solver = PlugAndPlay(
        problem,
        [Y],
        (reg, L1Prox(0.05, rho)),
        iterations=400,
        learn_penalties=False,
        penalty=rho,
        cg_tol=1e-10,
    )
    with torch.no_grad():
        estimate = solver(torch.as_tensor(value)).numpy()
    assert relative_objective_error(problem, X, Y, value, estimate) <= 1e-4


def test_exact_prox_deq_forward_converges_to_cvxpy_solution():
    problem, X, Y, reg, value = model("same")
    solver = PlugAndPlay(
        problem,
        [Y],
        (reg, L1Prox(0.05, 0.5)),
        iterations=2000,
        mode="deq",
        learn_penalties=False,
        penalty=0.5,
        tol=1e-10,
        cg_tol=1e-12,
    )
    with torch.no_grad():
        estimate = solver(torch.as_tensor(value)).numpy()
    assert solver.stats["forward_change"] < 1e-10
    assert relative_objective_error(problem, X, Y, value, estimate) <= 1e-6


def test_prior_may_be_a_subexpression_or_several_terms():
    X = cp.Variable((6, 6))
    Y = cp.Parameter((6, 6))
    tv = cp.tv(X)
    anisotropic = cp.norm1(cp.diff(X, axis=0)) + cp.norm1(cp.diff(X, axis=1))
    fit = cp.sum_squares(X - Y)
    for reg in (tv, anisotropic):
        problem = cp.Problem(cp.Minimize(fit + 0.1 * reg))
        solver = PlugAndPlay(problem, [Y], (reg, torch.nn.Identity()), iterations=2)
        assert len(solver.model.terms) == 1  # only the fit remains
        assert solver(torch.zeros(6, 6)).shape == (6, 6)


def test_lowering_records_term_sources():
    X = cp.Variable(4)
    fit, reg = cp.sum_squares(X - 1), 0.5 * cp.norm1(X)
    lowered = StructureLowering(cp.Problem(cp.Minimize(fit + reg), [cp.sum(X) <= 2])).lower()
    assert len(lowered.sources) == len(lowered.program.terms) == 3
    assert id(fit) in lowered.sources[0] and id(reg) not in lowered.sources[0]
    assert id(reg) in lowered.sources[1]
    assert lowered.sources[2] == ()  # the constraint


# -- operators and x-update solvers ----------------------------------------------------------


def operators() -> list:
    rng = np.random.default_rng(1)
    dense = rng.standard_normal((7, 12))
    sparse = sp.random_array((9, 12), density=0.3, random_state=2, format="csr")
    return [
        Identity(12),
        Diagonal(rng.standard_normal(12)),
        ScalarMultiple(-2.0, Gather(np.array([0, 3, 3, 11, 5]), 12)),
        MatrixOp(dense),
        MatrixOp(sparse),
        FiniteDiff((3, 4), axis=1),
        Conv2D(rng.standard_normal((2, 3)), (3, 4), "full"),
        Conv2D(rng.standard_normal((3, 2)), (3, 4), "same"),
        Conv2D(rng.standard_normal((2, 5)), (3, 4), "circular"),
        Convolve1D(rng.standard_normal(4), 12),
        Compose(Conv2D(rng.standard_normal((3, 3)), (3, 4), "same"), Diagonal(np.ones(12) * 2)),
        Sum([Identity(12), MatrixOp(dense[:, :12].T @ dense[:, :12])]),
        VStack([Identity(12), FiniteDiff((3, 4), axis=0)]),
        FourierSample(rng.random((3, 4)) < 0.5),
    ]


@pytest.mark.parametrize("op", operators(), ids=lambda op: op.describe())
def test_torch_maps_match_numpy(op):
    matvec, rmatvec = torch_maps(op, torch.float64, torch.device("cpu"))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, op.shape[1])), rng.standard_normal((3, op.shape[0]))
    expected_x = np.stack([op.matvec(row) for row in x])
    expected_y = np.stack([op.rmatvec(row) for row in y])
    np.testing.assert_allclose(matvec(torch.as_tensor(x)).numpy(), expected_x, atol=1e-12)
    np.testing.assert_allclose(rmatvec(torch.as_tensor(y)).numpy(), expected_y, atol=1e-12)


def test_numpy_fallback_has_gradients():
    op = FourierSample(np.random.default_rng(0).random((3, 4)) < 0.5)
    matvec, _ = torch_maps(op, torch.float64, torch.device("cpu"))
    x = torch.randn(2, op.shape[1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(matvec, (x,))


@pytest.mark.parametrize(
    "op",
    [
        Gather(np.array([0, 2, 2, 5]), 6),
        Conv2D(np.random.default_rng(0).random((3, 2)), (4, 5), "circular"),
        FourierSample(np.random.default_rng(0).random((4, 3)) < 0.5),
        FiniteDiff((4, 5), axis=1),
        FiniteDiff(7),
    ],
    ids=lambda op: op.describe(),
)
def test_gram_solver_is_exact(op):
    gram = op.gram()
    rho = 0.3
    solver = _GramSolver(gram, torch.float64, torch.device("cpu"))
    r = np.random.default_rng(0).standard_normal((2, op.shape[1]))
    expected = np.stack([(gram + DiagonalGram(rho, op.shape[1])).solve(row) for row in r])
    np.testing.assert_allclose(solver.solve(torch.as_tensor(r), rho).numpy(), expected, atol=1e-12)


def test_cg_solver_solves_each_row():
    A = np.random.default_rng(0).standard_normal((8, 6))
    Q = torch.as_tensor(A.T @ A)
    solver = _CGSolver(lambda v: v @ Q, torch.diagonal(Q), 1e-12, 100)
    r = torch.randn(3, 6, dtype=torch.float64)
    r[1] = 0.0
    for x0 in (None, torch.randn(3, 6, dtype=torch.float64)):
        x = solver.solve(r, 0.7, x0)
        np.testing.assert_allclose((x @ Q + 0.7 * x).numpy(), r.numpy(), atol=1e-10)
        assert torch.all(x[1] == 0)


# -- gradients -------------------------------------------------------------------------------


class TinyCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1),
            torch.nn.Tanh(),
            torch.nn.Conv2d(4, 1, 3, padding=1),
        )

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return v - 0.1 * self.net(v.unsqueeze(1)).squeeze(1)


@pytest.mark.parametrize("mode", ["unrolled", "deq"])
@pytest.mark.parametrize("algorithm", ["admm", "hqs"])
def test_gradients_reach_denoiser_and_penalties(mode, algorithm):
    torch.manual_seed(0)
    problem, X, Y, reg, value = model("same", m=8)
    solver = PlugAndPlay(
        problem, [Y], (reg, TinyCNN()), iterations=20, algorithm=algorithm, mode=mode, tol=1e-6
    )
    truth = torch.rand(2, 8, 8)
    estimate = solver(torch.as_tensor(value, dtype=torch.float32).expand(2, 8, 8))
    ((estimate - truth) ** 2).mean().backward()
    for name, param in solver.named_parameters():
        assert param.grad is not None and torch.all(torch.isfinite(param.grad)), name
        assert param.grad.abs().sum() > 0, name
    expected = (20,) if mode == "unrolled" else ()
    assert solver.log_penalty.shape == expected
    if mode == "deq":
        assert solver.stats["backward_iterations"] >= 1


def deq_loss(solver: PlugAndPlay, value: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (solver(value) * weights).sum()


@pytest.mark.parametrize("algorithm", ["admm", "hqs"])
def test_deq_gradient_matches_finite_differences(algorithm):
    problem, X, Y, reg, value = model("circular", m=6)
    solver = PlugAndPlay(
        problem,
        [Y],
        (reg, SmoothDenoiser()),
        iterations=500,
        algorithm=algorithm,
        mode="deq",
        penalty=0.8,
        tol=1e-13,
    ).double()
    value = torch.as_tensor(value)
    weights = torch.as_tensor(np.random.default_rng(3).standard_normal((6, 6)))
    deq_loss(solver, value, weights).backward()
    assert solver.stats["forward_change"] < 1e-13 and solver.stats["backward_change"] < 1e-13
    for param, index in ((solver.log_penalty, ()), (solver.denoiser.conv.weight, (0, 0, 1, 2))):
        analytic = float(param.grad[index])
        h = 1e-5
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                param[index] += sign * h
                values.append(float(deq_loss(solver, value, weights)))
                param[index] -= sign * h
        numeric = (values[0] - values[1]) / (2 * h)
        assert abs(analytic - numeric) <= 1e-6 * max(1.0, abs(numeric)), (analytic, numeric)


def test_unrolled_gradients_match_finite_differences():
    """Through the CG x-update, the FFT operators and the parameter map: gradcheck."""
    problem, X, Y, reg, value = model("same", m=5)
    solver = PlugAndPlay(
        problem,
        [Y],
        (reg, SmoothDenoiser()),
        iterations=4,
        penalty=[0.5, 1.0, 2.0, 1.5],
        cg_tol=1e-14,
    ).double()

    def run(y: torch.Tensor, log_penalty: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(solver, {"log_penalty": log_penalty}, (y,))

    y = torch.as_tensor(value, dtype=torch.float64).requires_grad_()
    log_penalty = solver.log_penalty.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(run, (y, log_penalty), atol=1e-7)


# -- batching --------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "atol"), [("unrolled", 1e-12), ("deq", 1e-7)])
def test_batch_equals_loop(mode, atol):
    problem, X, Y, reg, _ = model("same", m=8)
    solver = PlugAndPlay(
        problem,
        [Y],
        (reg, SmoothDenoiser()),
        iterations=200 if mode == "deq" else 10,
        mode=mode,
        tol=1e-10,
    ).double()
    batch = torch.as_tensor(np.random.default_rng(0).random((3, 8, 8)))
    with torch.no_grad():
        together = solver(batch)
        apart = torch.stack([solver(y) for y in batch])
    assert together.shape == (3, 8, 8)
    np.testing.assert_allclose(together.numpy(), apart.numpy(), atol=atol)


def test_unbatched_parameters_broadcast():
    X = cp.Variable((5, 5))
    Y = cp.Parameter((5, 5))
    w = cp.Parameter(5)
    reg = cp.norm1(X)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(X - Y) + cp.sum_squares(X[:, 0] - w) + reg))
    solver = PlugAndPlay(problem, [Y, w], (reg, SmoothDenoiser()), iterations=3).double()
    ys = torch.rand(2, 5, 5, dtype=torch.float64)
    shared = torch.rand(5, dtype=torch.float64)
    with torch.no_grad():
        together = solver(ys, shared)
        apart = torch.stack([solver(y, shared) for y in ys])
    np.testing.assert_allclose(together.numpy(), apart.numpy(), atol=1e-12)


# -- errors ----------------------------------------------------------------------------------


def test_errors():
    problem, X, Y, reg, _ = model("same", m=6)
    denoiser = torch.nn.Identity()
    with pytest.raises(ValueError, match="not a term of the objective"):
        PlugAndPlay(problem, [Y], (0.05 * cp.norm1(X), denoiser))
    with pytest.raises(ValueError, match=r"norm1\(X"):
        other = cp.Problem(cp.Minimize(cp.norm1(X - Y) + reg))
        PlugAndPlay(other, [Y], (reg, denoiser))
    with pytest.raises(ValueError, match="mode must be one of"):
        PlugAndPlay(problem, [Y], (reg, denoiser), mode="implicit")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        PlugAndPlay(problem, [Y], (reg, denoiser), algorithm="pdhg")
    with pytest.raises(ValueError, match="constraint"):
        PlugAndPlay(cp.Problem(problem.objective, [X >= 0]), [Y], (reg, denoiser))
    with pytest.raises(ValueError, match="enter only the constants"):
        lam = cp.Parameter(nonneg=True, value=1.0)
        weighted = cp.Problem(cp.Minimize(lam * cp.sum_squares(X - Y) + reg))
        PlugAndPlay(weighted, [Y, lam], (reg, denoiser))
    with pytest.raises(ValueError, match="penalty"):
        PlugAndPlay(problem, [Y], (reg, denoiser), penalty=-1.0)
    solver = PlugAndPlay(problem, [Y], (reg, denoiser))
    with pytest.raises(ValueError, match=r"shape \(6, 6\) or \(B, \*\(6, 6\)\), got \(6, 7\)"):
        solver(torch.zeros(6, 7))
    with pytest.raises(ValueError, match="expected 1 tensors"):
        solver(torch.zeros(6, 6), torch.zeros(6, 6))
    shrinking = PlugAndPlay(problem, [Y], (reg, ShapeBreaker()))
    with pytest.raises(ValueError, match="must keep the shape"):
        shrinking(torch.zeros(6, 6))


class ShapeBreaker(torch.nn.Module):
    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return v[..., 1:]


# -- the example -----------------------------------------------------------------------------


def load_example(name: str) -> Callable:
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module.main


def test_learned_prior_example_runs(tmp_path):
    main = load_example("learned_prior")
    out = tmp_path / "learned_prior.png"
    result = main(
        [
            "--size",
            "24",
            "--train-images",
            "8",
            "--epochs",
            "1",
            "--test-images",
            "2",
            "--out",
            str(out),
        ]
    )
    assert out.exists() and out.stat().st_size > 0
    assert np.isfinite(result["tv"]) and np.isfinite(result["pnp"])
