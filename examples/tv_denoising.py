"""Isotropic total-variation denoising of an image, solved by NABLAPROX and Clarabel.

A piecewise-constant test image ``X0`` (rectangles, disks and a ring on a gray
background, values in [0, 1]) is observed with additive Gaussian noise,
``Y = X0 + sigma * N``. The Rudin-Osher-Fatemi estimate is

    minimize_X  1/2 ||X - Y||_F^2 + lam * tv(X)

with ``tv(X) = sum_{i<m-1, j<n-1} sqrt((X[i+1, j] - X[i, j])^2 + (X[i, j+1] - X[i, j])^2)``
(CVXPY's ``cp.tv``). NABLAPROX keeps the squared loss and the TV term as proximal terms
of the image and of its finite differences; Clarabel receives CVXPY's cone form (one
3-dimensional second-order cone per pixel outside the last row and column). The script
prints both solutions' objective, time and PSNR against ``X0`` and writes
``tv_denoising.png``. Above 400 x 400 pixels Clarabel takes over a minute and is left
out unless asked for with ``--peer CLARABEL``.

Run ``python examples/tv_denoising.py --help`` for the options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cvxpy as cp
import numpy as np
from imaging import Solve, add_solver_arguments, psnr, run_comparison, save_panels

import cvxprox  # noqa: F401  (registers the NABLAPROX solver)

PEER_MAX_SIZE = 400  # Clarabel takes about a minute at 400 x 400 (80 s at 512 x 512)
PEER_SKIPPED = (  # printed when the size leaves the default peer out
    f"(Clarabel skipped: above {PEER_MAX_SIZE}x{PEER_MAX_SIZE} it takes over a minute; "
    "pass --peer CLARABEL to run it anyway)"
)


def phantom(size: int) -> np.ndarray:
    """A deterministic piecewise-constant (size, size) image with values in [0, 1].

    A gray background (0.2) with a rectangle (0.6), a bright disk (0.9), a ring (0.45)
    around a disk (0.75) and a row of four small squares (1.0) of decreasing width, the
    smallest 2.5 % of the side. Shapes are laid out in unit coordinates, so every
    size shows the same picture.
    """
    u, v = (np.mgrid[0:size, 0:size] + 0.5) / size
    image = np.full((size, size), 0.2)
    image[(0.08 <= u) & (u < 0.42) & (0.08 <= v) & (v < 0.55)] = 0.6
    image[(u - 0.68) ** 2 + (v - 0.28) ** 2 < 0.17**2] = 0.9
    ring = (u - 0.62) ** 2 + (v - 0.72) ** 2
    image[ring < 0.22**2] = 0.45
    image[ring < 0.12**2] = 0.75
    for left, width in ((0.6, 0.08), (0.72, 0.06), (0.82, 0.04), (0.9, 0.025)):
        image[(0.12 <= u) & (u < 0.12 + width) & (left <= v) & (v < left + width)] = 1.0
    return image


def make_data(size: int = 128, seed: int = 0, sigma: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """The test image and a noisy observation of it.

    Parameters
    ----------
    size : int
        Image side ``m = n``.
    seed : int
        Seed of the noise.
    sigma : float
        Standard deviation of the additive Gaussian noise.

    Returns
    -------
    truth, noisy : ndarray, shape (size, size)
        ``X0 = phantom(size)`` and ``Y = X0 + sigma * N`` with ``N`` standard normal.
    """
    truth = phantom(size)
    rng = np.random.default_rng(seed)
    return truth, truth + sigma * rng.standard_normal(truth.shape)


def build_problem(noisy: np.ndarray, lam: float = 0.1) -> cp.Problem:
    """``minimize 1/2 ||X - Y||_F^2 + lam tv(X)`` for the observation ``Y`` (m, n).

    The only variable, ``problem.variables()[0]``, is the estimate ``X`` (m, n).
    """
    X = cp.Variable(noisy.shape, name="X")
    return cp.Problem(cp.Minimize(0.5 * cp.sum_squares(X - noisy) + lam * cp.tv(X)))


def save_figure(path: Path, truth: np.ndarray, noisy: np.ndarray, solves: list[Solve]) -> Path:
    """Write the ground truth, the observation and each solver's estimate side by side."""
    return save_panels(path, truth, [(f"noisy, PSNR {psnr(noisy, truth):.1f} dB", noisy)], solves)


def main(argv: list[str] | None = None) -> list[Solve]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="image side (default 128)")
    parser.add_argument("--sigma", type=float, default=0.1, help="noise level (default 0.1)")
    parser.add_argument("--lam", type=float, default=0.1, help="TV weight (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    add_solver_arguments(
        parser, peer_max_size=PEER_MAX_SIZE, no_peer_help="solve with NABLAPROX only"
    )
    args = parser.parse_args(argv)

    truth, noisy = make_data(args.size, args.seed, args.sigma)
    problem = build_problem(noisy, args.lam)
    print(
        f"TV denoising: {args.size}x{args.size} image, sigma {args.sigma}, lam {args.lam}; "
        f"noisy PSNR {psnr(noisy, truth):.2f} dB"
    )
    default_peer = "CLARABEL" if args.size <= PEER_MAX_SIZE else None
    solves = run_comparison(problem, truth, args, default_peer, PEER_SKIPPED)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"\nwrote {save_figure(args.out / 'tv_denoising.png', truth, noisy, solves)}")
    return solves


if __name__ == "__main__":
    main()
