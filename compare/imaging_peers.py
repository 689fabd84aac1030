"""NABLAPROX against the ∇-Prox reference implementation (dprox) and PyProximal.

The shared models are three of the ``structured`` suite's, on its data
(:func:`compare.suites.structured.tv_denoising_data`, :func:`deconvolution_data`,
:func:`tv_deblurring_data`):

- ``tv_denoising``: minimize 1/2 ||X - noisy||^2 + 0.1 tv(X), X of shape n x n, with
  CVXPY's isotropic ``tv``: the sum over i, j < n - 1 of
  ||(X[i+1, j] - X[i, j], X[i, j+1] - X[i, j])||_2;
- ``deconvolution``: minimize ||k * x - y||^2 + 0.5 tv(x), x of length n, ``k * x`` the
  full convolution (length n + 30), tv(x) = sum_{i < n-1} |x[i+1] - x[i]|;
- ``tv_deblurring``: minimize 1/2 ||K * X - observed||^2 + 0.01 tv(X), K * X the
  ``"same"`` 2-D convolution (zero boundary) with a 7 x 7 Gaussian.

NABLAPROX solves the CVXPY model at default options except eps_abs = eps_rel = 1e-4
(compile included, best of ``repeats`` solves). Each peer solves the same model in its
own terms, with its own algorithm, and its point is judged on the CVXPY model: the
objective of CVXPY's expression at the peer's x, relative to Clarabel's at 1e-10
(``compare/results/references.json``, the structured suite's cache). Equal accuracy: a
peer runs with doubling iteration budgets 1, 2, 4, ... (its iterates do not depend on
the budget, so one run with checkpoints at those counts gives every budget's point;
the clock stops while a checkpoint is judged) until its relative objective error is at
most NABLAPROX's, or ``cap`` iterations or ``time_cap`` seconds; its time is its setup
(building its operators and problem) plus its iterations up to that budget. Each peer
is tried with a few step sizes (:data:`DPROX_RHOS`, :data:`PYPROXIMAL_STEP_RATIOS`), and
the fastest that reaches the target is reported.

How each peer poses the models (boundaries mapped exactly) is in :data:`NOTES`.
dprox and PyProximal are optional: a peer that is not installed is reported as such.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import math
import os
import sys
import time
import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import cvxpy as cp
import numpy as np

from compare.harness import RESULTS_DIR
from compare.references import ReferenceCache, reference_key
from compare.suites.structured import (
    DEBLURRING_WEIGHT,
    DECONVOLUTION_WEIGHT,
    MODELS,
    SEED,
    SIZES,
    TV_DENOISING_WEIGHT,
    deconvolution_data,
    tv_deblurring_data,
    tv_denoising_data,
    variables,
)
from compare.suites.zoo import REFERENCE_OPTIONS

#: How each peer poses the models; printed with the report.
NOTES = (
    "dprox works on images (B, C, H, W) with circular operators and float32 tensors; "
    "its `conv` and `grad` are circular and its TV is anisotropic (`norm1(grad(x))`), "
    "it has no isotropic TV. The models are posed on its primitives plus an operator "
    "and four prox functions written against its `LinOp`/`ProxFn` classes (its "
    "extension point): a two-channel periodic forward difference whose Gram matrix is "
    "FFT-diagonal; an l2 over channels (isotropic TV), an l1 norm and a sum of squares "
    "acting only on a mask of entries, and the indicator of x = 0 off a mask.",
    "dprox TV denoising: `sum_squares(x, noisy) + 0.2 tv(x)` (twice the model's "
    "objective), tv the masked group norm of the periodic gradient, the mask keeping "
    "CVXPY's (n-1) x (n-1) pairs. Deconvolution: x padded to the full length N = n + 30 "
    "with the indicator of zero padding; the full convolution is dprox's circular `conv` "
    "on length N (its centred kernel shifts the output by 15, so y is rolled by -15); tv "
    "is dprox's `grad` with the wrap-around and padding differences masked out. Its ADMM "
    "(`method='admm'`, x-update by FFT) runs with penalty rho and prox weights "
    "lam = 1 / (2 rho) (its least-squares step weighs rho ||Kx - v + u||^2: ADMM with "
    "penalty 2 rho); the answer is its x restricted to the model's domain.",
    "PyProximal: `PrimalDual` (Chambolle-Pock) on pylops operators. TV denoising: "
    "f = `L2(b=noisy)`, g = `L21(ndim=2, sigma=0.1)` of `Diagonal(mask) @ Gradient` "
    "(forward differences, the mask keeping CVXPY's pairs). Deconvolution: f = 0 "
    "(`Box` with infinite bounds), g = `VStack([L2(b=y, sigma=2), L1(sigma=0.5)])` of "
    "`VStack([C, D])`, C the full convolution as a sparse matrix, D the (n-1) x n forward "
    "difference. Steps tau = s / L, mu = 1 / (s L), L^2 a bound on ||K||^2 (8 for the "
    "2-D gradient, ||k||_1^2 + 4 for the deconvolution's stacked operator).",
    "TV deblurring (`0.5 ||K * X - observed||^2 + 0.01 tv(X)`, K * X the `same` 2-D "
    "convolution with a 7 x 7 Gaussian and zero boundary). dprox: X padded to "
    "(n + 6) x (n + 6) with the indicator of zero padding; its centred circular `conv` "
    "there equals the `same` convolution on the n x n outputs, which a masked sum of "
    "squares (a fourth prox function on its `ProxFn`) compares with the observation; "
    "`masked_sum_squares + 0.02 tv` (twice the objective), every term split off by its "
    "ADMM. PyProximal: f = 0, g = `VStack([L2(b=observed), L21(ndim=2, sigma=0.01)])` of "
    "`VStack([C, Diagonal(mask) @ Gradient])`, C the `same` convolution as a sparse "
    "matrix (``cvxprox.atoms.conv2d_matrix``), ||K||^2 <= ||k||_1^2 + 8.",
    "Both peers start from the observation (TV denoising), from zero (deconvolution) "
    "or from the observation (deblurring; padded with zeros for dprox).",
)

#: Models every peer can pose exactly.
SHARED_MODELS = ("tv_denoising", "deconvolution", "tv_deblurring")

#: NABLAPROX's accuracy (eps_abs = eps_rel); its other options are the defaults.
EPS = 1e-4

#: dprox ADMM penalties tried; PyProximal step ratios s (tau = s / L, mu = 1 / (s L)).
DPROX_RHOS = (10.0, 3.0, 30.0, 1.0)
PYPROXIMAL_STEP_RATIOS = (0.03, 0.1, 0.01, 0.3)

#: torch's intra-op threads for dprox, as NABLAPROX runs its BLAS and torch: on a small
#: machine shared with other work two threads made dprox's iterations 20 times slower
#: than one (0.3 s against 12 ms on the deconvolution), its threads waiting for each other.
DPROX_THREADS = 1

#: Largest iteration budget of a peer, and the time after which a setting stops (s).
CAP, TIME_CAP = 2**16, 40.0

NABLAPROX = "NABLAPROX"
DPROX = "dprox"
PYPROXIMAL = "PyProximal"
PEERS = (DPROX, PYPROXIMAL)

INSTALL = {
    DPROX: "pip install dprox (see README: it needs stand-ins for torchvision)",
    PYPROXIMAL: "pip install pyproximal",
}


@dataclass(frozen=True)
class Run:
    """One solver's answer on one model.

    ``time``: seconds (NABLAPROX: ``prob.solve`` with compile; a peer: setup plus its
    iterations up to ``iterations``). ``rel_error``: |f(x) - ref| / max(1, |ref|) with f
    the CVXPY objective. ``reached``: whether ``rel_error`` met the target. ``setting``:
    the step parameter used; ``note``: why a run is missing or short of the target.
    """

    solver: str
    model: str
    time: float
    iterations: int
    objective: float
    rel_error: float
    violation: float
    reached: bool = True
    setting: str = ""
    note: str = ""


# --------------------------------------------------------------------------- judging


def relative_error(objective: float, reference: float) -> float:
    """|objective - reference| / max(1, |reference|), as the harness measures it."""
    return abs(objective - reference) / max(1.0, abs(reference))


def evaluate(problem: cp.Problem, x: np.ndarray) -> tuple[float, float]:
    """The CVXPY objective and the worst constraint violation at ``x`` (reshaped to the
    problem's one variable, C order)."""
    (variable,) = problem.variables()
    variable.value = np.asarray(x, dtype=float).reshape(variable.shape)
    violation = max((float(np.max(c.violation())) for c in problem.constraints), default=0.0)
    return float(problem.objective.value), violation


def reference_objective(model: str, size: int, cache_path: Any = None) -> float:
    """Clarabel's objective at tol 1e-10 on ``model`` at ``size``, from the structured
    suite's reference cache (``cache_path`` None: ``compare/results/references.json``;
    False: no cache), solved and stored when missing."""
    cache = None
    if cache_path is not False:
        cache = ReferenceCache(cache_path or RESULTS_DIR / "references.json")
        key = reference_key("structured", model, variables(model, size))
        value = cache.get(key)
        if value is not None:
            return value
    problem = MODELS[model](SEED, size)
    problem.solve(solver="CLARABEL", **REFERENCE_OPTIONS)
    if problem.status != cp.OPTIMAL:
        raise RuntimeError(f"reference solve of {model} at size {size}: {problem.status}")
    if cache is not None:
        cache.put(key, problem.value, solver="CLARABEL", options=str(REFERENCE_OPTIONS))
    return float(problem.value)


class StopIterations(Exception):
    """Raised by :class:`Checkpoints` to stop a peer's iterations."""


class Checkpoints:
    """Iteration callback judging a peer at budgets 1, 2, 4, ..., ``cap``.

    ``point(state)`` maps the callback's argument to the model's x. The clock runs from
    construction and stops while a checkpoint is judged; the first checkpoint whose
    relative error is at most ``target`` raises :class:`StopIterations`, and so does
    the first iteration past ``time_limit`` (the time cap, or the time of a faster
    setting), after judging its point. ``best`` holds the last point judged:
    (iterations, time, objective, violation, rel_error).
    """

    def __init__(
        self,
        problem: cp.Problem,
        reference: float,
        target: float,
        point: Callable[[Any], np.ndarray],
        cap: int = CAP,
        setup_time: float = 0.0,
        time_limit: float = math.inf,
    ) -> None:
        self.problem, self.reference, self.target, self.point = problem, reference, target, point
        self.budgets = {2**k for k in range(int(math.log2(cap)) + 1)}
        self.iterations = 0
        self.paused = setup_time
        self.time_limit = time_limit
        self.start = time.perf_counter()
        self.best: tuple[int, float, float, float, float] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.iterations += 1
        now = time.perf_counter()
        late = now - self.start + self.paused > self.time_limit
        if self.iterations not in self.budgets and not late:
            return
        x = self.point(kwargs["state"] if "state" in kwargs else args[0])
        objective, violation = evaluate(self.problem, x)
        error = relative_error(objective, self.reference)
        if not np.isfinite(error):
            error = math.inf
        self.best = (self.iterations, now - self.start + self.paused, objective, violation, error)
        self.start += time.perf_counter() - now
        if error <= self.target or late:
            raise StopIterations

    def run(self, solver: str, model: str, setting: str) -> Run:
        """The :class:`Run` of the last checkpoint."""
        if self.best is None:
            raise RuntimeError(f"{solver} on {model} stopped before its first checkpoint")
        iterations, elapsed, objective, violation, error = self.best
        reached = error <= self.target
        stop = "the iteration cap" if iterations == max(self.budgets) else "the time limit"
        note = "" if reached else f"error {error:.1e} > {self.target:.1e} at {stop}"
        return Run(
            solver, model, elapsed, iterations, objective, error, violation, reached, setting, note
        )


def iterate(solve: Callable[[], Any], checkpoints: Checkpoints) -> None:
    """Run ``solve`` until it ends or ``checkpoints`` reaches its target."""
    try:
        solve()
    except StopIterations:
        pass


# --------------------------------------------------------------------------- NABLAPROX


def run_nablaprox(model: str, size: int, reference: float, repeats: int = 1) -> Run:
    """NABLAPROX at default options and eps_abs = eps_rel = :data:`EPS`: the fastest
    of ``repeats`` solves of freshly built copies, compile included."""
    import cvxprox  # noqa: F401  (registers NABLAPROX)

    best = None
    for _ in range(repeats):
        problem = MODELS[model](SEED, size)
        start = time.perf_counter()
        problem.solve(solver=NABLAPROX, eps_abs=EPS, eps_rel=EPS)
        elapsed = time.perf_counter() - start
        if best is None or elapsed < best[0]:
            best = (elapsed, problem)
    elapsed, problem = best
    objective, violation = evaluate(problem, problem.variables()[0].value)
    error = relative_error(objective, reference)
    stats = problem.solver_stats
    return Run(
        NABLAPROX,
        model,
        elapsed,
        int(stats.num_iters or 0),
        objective,
        error,
        violation,
        problem.status == cp.OPTIMAL,
        str((stats.extra_stats or {}).get("algorithm", "")),
        f"{problem.status}; solver_stats.solve_time {stats.solve_time or 0:.3f} s",
    )


# --------------------------------------------------------------------------- dprox


def import_dprox() -> types.ModuleType | None:
    """The ``dprox`` package, or None when it is not installed.

    dprox 0.2.1 imports at import time ``torchvision`` (``torchlights``' image grids and
    VGG loss) and ``scipy.misc.face``/``ascent`` (its sample images, removed from SciPy);
    its solvers use neither. PyPI's torchvision needs a CUDA build of torch, so where it
    cannot be imported empty stand-in modules take its names, and the sample images are
    stand-in arrays, before dprox is imported.
    """
    if importlib.util.find_spec("dprox") is None:
        return None
    try:
        importlib.import_module("torchvision")
    except Exception:
        for name in ("torchvision", "torchvision.utils", "torchvision.models"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["torchvision"].utils = sys.modules["torchvision.utils"]
        sys.modules["torchvision"].models = sys.modules["torchvision.models"]
        sys.modules["torchvision.utils"].make_grid = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import scipy.misc

        for name in ("face", "ascent"):
            if not hasattr(scipy.misc, name):
                setattr(scipy.misc, name, lambda: np.zeros((2, 2)))
        return importlib.import_module("dprox")


@cache
def dprox_terms() -> types.SimpleNamespace:
    """The prox functions and the operator the models need, on dprox's classes.

    ``PeriodicGradient2D(x)``: (B, 1, H, W) -> (B, 2, H, W), the periodic forward
    differences x[i+1, j] - x[i, j] and x[i, j+1] - x[i, j]; its Gram matrix is
    diagonal in the 2-D DFT, 4 - 2 cos(2 pi k / H) - 2 cos(2 pi l / W).
    ``MaskedGroupNorm(linop, mask)``: sum over masked pixels of the l2 norm over the
    channel axis. ``MaskedNorm1(linop, mask)``: l1 norm of the masked entries.
    ``ZeroOutside(linop, mask)``: indicator of zero off the mask.
    ``MaskedSumSquares(linop, observed, mask)``: sum of (v - observed)^2 over the mask.
    """
    dprox = import_dprox()
    import torch

    class PeriodicGradient2D(dprox.LinOp):
        def __init__(self, arg: Any) -> None:
            super().__init__([arg])

        def forward(self, x: Any, **kwargs: Any) -> Any:
            return torch.cat(
                [torch.roll(x, -1, dims=-2) - x, torch.roll(x, -1, dims=-1) - x], dim=1
            )

        def adjoint(self, y: Any, **kwargs: Any) -> Any:
            rows, cols = y[:, :1], y[:, 1:]
            return torch.roll(rows, 1, dims=-2) - rows + torch.roll(cols, 1, dims=-1) - cols

        def is_diag(self, freq: bool = False) -> bool:
            return freq and self.input_nodes[0].is_diag(freq)

        def get_diag(self, x: Any, freq: bool = False) -> Any:
            height, width = x.shape[-2:]
            rows = 2 - 2 * torch.cos(2 * torch.pi * torch.arange(height) / height)
            cols = 2 - 2 * torch.cos(2 * torch.pi * torch.arange(width) / width)
            return (rows[:, None] + cols[None, :]).reshape(1, 1, height, width)

    class MaskedGroupNorm(dprox.ProxFn):
        def __init__(self, linop: Any, mask: Any) -> None:
            super().__init__(linop)
            self.mask = mask

        def _prox(self, v: Any, lam: Any) -> Any:
            norm = torch.sqrt(torch.sum(v * v, dim=1, keepdim=True))
            shrink = torch.clamp(1 - lam / torch.clamp(norm, min=1e-30), min=0)
            return torch.where(self.mask.to(v.device), shrink * v, v)

    class MaskedNorm1(dprox.ProxFn):
        def __init__(self, linop: Any, mask: Any) -> None:
            super().__init__(linop)
            self.mask = mask

        def _prox(self, v: Any, lam: Any) -> Any:
            shrunk = torch.sign(v) * torch.clamp(torch.abs(v) - lam, min=0)
            return torch.where(self.mask.to(v.device), shrunk, v)

    class MaskedSumSquares(dprox.ProxFn):
        def __init__(self, linop: Any, observed: Any, mask: Any) -> None:
            super().__init__(linop)
            self.observed, self.mask = observed, mask

        def _prox(self, v: Any, lam: Any) -> Any:
            fitted = (v + 2 * lam * self.observed.to(v.device)) / (1 + 2 * lam)
            return torch.where(self.mask.to(v.device), fitted, v)

    class ZeroOutside(dprox.ProxFn):
        def __init__(self, linop: Any, mask: Any) -> None:
            super().__init__(linop)
            self.mask = mask

        def _prox(self, v: Any, lam: Any) -> Any:
            return torch.where(self.mask.to(v.device), v, torch.zeros_like(v))

    return types.SimpleNamespace(
        dprox=dprox,
        torch=torch,
        PeriodicGradient2D=PeriodicGradient2D,
        MaskedGroupNorm=MaskedGroupNorm,
        MaskedNorm1=MaskedNorm1,
        MaskedSumSquares=MaskedSumSquares,
        ZeroOutside=ZeroOutside,
    )


def dprox_tv_denoising(size: int) -> tuple[Any, list[Any], Any, Callable[[Any], np.ndarray]]:
    """dprox's form of TV denoising: ``sum_squares(x, noisy) + 0.2 * tv(x)`` (twice the
    model's objective), TV the masked group norm of the periodic gradient. Returns the
    prox functions, the ones ADMM splits off (to weigh), x0 and the map from its x to
    the model's."""
    t = dprox_terms()
    noisy = tv_denoising_data(SEED, size)
    n = noisy.shape[0]
    image = t.torch.tensor(noisy, dtype=t.torch.float32).reshape(1, 1, n, n)
    mask = t.torch.zeros(1, 2, n, n, dtype=t.torch.bool)
    mask[..., : n - 1, : n - 1] = True
    x = t.dprox.Variable()
    tv = 2 * TV_DENOISING_WEIGHT * t.MaskedGroupNorm(t.PeriodicGradient2D(x), mask)
    fns = [t.dprox.sum_squares(x, image), tv]
    return fns, [tv], image, lambda state: state.detach().numpy().reshape(n, n)


def dprox_deconvolution(size: int) -> tuple[Any, list[Any], Any, Callable[[Any], np.ndarray]]:
    """dprox's form of the deconvolution: on the padded domain of length N = n + 30,
    ``sum_squares(conv(z, k), roll(y, -15)) + 0.5 * masked_l1(grad(z))`` + indicator
    of z = 0 past n; the model's x is z[:n]."""
    t = dprox_terms()
    k, y = deconvolution_data(SEED, size)
    big, n, shift = y.size, y.size - k.size + 1, (k.size - 1) // 2
    z = t.dprox.Variable()
    conv = t.dprox.conv(z, k.reshape(1, -1, 1).astype(np.float32))
    observed = t.torch.tensor(np.roll(y, -shift), dtype=t.torch.float32).reshape(1, 1, 1, big)
    gradient = t.dprox.grad(z, dim=1)
    # dprox's grad is the periodic forward difference z[i+1] - z[i]: keep i < n - 1.
    inside = t.torch.zeros(1, 1, 1, big, dtype=t.torch.bool)
    inside[..., : n - 1] = True
    support = t.torch.zeros(1, 1, 1, big, dtype=t.torch.bool)
    support[..., :n] = True
    tv = DECONVOLUTION_WEIGHT * t.MaskedNorm1(gradient, inside)
    zero = t.ZeroOutside(z, support)
    fns = [t.dprox.sum_squares(conv, observed), tv, zero]
    x0 = t.torch.zeros(1, 1, 1, big)
    return fns, [tv, zero], x0, lambda state: state.detach().numpy().reshape(-1)[:n]


def dprox_tv_deblurring(size: int) -> tuple[Any, list[Any], Any, Callable[[Any], np.ndarray]]:
    """dprox's form of TV deblurring: on the padded image of (n + 6) x (n + 6) pixels,
    ``masked_sum_squares(conv(z, K), observed) + 0.02 tv(z)`` (twice the model's
    objective) + indicator of z = 0 past the n x n image; the model's X is z[:n, :n]."""
    t = dprox_terms()
    kernel, observed = tv_deblurring_data(SEED, size)
    n, pad = observed.shape[0], kernel.shape[0] - 1
    big = n + pad
    z = t.dprox.Variable()
    conv = t.dprox.conv(z, kernel.reshape(*kernel.shape, 1).astype(np.float32))
    padded = np.zeros((big, big), dtype=np.float32)
    padded[:n, :n] = observed
    image = t.torch.tensor(padded).reshape(1, 1, big, big)
    inside = t.torch.zeros(1, 1, big, big, dtype=t.torch.bool)
    inside[..., :n, :n] = True
    pairs = t.torch.zeros(1, 2, big, big, dtype=t.torch.bool)
    pairs[..., : n - 1, : n - 1] = True
    data = t.MaskedSumSquares(conv, image, inside)
    tv = 2 * DEBLURRING_WEIGHT * t.MaskedGroupNorm(t.PeriodicGradient2D(z), pairs)
    zero = t.ZeroOutside(z, inside)
    fns = [data, tv, zero]
    return fns, fns, image, lambda state: state.detach().numpy().reshape(big, big)[:n, :n]


DPROX_MODELS = {
    "tv_denoising": dprox_tv_denoising,
    "deconvolution": dprox_deconvolution,
    "tv_deblurring": dprox_tv_deblurring,
}


def run_dprox(
    model: str,
    size: int,
    reference: float,
    target: float,
    rho: float,
    cap: int = CAP,
    time_limit: float = math.inf,
) -> Run:
    """dprox's ADMM on ``model`` with penalty ``rho`` until ``target``, ``cap`` or
    ``time_limit``, torch on :data:`DPROX_THREADS` threads."""
    t = dprox_terms()
    threads = t.torch.get_num_threads()
    t.torch.set_num_threads(DPROX_THREADS)
    try:
        return _run_dprox(t, model, size, reference, target, rho, cap, time_limit)
    finally:
        t.torch.set_num_threads(threads)


def _run_dprox(
    t: types.SimpleNamespace,
    model: str,
    size: int,
    reference: float,
    target: float,
    rho: float,
    cap: int,
    time_limit: float,
) -> Run:
    start = time.perf_counter()
    fns, psi, x0, point = DPROX_MODELS[model](size)
    solver = t.dprox.compile(fns, method="admm", device="cpu")
    lams = {fn: 1.0 / (2.0 * rho) for fn in psi}
    setup = time.perf_counter() - start
    checkpoints = Checkpoints(
        MODELS[model](SEED, size),
        reference,
        target,
        lambda state: point(state[0]),
        cap,
        setup,
        time_limit,
    )
    with t.torch.no_grad():
        iterate(
            lambda: solver.solve(x0=x0, rhos=rho, lams=lams, max_iter=cap, callback=checkpoints),
            checkpoints,
        )
    return checkpoints.run(DPROX, model, f"admm, rho={rho:g}")


# --------------------------------------------------------------------------- PyProximal


def pyproximal_tv_denoising(size: int) -> tuple[Any, Any, Any, float, np.ndarray]:
    """PyProximal's form of TV denoising: f = 1/2 ||x - noisy||^2, g = 0.1 ||.||_{2,1}
    of the masked forward-difference gradient (2 n^2 rows, ||K||^2 <= 8). Returns f,
    g, K, a bound on ||K|| and x0."""
    import pylops
    import pyproximal

    noisy = tv_denoising_data(SEED, size)
    n = noisy.shape[0]
    mask = np.zeros((2, n, n))
    mask[:, : n - 1, : n - 1] = 1.0
    gradient = pylops.Gradient(dims=(n, n), kind="forward", edge=False)
    K = pylops.Diagonal(mask.ravel()) @ gradient
    f = pyproximal.L2(b=noisy.ravel())
    g = pyproximal.L21(ndim=2, sigma=TV_DENOISING_WEIGHT)
    return f, g, K, math.sqrt(8.0), noisy.ravel().copy()


def pyproximal_deconvolution(size: int) -> tuple[Any, Any, Any, float, np.ndarray]:
    """PyProximal's form of the deconvolution: f = 0, g(Cx, Dx) = ||Cx - y||^2 +
    0.5 ||Dx||_1, C the full convolution (sparse (n + 30) x n), D the forward
    difference ((n - 1) x n); ||K||^2 <= ||k||_1^2 + 4."""
    import pylops
    import pyproximal
    import scipy.sparse as sp

    k, y = deconvolution_data(SEED, size)
    n = y.size - k.size + 1
    C = sp.diags(list(k), offsets=[-j for j in range(k.size)], shape=(y.size, n), format="csr")
    D = sp.diags([-np.ones(n - 1), np.ones(n - 1)], [0, 1], shape=(n - 1, n), format="csr")
    K = pylops.VStack([pylops.MatrixMult(C), pylops.MatrixMult(D)])
    g = pyproximal.VStack(
        [pyproximal.L2(b=y, sigma=2.0), pyproximal.L1(sigma=DECONVOLUTION_WEIGHT)],
        nn=[y.size, n - 1],
    )
    f = pyproximal.Box(lower=-np.inf, upper=np.inf)
    return f, g, K, math.sqrt(np.sum(np.abs(k)) ** 2 + 4.0), np.zeros(n)


def pyproximal_tv_deblurring(size: int) -> tuple[Any, Any, Any, float, np.ndarray]:
    """PyProximal's form of TV deblurring: f = 0, g(Cx, Gx) = 1/2 ||Cx - observed||^2 +
    0.01 ||Gx||_{2,1}, C the ``same`` convolution (a sparse n^2 x n^2 matrix; the kernel
    is symmetric, so it acts on the C-order flattening as on CVXPY's), G the masked
    forward-difference gradient; ||K||^2 <= ||k||_1^2 + 8."""
    import pylops
    import pyproximal

    from cvxprox.atoms.conv2d import conv2d_matrix

    kernel, observed = tv_deblurring_data(SEED, size)
    n = observed.shape[0]
    mask = np.zeros((2, n, n))
    mask[:, : n - 1, : n - 1] = 1.0
    gradient = pylops.Diagonal(mask.ravel()) @ pylops.Gradient(
        dims=(n, n), kind="forward", edge=False
    )
    C = pylops.MatrixMult(conv2d_matrix(kernel, (n, n), "same"))
    K = pylops.VStack([C, gradient])
    g = pyproximal.VStack(
        [pyproximal.L2(b=observed.ravel()), pyproximal.L21(ndim=2, sigma=DEBLURRING_WEIGHT)],
        nn=[n * n, 2 * n * n],
    )
    f = pyproximal.Box(lower=-np.inf, upper=np.inf)
    norm = math.sqrt(np.sum(np.abs(kernel)) ** 2 + 8.0)
    return f, g, K, norm, observed.ravel().copy()


PYPROXIMAL_MODELS = {
    "tv_denoising": pyproximal_tv_denoising,
    "deconvolution": pyproximal_deconvolution,
    "tv_deblurring": pyproximal_tv_deblurring,
}


def run_pyproximal(
    model: str,
    size: int,
    reference: float,
    target: float,
    ratio: float,
    cap: int = CAP,
    time_limit: float = math.inf,
) -> Run:
    """PyProximal's ``PrimalDual`` on ``model`` with tau = ratio / L, mu = 1 / (ratio L)
    until ``target``, ``cap`` or ``time_limit``."""
    import pylops  # noqa: F401  (imported before the clock starts)
    from pyproximal.optimization.primaldual import PrimalDual

    start = time.perf_counter()
    f, g, K, norm, x0 = PYPROXIMAL_MODELS[model](size)
    setup = time.perf_counter() - start
    checkpoints = Checkpoints(
        MODELS[model](SEED, size), reference, target, lambda x: x, cap, setup, time_limit
    )
    iterate(
        lambda: PrimalDual(
            f, g, K, x0, tau=ratio / norm, mu=1.0 / (ratio * norm), niter=cap, callback=checkpoints
        ),
        checkpoints,
    )
    return checkpoints.run(PYPROXIMAL, model, f"PrimalDual, s={ratio:g}")


# --------------------------------------------------------------------------- the table


def installed(peer: str) -> bool:
    """Whether ``peer``'s package can be found."""
    return importlib.util.find_spec({DPROX: "dprox", PYPROXIMAL: "pyproximal"}[peer]) is not None


def run_peer(
    peer: str,
    model: str,
    size: int,
    reference: float,
    target: float,
    cap: int = CAP,
    time_cap: float = TIME_CAP,
    repeats: int = 1,
) -> Run:
    """``peer`` at each of its step settings; the fastest run that reaches ``target``,
    else the most accurate one. A setting stops after ``time_cap`` seconds, or once it
    is slower than one that reached the target. A run that reached it is timed again
    at its budget and setting, ``repeats`` times in all, and keeps the fastest time."""
    if not installed(peer):
        return Run(
            peer,
            model,
            math.nan,
            0,
            math.nan,
            math.nan,
            math.nan,
            False,
            note=f"not installed ({INSTALL[peer]})",
        )
    runner: Callable[..., Run] = run_dprox if peer == DPROX else run_pyproximal
    settings = DPROX_RHOS if peer == DPROX else PYPROXIMAL_STEP_RATIOS
    runs: list[Run] = []
    for setting in settings:
        limit = min((r.time for r in runs if r.reached), default=time_cap)
        runs.append(runner(model, size, reference, target, setting, cap, limit))
    best = min(
        range(len(runs)),
        key=lambda i: (not runs[i].reached, runs[i].time if runs[i].reached else runs[i].rel_error),
    )
    run = runs[best]
    for _ in range(repeats - 1 if run.reached else 0):
        again = runner(model, size, reference, -1.0, settings[best], run.iterations)
        run = replace(run, time=min(run.time, again.time))
    return run


def ratio(ours: Run, peer: Run) -> float:
    """NABLAPROX's time over the peer's; NaN when the peer has no time."""
    return ours.time / peer.time if peer.time > 0 and math.isfinite(peer.time) else math.nan


def table(runs: Sequence[Run], sizes: dict[str, int]) -> str:
    """A Markdown table of ``runs`` per model: time, iterations, relative error,
    violation, setting, and each peer's ratio NABLAPROX / peer (at equal accuracy only
    where the peer reached NABLAPROX's error)."""
    lines = [
        "| model | size | solver | setting | time (s) | iterations | rel. error | "
        "violation | NABLAPROX / solver | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ours = {r.model: r for r in runs if r.solver == NABLAPROX}
    for r in runs:
        share = "" if r.solver == NABLAPROX else _format(ratio(ours[r.model], r), ".3g")
        if share and not r.reached:
            share += " (peer short of the target)"
        lines.append(
            f"| {r.model} | {sizes[r.model]} | {r.solver} | {r.setting} | "
            f"{_format(r.time, '.3f')} | {r.iterations} | {_format(r.rel_error, '.1e')} | "
            f"{_format(r.violation, '.1e')} | {share} | {r.note} |"
        )
    return "\n".join(lines)


def _format(value: float, spec: str) -> str:
    return "" if not math.isfinite(value) else format(value, spec)


def log(run: Run) -> None:
    """One line on stderr for ``run``."""
    print(
        f"{run.model}: {run.solver} {run.setting} {run.time:.3f} s, {run.iterations} "
        f"iterations, rel. error {run.rel_error:.1e} {run.note}",
        file=sys.stderr,
    )


def compare_model(
    model: str,
    size: int,
    cap: int = CAP,
    time_cap: float = TIME_CAP,
    repeats: int = 3,
    peers: Sequence[str] = PEERS,
    cache_path: Any = None,
) -> list[Run]:
    """NABLAPROX and ``peers`` on ``model`` at ``size``, the peers' target being
    NABLAPROX's relative error; each run is logged to stderr as it ends."""
    reference = reference_objective(model, size, cache_path)
    runs = [run_nablaprox(model, size, reference, repeats)]
    log(runs[0])
    for peer in peers:
        target = runs[0].rel_error
        runs.append(run_peer(peer, model, size, reference, target, cap, time_cap, repeats))
        log(runs[-1])
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m compare.imaging_peers", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--models",
        default=",".join(SHARED_MODELS),
        help="comma-separated, of " + ", ".join(SHARED_MODELS),
    )
    parser.add_argument(
        "--size",
        action="append",
        default=[],
        help="MODEL=SIZE (image side or signal length); repeatable",
    )
    parser.add_argument("--cap", type=int, default=CAP, help="largest peer iteration budget")
    parser.add_argument(
        "--time-cap", type=float, default=TIME_CAP, help="seconds after which a setting stops"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="best of N solves (a peer: at its budget)"
    )
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--out", help="write the report (Markdown) here")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in SHARED_MODELS]
    peers = [p for p in args.peers.split(",") if p]
    if unknown or any(p not in PEERS for p in peers):
        parser.error(f"models are {', '.join(SHARED_MODELS)}; peers {', '.join(PEERS)}")
    sizes = {m: SIZES[m] for m in models}
    for item in args.size:
        name, _, value = item.partition("=")
        if name not in sizes or not value.isdigit() or int(value) < 4:
            parser.error(f"--size is MODEL=SIZE (an integer >= 4), MODEL one of {models}")
        sizes[name] = int(value)
    runs = [
        r
        for m in models
        for r in compare_model(m, sizes[m], args.cap, args.time_cap, args.repeats, peers)
    ]
    text = report(runs, sizes, args.cap, args.time_cap)
    print(text)
    if args.out:
        with open(args.out, "w") as out:
            out.write(text + "\n")
    return 0


def report(runs: Sequence[Run], sizes: dict[str, int], cap: int, time_cap: float) -> str:
    """The Markdown report: header, table, and what each peer is."""
    import platform

    versions = []
    for package in ("cvxpy", "dprox", "pyproximal", "pylops", "torch"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} not installed")
    return "\n".join(
        [
            "# Imaging peers: NABLAPROX, dprox (∇-Prox), PyProximal",
            "",
            f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"- Machine: {platform.platform()}, {platform.machine()}, Python "
            f"{platform.python_version()}, {os.cpu_count()} CPUs (load average "
            f"{os.getloadavg()[0]:.1f} at the end: times are those of a shared machine)",
            f"- Packages: {', '.join(versions)}",
            f"- NABLAPROX: default options, eps_abs = eps_rel = {EPS:g}; time = `prob.solve` "
            "(CVXPY compile + solve), best of the repeats.",
            "- Peers: their own algorithms (dprox ADMM, PyProximal PrimalDual), step "
            f"settings {DPROX_RHOS} (dprox rho) and {PYPROXIMAL_STEP_RATIOS} (PyProximal "
            "s), iteration budgets 1, 2, 4, ... up to "
            f"{cap} or {time_cap:g} s: the first budget whose point is at least as accurate "
            "as NABLAPROX's; time = setup + iterations up to that budget; the fastest "
            "setting is shown (a setting also stops once slower than one that got there), "
            "timed again at that budget: best of the repeats.",
            "- Accuracy: the CVXPY objective at each solver's point, relative to Clarabel "
            "at tol 1e-10: |f - ref| / max(1, |ref|).",
            "",
            table(runs, sizes),
            "",
            *(f"- {note}" for note in NOTES),
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
