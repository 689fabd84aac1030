"""Learning a regularization weight by differentiating through the solver (bilevel learning).

Total-variation denoising of an image ``Y`` with weight ``lam``,

    X*(Y, lam) = argmin_X  1/2 ||X - Y||_F^2 + lam * tv(X),

is written once in CVXPY with ``Y`` and ``lam`` as Parameters and turned into a torch
module by ``cvxprox.torch.CvxproxLayer``. The weight is then learned from examples: on a
batch of noisy training images with known clean versions ``X0``, gradient steps on
``log(lam)`` lower the mean squared error ``mean ||X*(Y, lam) - X0||^2``. Every step solves
the whole batch as one block-diagonal program and gets ``d loss / d lam`` from one adjoint
solve (implicit differentiation). The script checks the learned weight against a grid
search on the same images and reports the PSNR on held-out images for the noisy input, the
initial weight, the learned weight and the best weight of the grid.

Run ``python examples/learn_tv_weight.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import time

import cvxpy as cp
import numpy as np
import torch

from cvxprox.torch import CvxproxLayer


def random_phantom(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random piecewise-constant (size, size) image in [0, 1]: rectangles and disks."""
    image = np.full((size, size), rng.uniform(0.2, 0.4))
    rows, cols = np.mgrid[0:size, 0:size]
    for _ in range(rng.integers(3, 7)):
        value = rng.uniform(0.0, 1.0)
        if rng.random() < 0.5:
            r0, c0 = rng.integers(0, size - 4, 2)
            h, w = rng.integers(4, max(5, size // 2), 2)
            image[r0 : r0 + h, c0 : c0 + w] = value
        else:
            center = rng.uniform(0.2 * size, 0.8 * size, 2)
            radius = rng.uniform(0.1 * size, 0.3 * size)
            image[(rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius**2] = value
    return image


def make_images(count: int, size: int, sigma: float, rng: np.random.Generator):
    """(clean, noisy) tensors of shape (count, size, size)."""
    clean = np.stack([random_phantom(size, rng) for _ in range(count)])
    noisy = clean + sigma * rng.standard_normal(clean.shape)
    return torch.tensor(clean), torch.tensor(noisy)


def psnr(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean PSNR (dB, peak 1) over a batch."""
    mse = ((estimate - truth) ** 2).mean(dim=(-2, -1))
    return float((10 * torch.log10(1.0 / mse)).mean())


def denoising_layer(size: int) -> CvxproxLayer:
    """The TV denoising problem as a differentiable layer of (Y, lam)."""
    Y = cp.Parameter((size, size))
    lam = cp.Parameter(nonneg=True)
    X = cp.Variable((size, size))
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(X - Y) + lam * cp.tv(X)))
    return CvxproxLayer(problem, parameters=[Y, lam], variables=[X])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--train", type=int, default=8, help="training images")
    parser.add_argument("--test", type=int, default=8, help="held-out images")
    parser.add_argument("--sigma", type=float, default=0.15, help="noise level")
    parser.add_argument("--steps", type=int, default=40, help="gradient steps")
    parser.add_argument("--lam0", type=float, default=0.01, help="initial weight")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    clean, noisy = make_images(args.train, args.size, args.sigma, rng)
    test_clean, test_noisy = make_images(args.test, args.size, args.sigma, rng)
    layer = denoising_layer(args.size)

    log_lam = torch.tensor(np.log(args.lam0), requires_grad=True)
    optimizer = torch.optim.Adam([log_lam], lr=0.3)
    # A decaying step lets the weight settle instead of overshooting with Adam's momentum.
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.93)
    print(f"learning lam on {args.train} images of {args.size}x{args.size} (sigma {args.sigma})")
    print(f"{'step':>4} {'lam':>9} {'train loss':>11} {'seconds':>8}")
    for step in range(args.steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        lam = log_lam.exp()
        (estimate,) = layer(noisy, lam)
        loss = ((estimate - clean) ** 2).mean()
        loss.backward()
        optimizer.step()
        schedule.step()
        seconds = time.perf_counter() - start
        print(f"{step:4d} {lam.item():9.4f} {loss.item():11.3e} {seconds:8.2f}")
    learned = log_lam.exp().item()

    with torch.no_grad():
        grid = np.geomspace(args.lam0, 0.5, 8)
        losses = [float(((layer(noisy, torch.tensor(g))[0] - clean) ** 2).mean()) for g in grid]
        best = float(grid[int(np.argmin(losses))])
        print(f"\ngrid search on the training images: best lam {best:.4f}; learned {learned:.4f}")
        print(f"\nheld-out images ({args.test}):")
        print(f"  {'input':<28} PSNR {psnr(test_noisy, test_clean):6.2f} dB")
        for name, lam in (("initial", args.lam0), ("learned", learned), ("grid best", best)):
            (estimate,) = layer(test_noisy, torch.tensor(lam))
            label = f"TV, lam = {lam:.4f} ({name})"
            print(f"  {label:<28} PSNR {psnr(estimate, test_clean):6.2f} dB")


if __name__ == "__main__":
    main()
