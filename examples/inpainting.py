"""Total-variation inpainting of an image with most pixels missing, by NABLAPROX and Clarabel.

A test image ``X0`` (values in [0, 1]: a smooth vertical ramp in the background,
a rectangle, a disk, a diagonal band and a checkerboard patch) is observed on a random
subset of its pixels: the 0/1 mask ``M`` keeps each pixel with probability
``1 - missing`` (default 0.6 missing). The reconstruction is the image of least
isotropic total variation that agrees with the observed pixels:

    minimize_X  tv(X)
    subject to  M .* X == M .* X0,   0 <= X <= 1

(``cp.multiply(M, X) == M * observed`` in CVXPY; ``tv`` is ``cp.tv``). NABLAPROX keeps
the TV term as a proximal term of a finite-difference operator and the masked
equality and the box as projections; Clarabel receives CVXPY's cone form. The script
prints both solutions' objective, time and PSNR against ``X0`` and writes
``inpainting.png``.

Run ``python examples/inpainting.py --help`` for the options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cvxpy as cp
import numpy as np
from imaging import Solve, add_solver_arguments, psnr, run_comparison, save_panels

import cvxprox  # noqa: F401  (registers the NABLAPROX solver)


def test_image(size: int) -> np.ndarray:
    """A deterministic (size, size) image with values in [0, 1].

    A background ramp from 0.15 (top) to 0.45 (bottom), a rectangle (0.8), a disk (1.0)
    with a dark core (0.05), a diagonal band (0.6) and a checkerboard patch of 0.3 and 0.9
    with cells 7 % of the side. Shapes are laid out in unit coordinates, so every size
    shows the same picture.
    """
    u, v = (np.mgrid[0:size, 0:size] + 0.5) / size
    image = 0.15 + 0.3 * u
    image[(0.1 <= u) & (u < 0.45) & (0.08 <= v) & (v < 0.4)] = 0.8
    disk = (u - 0.7) ** 2 + (v - 0.27) ** 2
    image[disk < 0.18**2] = 1.0
    image[disk < 0.07**2] = 0.05
    image[np.abs(u + v - 1.35) < 0.06] = 0.6
    patch = (0.08 <= u) & (u < 0.4) & (0.5 <= v) & (v < 0.85)
    cells = (np.floor(u / 0.07) + np.floor(v / 0.07)) % 2
    image[patch] = np.where(cells[patch] == 0, 0.3, 0.9)
    return image


def make_data(
    size: int = 96, seed: int = 0, missing: float = 0.6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The test image, the sampling mask and the observed image.

    Returns
    -------
    truth : ndarray, shape (size, size)
        ``X0 = test_image(size)``.
    mask : ndarray of float, shape (size, size)
        ``M``: 1 where the pixel is observed (probability ``1 - missing``), 0 elsewhere.
    observed : ndarray, shape (size, size)
        ``M * X0``: the known pixels, 0 at the missing ones.
    """
    truth = test_image(size)
    rng = np.random.default_rng(seed)
    mask = (rng.random(truth.shape) >= missing).astype(float)
    return truth, mask, mask * truth


def build_problem(mask: np.ndarray, observed: np.ndarray) -> cp.Problem:
    """``minimize tv(X)  s.t.  M .* X == M .* observed,  0 <= X <= 1``.

    ``X`` (``problem.variables()[0]``) has the shape of the mask.
    """
    X = cp.Variable(mask.shape, name="X")
    constraints = [cp.multiply(mask, X) == mask * observed, X >= 0, X <= 1]
    return cp.Problem(cp.Minimize(cp.tv(X)), constraints)


def mean_fill(mask: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """The baseline: the observed pixels, with the missing ones set to their mean."""
    return np.where(mask > 0, observed, observed[mask > 0].mean())


def save_figure(
    path: Path, truth: np.ndarray, mask: np.ndarray, observed: np.ndarray, solves: list[Solve]
) -> Path:
    """Show the ground truth, the observed pixels (missing ones in red) and the estimates."""
    shown = np.repeat(observed[:, :, None], 3, axis=2)
    shown[mask == 0] = (0.8, 0.1, 0.1)
    missing = 1 - mask.mean()
    inputs = [(f"observed ({missing:.0%} missing)", shown)]
    return save_panels(path, truth, inputs, solves, clip=True)


def main(argv: list[str] | None = None) -> list[Solve]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96, help="image side (default 96)")
    parser.add_argument(
        "--missing", type=float, default=0.6, help="fraction of missing pixels (default 0.6)"
    )
    parser.add_argument("--seed", type=int, default=0, help="mask seed (default 0)")
    add_solver_arguments(parser)
    args = parser.parse_args(argv)

    truth, mask, observed = make_data(args.size, args.seed, args.missing)
    problem = build_problem(mask, observed)
    print(
        f"TV inpainting: {args.size}x{args.size} image, {1 - mask.mean():.1%} of the pixels "
        f"missing; mean-filled PSNR {psnr(mean_fill(mask, observed), truth):.2f} dB"
    )
    solves = run_comparison(
        problem,
        truth,
        args,
        extra=("data viol.", lambda estimate: np.abs(mask * (estimate - truth)).max()),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"\nwrote {save_figure(args.out / 'inpainting.png', truth, mask, observed, solves)}")
    return solves


if __name__ == "__main__":
    main()
