"""Total-variation deconvolution of a blurred signal or image, solved by NABLAPROX and Clarabel.

**1-D** (default). A piecewise-constant signal ``x0`` (length ``n``, levels in [0, 1]) is
blurred by a normalized Gaussian kernel ``k`` (standard deviation 6 samples, 37 taps) and
observed with noise over the full support of the convolution,
``y = k * x0 + sigma e`` (length ``n + 36``). The estimate is

    minimize_x  ||k * x - y||_2^2 + lam * tv(x)

with ``k * x`` CVXPY's ``cp.convolve(k, x)`` (full linear convolution) and
``tv(x) = sum_i |x[i+1] - x[i]|``.

**2-D** (``--2d``). A piecewise-constant image ``X0`` (bars of several widths, a ring around a
disk and a triangle, values in [0, 1]) is blurred by a normalized 9 x 9 Gaussian kernel ``K``
(standard deviation 1.5 pixels) with zero boundary values and the output cropped to the
image (``scipy.signal.convolve2d(X0, K, "same")``), plus noise. The estimate is

    minimize_X  ||conv2d(K, X, "same") - B||_F^2 + lam * tv(X)   subject to  0 <= X <= 1

with ``conv2d`` from ``cvxprox.atoms`` and ``tv`` the isotropic total variation.

NABLAPROX keeps the convolutions as FFT-based operators and the TV terms as proximal
terms; Clarabel receives CVXPY's cone form with the convolution as a sparse banded
matrix. The script prints both solutions' objective, time and PSNR against the ground
truth and writes ``deconvolution.png`` (or ``deconvolution_2d.png``).

Run ``python examples/deconvolution.py --help`` for the options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cvxpy as cp
import numpy as np
import scipy.signal
from imaging import Solve, add_solver_arguments, psnr, pyplot, run_comparison, save_panels

import cvxprox  # noqa: F401  (registers the NABLAPROX solver)
from cvxprox.atoms import conv2d


def gaussian_kernel(std: float, radius: int) -> np.ndarray:
    """The normalized 1-D Gaussian ``exp(-t^2 / (2 std^2))``, ``t = -radius..radius``."""
    t = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (t / std) ** 2)
    return kernel / kernel.sum()


def piecewise_constant(n: int, seed: int = 0, pieces: int = 14) -> np.ndarray:
    """A signal of length ``n`` with ``pieces`` constant runs, levels uniform in [0, 1].

    Run lengths are random but at least ``n / (4 pieces)``, so every run stays wider than
    the blur kernel at the default sizes.
    """
    rng = np.random.default_rng(seed)
    shortest = max(1, n // (4 * pieces))
    lengths = shortest + rng.multinomial(n - shortest * pieces, np.full(pieces, 1.0 / pieces))
    levels = rng.uniform(0.0, 1.0, pieces)
    return np.repeat(levels, lengths)


def make_data(
    n: int = 2000, seed: int = 0, sigma: float = 0.02
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 1-D test signal, the blur kernel and the noisy blurred observation.

    Returns
    -------
    truth : ndarray, shape (n,)
        ``x0 = piecewise_constant(n, seed)``.
    kernel : ndarray, shape (37,)
        ``gaussian_kernel(6, 18)``.
    observed : ndarray, shape (n + 36,)
        ``y = np.convolve(kernel, x0) + sigma e`` with ``e`` standard normal.
    """
    truth = piecewise_constant(n, seed)
    kernel = gaussian_kernel(6.0, 18)
    rng = np.random.default_rng(seed + 1)
    observed = np.convolve(kernel, truth) + sigma * rng.standard_normal(n + kernel.size - 1)
    return truth, kernel, observed


def build_problem(kernel: np.ndarray, observed: np.ndarray, lam: float = 0.2) -> cp.Problem:
    """``minimize ||k * x - y||^2 + lam tv(x)``, ``k * x = cp.convolve(k, x)``.

    ``x`` (``problem.variables()[0]``) has length ``len(y) - len(k) + 1``.
    """
    x = cp.Variable(observed.size - kernel.size + 1, name="x")
    fit = cp.sum_squares(cp.convolve(kernel, x) - observed)
    return cp.Problem(cp.Minimize(fit + lam * cp.tv(x)))


def test_image(size: int) -> np.ndarray:
    """A deterministic piecewise-constant (size, size) image with values in [0, 1].

    Three groups of three vertical bars of decreasing width and spacing (5 %, 3.5 % and
    2.5 % of the side), a bright ring around a dim disk and a triangle on a dark
    background (0.1); shapes are laid out in unit coordinates, so every size shows the
    same picture.
    """
    u, v = (np.mgrid[0:size, 0:size] + 0.5) / size
    image = np.full((size, size), 0.1)
    left = 0.08
    for width in (0.05, 0.035, 0.025):
        for _ in range(3):
            image[(0.08 <= u) & (u < 0.42) & (left <= v) & (v < left + width)] = 0.8
            left += 2 * width
    image[(u - 0.7) ** 2 + (v - 0.25) ** 2 < 0.16**2] = 1.0
    image[(u - 0.7) ** 2 + (v - 0.25) ** 2 < 0.07**2] = 0.5
    image[(u > 0.55) & (u < 0.92) & (np.abs(v - 0.72) < 0.55 * (u - 0.55))] = 0.65
    return image


def make_data_2d(
    size: int = 64, seed: int = 0, sigma: float = 0.01
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 2-D test image, the blur kernel and the noisy blurred observation.

    Returns
    -------
    truth : ndarray, shape (size, size)
        ``X0 = test_image(size)``.
    kernel : ndarray, shape (9, 9)
        The outer product of ``gaussian_kernel(1.5, 4)`` with itself.
    observed : ndarray, shape (size, size)
        ``B = scipy.signal.convolve2d(X0, K, "same") + sigma E``, ``E`` standard normal.
    """
    truth = test_image(size)
    g = gaussian_kernel(1.5, 4)
    kernel = np.outer(g, g)
    rng = np.random.default_rng(seed)
    blurred = scipy.signal.convolve2d(truth, kernel, mode="same")
    return truth, kernel, blurred + sigma * rng.standard_normal(truth.shape)


def build_problem_2d(kernel: np.ndarray, observed: np.ndarray, lam: float = 5e-4) -> cp.Problem:
    """``minimize ||conv2d(K, X, "same") - B||_F^2 + lam tv(X)  s.t.  0 <= X <= 1``.

    ``X`` (``problem.variables()[0]``) has the shape of ``B``.
    """
    X = cp.Variable(observed.shape, name="X")
    fit = cp.sum_squares(conv2d(kernel, X, mode="same") - observed)
    return cp.Problem(cp.Minimize(fit + lam * cp.tv(X)), [X >= 0, X <= 1])


def save_figure(
    path: Path, truth: np.ndarray, kernel: np.ndarray, observed: np.ndarray, solves: list[Solve]
) -> Path:
    """Plot the 1-D ground truth, the observation (aligned with the signal) and the estimates."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    t = np.arange(truth.size)
    shift = (kernel.size - 1) // 2
    ax.plot(t, observed[shift : shift + truth.size], color="0.7", lw=0.8, label="observed")
    ax.plot(t, truth, color="k", lw=1.5, label="ground truth")
    for s, style in zip(solves, ("-", "--", ":"), strict=False):
        if s.estimate is not None:
            label = f"{s.solver} (PSNR {psnr(s.estimate, truth):.1f} dB)"
            ax.plot(t, s.estimate, style, lw=1.2, label=label)
    ax.set_xlabel("sample")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_figure_2d(
    path: Path, truth: np.ndarray, observed: np.ndarray, solves: list[Solve]
) -> Path:
    """Show the ground truth, the blurred image and each solver's estimate side by side."""
    inputs = [(f"blurred, PSNR {psnr(observed, truth):.1f} dB", observed)]
    return save_panels(path, truth, inputs, solves)


def main(argv: list[str] | None = None) -> list[Solve]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="1-D signal length (default 2000)")
    parser.add_argument("--2d", dest="two_d", action="store_true", help="deblur an image")
    parser.add_argument("--size", type=int, default=64, help="2-D image side (default 64)")
    parser.add_argument("--lam", type=float, help="TV weight (default 0.2; 5e-4 with --2d)")
    parser.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    add_solver_arguments(
        parser, eps=None, eps_help="NABLAPROX eps_abs = eps_rel (default: its own, 1e-6)"
    )
    args = parser.parse_args(argv)

    if args.two_d:
        lam = 5e-4 if args.lam is None else args.lam
        truth, kernel, observed = make_data_2d(args.size, args.seed)
        problem = build_problem_2d(kernel, observed, lam)
        print(
            f"2-D TV deblurring: {args.size}x{args.size} image, {kernel.shape[0]}x"
            f"{kernel.shape[1]} Gaussian blur, lam {lam}; blurred PSNR "
            f"{psnr(observed, truth):.2f} dB"
        )
    else:
        lam = 0.2 if args.lam is None else args.lam
        truth, kernel, observed = make_data(args.n, args.seed)
        problem = build_problem(kernel, observed, lam)
        print(f"1-D TV deconvolution: n = {args.n}, {kernel.size}-tap Gaussian blur, lam {lam}")
    solves = run_comparison(problem, truth, args)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.two_d:
        path = save_figure_2d(args.out / "deconvolution_2d.png", truth, observed, solves)
    else:
        path = save_figure(args.out / "deconvolution.png", truth, kernel, observed, solves)
    print(f"\nwrote {path}")
    return solves


if __name__ == "__main__":
    main()
