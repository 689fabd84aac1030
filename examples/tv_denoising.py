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
import time
from dataclasses import dataclass
from pathlib import Path

import cvxpy as cp
import numpy as np

import cvxprox  # noqa: F401  (registers the NABLAPROX solver)

PEER_MAX_SIZE = 400  # Clarabel takes about a minute at 400 x 400 (80 s at 512 x 512)


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


def psnr(estimate: np.ndarray, truth: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(peak^2 / mean((estimate - truth)^2))`` in dB."""
    return float(10 * np.log10(peak**2 / np.mean((estimate - truth) ** 2)))


@dataclass
class Solve:
    """One solver's run: status, objective, wall time (s), the estimate (None on failure)
    and the error message of a solver that raised."""

    solver: str
    status: str
    objective: float
    seconds: float
    estimate: np.ndarray | None
    error: str = ""


def solve(problem: cp.Problem, solver: str, **options: float | str) -> Solve:
    """Solve ``problem`` with ``solver``; a solver error is reported in the status."""
    variable = problem.variables()[0]
    start = time.perf_counter()
    try:
        problem.solve(solver=solver, **options)
    except cp.SolverError as err:
        seconds = time.perf_counter() - start
        return Solve(solver, "error", float("nan"), seconds, None, f"{type(err).__name__}: {err}")
    seconds = time.perf_counter() - start
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        return Solve(solver, problem.status, float("nan"), seconds, None)
    return Solve(solver, problem.status, float(problem.value), seconds, variable.value.copy())


def print_table(solves: list[Solve], truth: np.ndarray) -> None:
    """Solver, status, objective, relative difference to the last solve, time and PSNR."""
    reference = solves[-1].objective
    print(
        f"{'solver':<10} {'status':<16} {'objective':>15} {'rel. diff':>9} "
        f"{'time (s)':>9} {'PSNR (dB)':>9}"
    )
    for s in solves:
        if s.estimate is None:
            print(f"{s.solver:<10} {s.status:<16} {'-':>15} {'-':>9} {s.seconds:9.2f} {'-':>9}")
            continue
        diff = abs(s.objective - reference) / max(1.0, abs(reference))
        diff_text = f"{diff:9.1e}" if len(solves) > 1 and np.isfinite(diff) else f"{'-':>9}"
        print(
            f"{s.solver:<10} {s.status:<16} {s.objective:15.8e} {diff_text} "
            f"{s.seconds:9.2f} {psnr(s.estimate, truth):9.2f}"
        )
    for s in solves:
        if s.error:
            print(f"{s.solver} failed: {s.error}")


def save_figure(path: Path, truth: np.ndarray, noisy: np.ndarray, solves: list[Solve]) -> Path:
    """Write the ground truth, the observation and each solver's estimate side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("ground truth", truth), (f"noisy, PSNR {psnr(noisy, truth):.1f} dB", noisy)]
    panels += [
        (f"{s.solver}, PSNR {psnr(s.estimate, truth):.1f} dB", s.estimate)
        for s in solves
        if s.estimate is not None
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (title, image) in zip(axes, panels, strict=True):
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> list[Solve]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="image side (default 128)")
    parser.add_argument("--sigma", type=float, default=0.1, help="noise level (default 0.1)")
    parser.add_argument("--lam", type=float, default=0.1, help="TV weight (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--solver", default="NABLAPROX", help="solver (default NABLAPROX)")
    parser.add_argument("--eps", type=float, default=1e-5, help="NABLAPROX eps_abs = eps_rel")
    parser.add_argument("--algorithm", default="auto", help="NABLAPROX algorithm (default auto)")
    parser.add_argument(
        "--peer",
        help=f"reference solver (default CLARABEL up to size {PEER_MAX_SIZE}, none above)",
    )
    parser.add_argument("--no-peer", action="store_true", help="solve with NABLAPROX only")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the PNG")
    args = parser.parse_args(argv)

    truth, noisy = make_data(args.size, args.seed, args.sigma)
    problem = build_problem(noisy, args.lam)
    print(
        f"TV denoising: {args.size}x{args.size} image, sigma {args.sigma}, lam {args.lam}; "
        f"noisy PSNR {psnr(noisy, truth):.2f} dB"
    )
    options = {}
    if args.solver == "NABLAPROX":
        options = {"eps_abs": args.eps, "eps_rel": args.eps, "algorithm": args.algorithm}
        print(f"NABLAPROX options: eps_abs = eps_rel = {args.eps:g}, algorithm {args.algorithm}")
    print()
    solves = [solve(problem, args.solver, **options)]
    peer = args.peer
    if peer is None and not args.no_peer:
        if args.size <= PEER_MAX_SIZE:
            peer = "CLARABEL"
        else:
            print(
                f"(Clarabel skipped: above {PEER_MAX_SIZE}x{PEER_MAX_SIZE} it takes over a "
                "minute; pass --peer CLARABEL to run it anyway)"
            )
    if peer is not None and not args.no_peer and peer.upper() != args.solver:
        solves.append(solve(problem, peer.upper()))
    print_table(solves, truth)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"\nwrote {save_figure(args.out / 'tv_denoising.png', truth, noisy, solves)}")
    return solves


if __name__ == "__main__":
    main()
