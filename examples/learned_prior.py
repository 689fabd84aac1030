"""Deblurring with a learned prior: a denoising CNN plugged into ADMM in place of TV.

An image ``X0`` (``size x size``, values in [0, 1]) is blurred by a normalized 9 x 9
Gaussian kernel ``K`` (standard deviation 1.5 pixels) with zero boundary values and
observed with noise, ``B = conv2d(K, X0, "same") + sigma E`` (``sigma = 0.01``). One
CVXPY problem, with ``B`` a ``cp.Parameter``,

    minimize_X  ||conv2d(K, X, "same") - B||_F^2 + lam * tv(X),

is solved in two ways:

(a) as written, by NABLAPROX (``prob.solve(solver="NABLAPROX")``), with ``lam`` the best
    of a small grid by PSNR on one validation image;
(b) by ``cvxprox.torch.pnp.PlugAndPlay``: 20 iterations of ADMM on the same problem with
    the proximal operator of ``lam * tv(X)`` replaced by a residual CNN (5 convolutions,
    28k weights) trained for Gaussian denoising (noise levels uniform in [0, 0.1]). The
    penalty starts at rho = 0.05: the prox of g / rho for a data term without the factor
    1 / (2 sigma^2) is a denoiser for noise of level s with rho = 2 sigma^2 / s^2, and
    s = 0.06 suits this blur. The 20 per-iteration penalties are then fine-tuned by
    backpropagating through the unrolled iterations on a few training deblurring problems.

All images are generated piecewise-smooth phantoms (no downloads): a ramp, random
rectangles, ellipses and rings each filled with its own ramp, and Gaussian bumps. The script prints
the mean PSNR of (a) and (b) over the held-out images and writes a PNG with the ground
truth, the blurred image and both estimates of the first one (``learned_prior.png``).

Run ``python examples/learned_prior.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cvxpy as cp
import numpy as np
import scipy.signal
import torch
from deconvolution import gaussian_kernel
from imaging import Solve, psnr, save_panels
from torch import nn

import cvxprox  # noqa: F401  (registers the NABLAPROX solver)
from cvxprox.atoms import conv2d
from cvxprox.torch.pnp import PlugAndPlay

SIGMA = 0.01
LAMBDAS = (3e-4, 1e-3, 3e-3, 1e-2)
ITERATIONS = 20
CROP, CROPS_PER_STEP = 32, 32
PENALTY = 0.05


def phantom(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random piecewise-smooth (size, size) image with values in [0, 1]: a ramp, 3 to 7
    shapes (rectangles, ellipses, rings) each filled with its own ramp, and 1 to 3
    Gaussian bumps."""
    u, v = (np.mgrid[0:size, 0:size] + 0.5) / size
    image = rng.uniform(0.1, 0.4) + rng.uniform(-0.3, 0.3) * u + rng.uniform(-0.3, 0.3) * v
    for _ in range(rng.integers(3, 8)):
        cu, cv = rng.uniform(0.1, 0.9, 2)
        ru, rv = rng.uniform(0.05, 0.3, 2)
        fill = rng.uniform(0.0, 1.0) + rng.uniform(-1, 1) * (u - cu) + rng.uniform(-1, 1) * (v - cv)
        kind = rng.integers(3)
        if kind == 0:
            inside = (np.abs(u - cu) < ru) & (np.abs(v - cv) < rv)
        else:
            distance = ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2
            inside = distance < 1 if kind == 1 else (distance < 1) & (distance > 0.5)
        image[inside] = fill[inside]
    for _ in range(rng.integers(1, 4)):
        cu, cv = rng.uniform(0.0, 1.0, 2)
        width = rng.uniform(0.05, 0.2)
        bump = np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * width**2))
        image += rng.uniform(-0.3, 0.3) * bump
    return np.clip(image, 0.0, 1.0)


def make_images(count: int, size: int, seed: int) -> np.ndarray:
    """``count`` phantoms, shape (count, size, size)."""
    rng = np.random.default_rng(seed)
    return np.stack([phantom(size, rng) for _ in range(count)])


def blur_kernel() -> np.ndarray:
    """The 9 x 9 Gaussian of standard deviation 1.5, normalized."""
    g = gaussian_kernel(1.5, 4)
    return np.outer(g, g)


def observe(images: np.ndarray, kernel: np.ndarray, seed: int) -> np.ndarray:
    """``convolve2d(X0, K, "same") + SIGMA E`` for each image."""
    rng = np.random.default_rng(seed)
    blurred = np.stack([scipy.signal.convolve2d(x, kernel, mode="same") for x in images])
    return blurred + SIGMA * rng.standard_normal(images.shape)


class Denoiser(nn.Module):
    """``v - R(v)``: a residual CNN R of 5 3x3 convolutions (1 -> 32 -> 32 -> 32 -> 32 -> 1
    channels, ReLU between) on a batch of images (B, H, W)."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU()]
        for _ in range(3):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.residual = nn.Sequential(*layers)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return v - self.residual(v.unsqueeze(1)).squeeze(1)


def train_denoiser(images: np.ndarray, epochs: int, seed: int) -> Denoiser:
    """Minimize the mean squared error of ``D(x + s e)`` to ``x`` over random crops x
    (32 x 32, 32 per step) of the images, with a noise level s ~ U[0, 0.1] and noise e
    drawn afresh for each crop (Adam, cosine step sizes). An epoch is as many steps as
    the images have pixels in crops."""
    torch.manual_seed(seed)
    denoiser = Denoiser()
    clean = torch.as_tensor(images, dtype=torch.float32)
    count, size = len(clean), clean.shape[-1]
    crop = min(CROP, size)
    steps = epochs * max(1, round(count * (size / crop) ** 2 / CROPS_PER_STEP))
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        index = torch.randint(count, (CROPS_PER_STEP,))
        i, j = torch.randint(size - crop + 1, (2,)).tolist()
        batch = clean[index, i : i + crop, j : j + crop]
        level = 0.1 * torch.rand(CROPS_PER_STEP, 1, 1)
        noisy = batch + level * torch.randn_like(batch)
        loss = ((denoiser(noisy) - batch) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return denoiser.eval()


def build_problem(
    kernel: np.ndarray, size: int
) -> tuple[cp.Problem, cp.Parameter, cp.Parameter, cp.Expression]:
    """``minimize ||conv2d(K, X, "same") - B||^2 + lam tv(X)`` with ``B`` and ``lam``
    Parameters; returns the problem, ``B``, ``lam`` and the regularizer ``lam * tv(X)``."""
    X = cp.Variable((size, size), name="X")
    B = cp.Parameter((size, size), name="B")
    lam = cp.Parameter(nonneg=True, name="lam", value=LAMBDAS[0])
    reg = lam * cp.tv(X)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(conv2d(kernel, X, mode="same") - B) + reg))
    return problem, B, lam, reg


def solve_tv(problem: cp.Problem, B: cp.Parameter, observed: np.ndarray) -> np.ndarray:
    """The TV estimate of each observation, by NABLAPROX (re-solves without recompiling)."""
    X = problem.variables()[0]
    estimates = []
    for b in observed:
        B.value = b
        problem.solve(solver="NABLAPROX", eps_abs=1e-4, eps_rel=1e-4)
        estimates.append(X.value.copy())
    return np.stack(estimates)


def fine_tune(
    solver: PlugAndPlay, observed: np.ndarray, truth: np.ndarray, steps: int
) -> list[float]:
    """Adam on the penalties only (the denoiser frozen), minimizing the mean squared error
    of the unrolled estimates; returns the loss at each step."""
    for param in solver.denoiser.parameters():
        param.requires_grad_(False)
    optimizer = torch.optim.Adam([solver.log_penalty], lr=0.05)
    b = torch.as_tensor(observed, dtype=torch.float32)
    x0 = torch.as_tensor(truth, dtype=torch.float32)
    losses = []
    for _ in range(steps):
        loss = ((solver(b) - x0) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def mean_psnr(estimates: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([psnr(e, t) for e, t in zip(estimates, truth, strict=True)]))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64, help="image side (default 64)")
    parser.add_argument(
        "--train-images", type=int, default=256, help="denoiser training images (default 256)"
    )
    parser.add_argument("--epochs", type=int, default=12, help="training epochs (default 12)")
    parser.add_argument(
        "--test-images", type=int, default=4, help="held-out test images (default 4)"
    )
    parser.add_argument(
        "--tune-steps", type=int, default=10, help="penalty fine-tuning steps (default 10)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument(
        "--out", type=Path, default=Path("learned_prior.png"), help="the PNG to write"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    size, kernel = args.size, blur_kernel()
    train = make_images(args.train_images, size, args.seed)
    test = make_images(args.test_images + 1, size, args.seed + 1)
    validation, test = test[:1], test[1:]
    observed = observe(test, kernel, args.seed + 2)
    print(
        f"{size}x{size} deblurring, 9x9 Gaussian blur, noise {SIGMA}; blurred PSNR "
        f"{mean_psnr(observed, test):.2f} dB (mean of {len(test)} test images)"
    )

    problem, B, lam, reg = build_problem(kernel, size)
    clock = time.perf_counter()
    scores = {}
    for value in LAMBDAS:
        lam.value = value
        scores[value] = mean_psnr(
            solve_tv(problem, B, observe(validation, kernel, args.seed + 3)), validation
        )
    lam.value = max(scores, key=scores.get)
    tv = solve_tv(problem, B, observed)
    print(
        f"TV (NABLAPROX): lam = {lam.value:g} (validation PSNR "
        + ", ".join(f"{k:g}: {s:.2f}" for k, s in scores.items())
        + f"), {time.perf_counter() - clock:.1f} s"
    )

    clock = time.perf_counter()
    denoiser = train_denoiser(train, args.epochs, args.seed)
    weights = sum(p.numel() for p in denoiser.parameters())
    print(
        f"denoiser: {weights} weights, {args.epochs} epochs on {len(train)} images, "
        f"{time.perf_counter() - clock:.1f} s"
    )
    solver = PlugAndPlay(
        problem,
        [B],
        (reg, denoiser),
        iterations=ITERATIONS,
        algorithm="admm",
        penalty=PENALTY,
        cg_tol=1e-4,
    )
    clock = time.perf_counter()
    tune = train[: min(4, len(train))]
    losses = fine_tune(solver, observe(tune, kernel, args.seed + 4), tune, args.tune_steps)
    if losses:
        print(
            f"penalties fine-tuned: {args.tune_steps} steps, training MSE {losses[0]:.2e} -> "
            f"{losses[-1]:.2e}, {time.perf_counter() - clock:.1f} s"
        )
    clock = time.perf_counter()
    with torch.no_grad():
        pnp = solver(torch.as_tensor(observed, dtype=torch.float32)).double().numpy()
    print(f"PnP-ADMM: {ITERATIONS} iterations, {time.perf_counter() - clock:.1f} s")

    result = {"tv": mean_psnr(tv, test), "pnp": mean_psnr(pnp, test)}
    print(
        f"\nmean PSNR on {len(test)} test images: TV {result['tv']:.2f} dB, "
        f"PnP {result['pnp']:.2f} dB ({time.perf_counter() - start:.0f} s in all)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    estimates = [Solve("TV", "", np.nan, 0.0, tv[0]), Solve("PnP", "", np.nan, 0.0, pnp[0])]
    blurred = [(f"blurred, PSNR {psnr(observed[0], test[0]):.1f} dB", observed[0])]
    save_panels(args.out, test[0], blurred, estimates, clip=True)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
