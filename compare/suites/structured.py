"""Structured models: total variation, convolution, lasso, at sizes where structure matters.

Five models whose natural form is a few prox-friendly terms (norms, TV, a convolution)
that a cone-program solver sees only after CVXPY has expanded them into many cones and
large sparse (or, for the lasso, dense) matrices. Each model is a function
``build_<name>(seed, size=None) -> cvxpy.Problem``; ``size`` overrides the benchmark size
(the side of the image, the length of the signal, the lasso's number of features) for
tests and quick runs. The reference is Clarabel's objective at tight tolerances, as in
the zoo, computed once and cached.

The suite's own settings: NABLAPROX, SCS and Clarabel, all asked for eps_abs = eps_rel =
1e-4 (the harness gives every solver of a run the same accuracy; see :data:`NOTES`),
success within 1e-3 (relative objective error and relative constraint violation), a
1200 s time limit (Clarabel takes about 650 s on the lasso on a 2-CPU machine), and the
report's ratio of NABLAPROX's time to the faster of SCS and Clarabel per case, with its
geometric mean against the target 0.2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import cvxpy as cp
import numpy as np
import scipy.signal

from compare.harness import Case, PeerRatio, ReferenceSolver, Suite
from compare.solvers import NABLAPROX
from compare.suites.zoo import REFERENCE_OPTIONS
from cvxprox.atoms import conv2d

#: Seed of the models' data.
SEED = 0

#: Benchmark sizes: image side (TV models), signal length, lasso features (rows: 1/4).
SIZES = {
    "tv_denoising": 192,
    "deconvolution": 6000,
    "lasso": 8000,
    "tv_inpainting": 128,
    "tv_deblurring": 128,
}

#: Accuracy asked of every solver, success tolerance, time limit (s).
EPS, TOLERANCE, TIMEOUT = 1e-4, 1e-3, 1200.0

#: The report's time ratio: NABLAPROX against the faster of these, and its target.
PEERS, TARGET = ("SCS", "CLARABEL"), 0.2


def phantom(n: int) -> np.ndarray:
    """A piecewise-constant ``n x n`` test image with values in [0, 1].

    A background, a large ellipse, a rectangle, a disc, a small bright square and a
    diagonal band: edges at several orientations, drawn at fractions of ``n`` so the
    image looks the same at every size.
    """
    y, x = np.mgrid[0:n, 0:n] / max(n - 1, 1)
    image = np.full((n, n), 0.1)
    image[((x - 0.5) / 0.4) ** 2 + ((y - 0.5) / 0.3) ** 2 <= 1] = 0.4
    image[(0.25 <= x) & (x <= 0.5) & (0.3 <= y) & (y <= 0.6)] = 0.7
    image[(x - 0.68) ** 2 + (y - 0.55) ** 2 <= 0.12**2] = 0.9
    image[(0.6 <= x) & (x <= 0.7) & (0.25 <= y) & (y <= 0.35)] = 1.0
    image[np.abs(x + y - 1.45) <= 0.04] = 0.25
    return image


#: TV weights of the denoising and deconvolution models.
TV_DENOISING_WEIGHT, DECONVOLUTION_WEIGHT, DEBLURRING_WEIGHT = 0.1, 0.5, 0.01


def tv_denoising_data(seed: int = SEED, size: int | None = None) -> np.ndarray:
    """The noisy image of :func:`build_tv_denoising`: the ``n x n`` phantom plus
    N(0, 0.1^2) noise (n = ``size``, default 192)."""
    n = size or SIZES["tv_denoising"]
    rng = np.random.default_rng(seed)
    return phantom(n) + 0.1 * rng.standard_normal((n, n))


def build_tv_denoising(seed: int = SEED, size: int | None = None) -> cp.Problem:
    """ROF denoising of a 192 x 192 phantom with Gaussian noise (sigma 0.1):
    minimize 1/2 ||X - noisy||^2 + 0.1 tv(X) (isotropic TV)."""
    noisy = tv_denoising_data(seed, size)
    X = cp.Variable(noisy.shape)
    objective = 0.5 * cp.sum_squares(X - noisy) + TV_DENOISING_WEIGHT * cp.tv(X)
    return cp.Problem(cp.Minimize(objective))


def gaussian_kernel(length: int = 31, sigma: float = 5.0) -> np.ndarray:
    """A normalized Gaussian blur kernel of odd ``length``."""
    t = np.arange(length) - (length - 1) / 2
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def piecewise_constant_signal(n: int, rng: np.random.Generator, pieces: int = 30) -> np.ndarray:
    """A length-``n`` signal of ``pieces`` random levels in [-1, 1] between random jumps."""
    jumps = np.sort(rng.choice(np.arange(1, n), size=min(pieces - 1, n - 1), replace=False))
    levels = rng.uniform(-1.0, 1.0, jumps.size + 1)
    return np.repeat(levels, np.diff(np.r_[0, jumps, n]))


def deconvolution_data(seed: int = SEED, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The kernel ``k`` (length 31) and the observation ``y`` (length n + 30, the full
    convolution of a piecewise-constant signal of length n = ``size``, default 6000,
    plus N(0, 0.05^2) noise) of :func:`build_deconvolution`."""
    n = size or SIZES["deconvolution"]
    rng = np.random.default_rng(seed)
    k = gaussian_kernel()
    y = np.convolve(k, piecewise_constant_signal(n, rng))
    y += 0.05 * rng.standard_normal(y.size)
    return k, y


def build_deconvolution(seed: int = SEED, size: int | None = None) -> cp.Problem:
    """1-D TV deconvolution, n = 6000: a piecewise-constant signal blurred by a Gaussian
    kernel of length 31 (sigma 5) plus noise (sigma 0.05);
    minimize ||k * x - y||^2 + 0.5 tv(x)."""
    k, y = deconvolution_data(seed, size)
    x = cp.Variable(y.size - k.size + 1)
    objective = cp.sum_squares(cp.convolve(k, x) - y) + DECONVOLUTION_WEIGHT * cp.tv(x)
    return cp.Problem(cp.Minimize(objective))


def build_lasso(seed: int = SEED, size: int | None = None) -> cp.Problem:
    """Lasso with a dense Gaussian 2000 x 8000 matrix (entries N(0, 1/m)), 80 nonzero
    true coefficients, noise sigma 0.01; minimize 1/2 ||Ax - b||^2 + lam ||x||_1 with
    lam = 0.1 max|A'b|. ``size`` is the number of features (rows: a quarter of it)."""
    n = size or SIZES["lasso"]
    m, nonzeros = max(n // 4, 1), max(n // 100, 1)
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n)) / np.sqrt(m)
    x_true = np.zeros(n)
    x_true[rng.choice(n, nonzeros, replace=False)] = rng.standard_normal(nonzeros)
    b = A @ x_true + 0.01 * rng.standard_normal(m)
    lam = 0.1 * np.max(np.abs(A.T @ b))
    x = cp.Variable(n)
    return cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A @ x - b) + lam * cp.norm1(x)))


def build_tv_inpainting(seed: int = SEED, size: int | None = None) -> cp.Problem:
    """TV inpainting of a 128 x 128 phantom with 60% of the pixels missing (a seeded
    random mask): minimize tv(X) s.t. M .* X = M .* observed, 0 <= X <= 1."""
    n = size or SIZES["tv_inpainting"]
    rng = np.random.default_rng(seed)
    observed = phantom(n)
    M = (rng.uniform(size=(n, n)) >= 0.6).astype(float)  # 1: known pixel
    X = cp.Variable((n, n))
    constraints = [cp.multiply(M, X) == M * observed, X >= 0, X <= 1]
    return cp.Problem(cp.Minimize(cp.tv(X)), constraints)


def gaussian_kernel_2d(size: int = 7, sigma: float = 1.5) -> np.ndarray:
    """A normalized ``size x size`` Gaussian blur kernel."""
    g = np.exp(-0.5 * ((np.arange(size) - (size - 1) / 2) / sigma) ** 2)
    kernel = np.outer(g, g)
    return kernel / kernel.sum()


def tv_deblurring_data(seed: int = SEED, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(kernel, observed): the phantom (n = ``size``, default 128) blurred by a 7 x 7
    Gaussian (sigma 1.5, ``"same"`` with zero boundary) plus N(0, 0.02^2) noise."""
    n = size or SIZES["tv_deblurring"]
    rng = np.random.default_rng(seed)
    kernel = gaussian_kernel_2d()
    blurred = scipy.signal.convolve2d(phantom(n), kernel, mode="same")
    return kernel, blurred + 0.02 * rng.standard_normal((n, n))


def build_tv_deblurring(seed: int = SEED, size: int | None = None) -> cp.Problem:
    """TV deblurring: minimize 1/2 ||K * X - observed||^2 + 0.01 tv(X), K * X the
    ``"same"`` 2-D convolution (``cvxprox.atoms.conv2d``)."""
    kernel, observed = tv_deblurring_data(seed, size)
    X = cp.Variable(observed.shape)
    fit = 0.5 * cp.sum_squares(conv2d(kernel, X, mode="same") - observed)
    return cp.Problem(cp.Minimize(fit + DEBLURRING_WEIGHT * cp.tv(X)))


#: Model name -> builder.
MODELS: dict[str, Callable[..., cp.Problem]] = {
    "tv_denoising": build_tv_denoising,
    "deconvolution": build_deconvolution,
    "lasso": build_lasso,
    "tv_inpainting": build_tv_inpainting,
    "tv_deblurring": build_tv_deblurring,
}

#: Model name -> problem class (the richest cone CVXPY's canonicalization needs).
MODEL_CLASSES = {
    "tv_denoising": "SOCP",
    "deconvolution": "SOCP",
    "lasso": "QP",
    "tv_inpainting": "SOCP",
    "tv_deblurring": "SOCP",
}


def variables(name: str, size: int) -> int:
    """Scalar variables of model ``name`` at ``size`` (an image is ``size x size``)."""
    return size * size if name.startswith("tv_") else size


def parse_sizes(items: Sequence[str] | None) -> dict[str, int]:
    """``["lasso=800", "tv_denoising=64"]`` -> sizes of every model, the others at
    :data:`SIZES`; raises ValueError on other text or unknown models."""
    sizes = dict(SIZES)
    for item in items or ():
        name, _, value = item.partition("=")
        if name not in MODELS or not value.isdigit() or int(value) < 2:
            raise ValueError(
                f"structured sizes are MODEL=SIZE (an integer >= 2), MODEL one of "
                f"{', '.join(MODELS)}; got {item!r}"
            )
        sizes[name] = int(value)
    return sizes


NOTES = (
    "Models: `tv_denoising` (1/2 ||X - noisy||^2 + 0.1 tv(X), phantom + N(0, 0.1^2) "
    "noise), `deconvolution` (||k * x - y||^2 + 0.5 tv(x), Gaussian kernel of length 31), "
    "`lasso` (1/2 ||Ax - b||^2 + lam ||x||_1, dense Gaussian A with n/4 rows, lam = "
    "0.1 max|A'b|), `tv_inpainting` (tv(X) s.t. known pixels fixed, 0 <= X <= 1, 60% "
    "missing), `tv_deblurring` (1/2 ||K * X - observed||^2 + 0.01 tv(X), K a 7x7 "
    "Gaussian, sigma 1.5, 'same' convolution by `cvxprox.atoms.conv2d`); vars = scalar "
    "variables of the CVXPY model.",
    "Accuracy: the 'Accuracy asked' line above says which. By default the suite asks all "
    "three for eps 1e-4 (for Clarabel tol_gap_abs = tol_gap_rel = tol_feas = 1e-4 instead "
    "of its 1e-8: a few interior-point iterations fewer, so the Clarabel peer is, if "
    "anything, faster than at its defaults); with `--eps default` each runs at its own "
    "defaults (NABLAPROX 1e-6, SCS 1e-4, Clarabel 1e-8), the setting of the 0.2 target. "
    "All answers are judged at 1e-3.",
    "Time limit 1200 s: on a 2-CPU machine Clarabel takes about 650 s on the dense lasso "
    "(20 s of it CVXPY's compile), which a 600 s limit would count as a failure.",
)


def suite(sizes: Sequence[str] | None = None) -> Suite:
    """The structured suite, at the benchmark sizes or the ``MODEL=SIZE`` overrides."""
    chosen = parse_sizes(sizes)
    cases = tuple(
        Case(
            name=name,
            problem_class=MODEL_CLASSES[name],
            size=variables(name, chosen[name]),
            build=partial(build, SEED, chosen[name]),
        )
        for name, build in MODELS.items()
    )
    return Suite(
        name="structured",
        title="Structured models (TV, convolution, lasso)",
        cases=cases,
        notes=NOTES,
        reference_solver=ReferenceSolver(
            "CLARABEL",
            REFERENCE_OPTIONS,
            "Clarabel with tol_gap_abs = tol_gap_rel = tol_feas = 1e-10",
        ),
        eps_abs=EPS,
        eps_rel=EPS,
        tol=TOLERANCE,
        solvers=(NABLAPROX, *PEERS),
        timeout=TIMEOUT,
        peer_ratio=PeerRatio(NABLAPROX, PEERS, TARGET),
    )
