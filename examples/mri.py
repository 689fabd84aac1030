"""Compressive MRI: a phantom from 30 % of its Fourier coefficients, by NABLAPROX and SCS.

A real ``m x n`` phantom ``X0`` made of ellipses (in the manner of Shepp and Logan:
a skull, brain tissue, ventricles and small lesions, values in [0, 1]) is measured in
k-space on a variable-density random mask: all frequencies within a small radius of
the zero frequency (index (0, 0) and its wrap-around at the other corners of the FFT
grid) and, farther out, each frequency with a probability that decays with its
distance, about 30 % of the grid in all. With
``fourier_sample(X, mask) = [Re F; Im F]`` of the orthonormal 2-D FFT ``F`` at the
sampled frequencies (``cvxprox.atoms``), the data are
``d = fourier_sample(X0, mask) + sigma e`` and the reconstruction is

    minimize_X  1/2 ||fourier_sample(X, mask) - d||_2^2 + lam * tv(X)   subject to  X >= 0

NABLAPROX keeps the sampled Fourier transform as an FFT operator (its Gram matrix is
diagonal in the Fourier basis) and TV as a proximal term; the peer solvers receive
CVXPY's cone form with the sampled transform as a dense ``2k x mn`` matrix (k samples),
which limits them to small images: at 64 x 64 (k about 1250) CVXPY takes about 10 s to
build it, SCS about a minute to solve, and Clarabel, whose interior-point steps
factor a matrix with that dense block, several minutes. The peer is therefore SCS
(Clarabel with ``--peer CLARABEL``). The script also reports the zero-filled inverse
FFT (missing coefficients set to zero) and writes ``mri.png``.

Run ``python examples/mri.py --help`` for the options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cvxpy as cp
import numpy as np
import scipy.optimize
from imaging import Solve, add_solver_arguments, psnr, run_comparison, save_panels

import cvxprox  # noqa: F401  (registers the NABLAPROX solver)
from cvxprox.atoms import fourier_sample

PEER_MAX_SIZE = 64  # above this the peer's dense Fourier matrix takes minutes (and GiB)
PEER_SKIPPED = (  # printed when the size leaves the default peer out
    f"(SCS skipped: above {PEER_MAX_SIZE}x{PEER_MAX_SIZE} the dense Fourier matrix makes it "
    "take minutes; pass --peer SCS to run it anyway)"
)

# (value, semi-axis along rows, semi-axis along columns, center row, center column,
#  angle in degrees) in coordinates [-1, 1]^2 with rows pointing down; values add up.
ELLIPSES = (
    (1.0, 0.90, 0.70, 0.0, 0.0, 0.0),
    (-0.8, 0.86, 0.66, 0.02, 0.0, 0.0),
    (-0.2, 0.40, 0.12, -0.05, 0.22, -18.0),
    (-0.2, 0.45, 0.16, -0.05, -0.22, 18.0),
    (0.15, 0.22, 0.25, -0.45, 0.0, 0.0),
    (0.2, 0.05, 0.05, 0.25, 0.0, 0.0),
    (0.2, 0.06, 0.06, 0.45, -0.25, 0.0),
    (0.25, 0.04, 0.08, 0.6, 0.15, 30.0),
    (0.1, 0.05, 0.03, 0.65, -0.05, 0.0),
)


def phantom(size: int) -> np.ndarray:
    """A deterministic (size, size) ellipse phantom with values in [0, 1].

    Each ellipse of :data:`ELLIPSES` adds its value inside it; pixel centers are sampled
    in [-1, 1]^2, so every size shows the same picture.
    """
    r, c = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    image = np.zeros((size, size))
    for value, a, b, r0, c0, angle in ELLIPSES:
        t = np.deg2rad(angle)
        dr, dc = r - r0, c - c0
        along = dr * np.cos(t) + dc * np.sin(t)
        across = -dr * np.sin(t) + dc * np.cos(t)
        image[(along / a) ** 2 + (across / b) ** 2 <= 1.0] += value
    return np.clip(image, 0.0, 1.0)


def sampling_mask(
    shape: tuple[int, int], fraction: float = 0.3, center: float = 0.08, seed: int = 0
) -> np.ndarray:
    """A variable-density random k-space mask in FFT order (zero frequency at (0, 0)).

    With ``rho`` the distance of a frequency from zero (``np.fft.fftfreq`` units, so
    ``rho <= 0.71``), every frequency with ``rho <= center`` is sampled, and each other
    one with probability ``min(1, c (center / rho)^2)``; ``c`` is chosen so that the
    expected sampled fraction is ``fraction``.

    Returns
    -------
    ndarray of bool, shape ``shape``
    """
    m, n = shape
    rho = np.hypot(*np.meshgrid(np.fft.fftfreq(m), np.fft.fftfreq(n), indexing="ij"))
    core = rho <= center
    decay = (center / np.maximum(rho, center)) ** 2

    def expected(c: float) -> float:
        return float(np.where(core, 1.0, np.minimum(1.0, c * decay)).mean()) - fraction

    if expected(0.0) >= 0:
        return core
    scale = scipy.optimize.brentq(expected, 0.0, 1.0 / decay.min())
    rng = np.random.default_rng(seed)
    return core | (rng.random(shape) < scale * decay)


def make_data(
    size: int = 64, seed: int = 0, sigma: float = 0.01, fraction: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The phantom, the k-space mask and the noisy samples.

    Returns
    -------
    truth : ndarray, shape (size, size)
        ``X0 = phantom(size)``.
    mask : ndarray of bool, shape (size, size)
        ``sampling_mask((size, size), fraction, seed=seed)``, k True entries.
    data : ndarray, shape (2 k,)
        ``fourier_sample(X0, mask) + sigma e``, ``e`` standard normal: the real parts of
        the sampled coefficients, then the imaginary parts.
    """
    truth = phantom(size)
    mask = sampling_mask(truth.shape, fraction, seed=seed)
    spectrum = np.fft.fft2(truth, norm="ortho")[mask]
    rng = np.random.default_rng(seed + 1)
    clean = np.concatenate([spectrum.real, spectrum.imag])
    return truth, mask, clean + sigma * rng.standard_normal(clean.size)


def build_problem(mask: np.ndarray, data: np.ndarray, lam: float = 0.01) -> cp.Problem:
    """``minimize 1/2 ||fourier_sample(X, mask) - d||^2 + lam tv(X)  s.t.  X >= 0``.

    ``X`` (``problem.variables()[0]``) has the shape of the mask.
    """
    X = cp.Variable(mask.shape, name="X")
    fit = 0.5 * cp.sum_squares(fourier_sample(X, mask) - data)
    return cp.Problem(cp.Minimize(fit + lam * cp.tv(X)), [X >= 0])


def zero_filled(mask: np.ndarray, data: np.ndarray) -> np.ndarray:
    """The zero-filled inverse FFT: the real image whose coefficients are the samples.

    Missing coefficients are zero, except where the conjugate mirror ``(-u, -v)`` of a
    sampled frequency ``(u, v)`` is missing: a real image has ``F[-u, -v] = conj F[u, v]``,
    so the sample fills it in; where both are sampled their average is used. This is the
    least-squares image of least norm, the pseudo-inverse of ``fourier_sample`` applied
    to ``d``.
    """
    k = data.size // 2
    samples = np.zeros(mask.shape, dtype=complex)
    samples[mask] = data[:k] + 1j * data[k:]

    def mirror(a: np.ndarray) -> np.ndarray:
        return np.roll(a[::-1, ::-1], 1, axis=(0, 1))  # a[(-i) mod m, (-j) mod n]

    count = mask.astype(float) + mirror(mask.astype(float))
    spectrum = (samples + np.conj(mirror(samples))) / np.maximum(count, 1.0)
    return np.fft.ifft2(spectrum, norm="ortho").real


def save_figure(
    path: Path, truth: np.ndarray, mask: np.ndarray, baseline: np.ndarray, solves: list[Solve]
) -> Path:
    """Show the phantom, the mask (zero frequency centered), the zero-filled image and the
    TV reconstructions."""
    inputs = [
        (f"k-space mask ({mask.mean():.0%}, centered)", np.fft.fftshift(mask)),
        (f"zero-filled, PSNR {psnr(baseline, truth):.1f} dB", baseline),
    ]
    return save_panels(path, truth, inputs, solves)


def main(argv: list[str] | None = None) -> list[Solve]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64, help="image side (default 64)")
    parser.add_argument(
        "--fraction", type=float, default=0.3, help="sampled fraction of k-space (default 0.3)"
    )
    parser.add_argument("--sigma", type=float, default=0.01, help="noise level (default 0.01)")
    parser.add_argument("--lam", type=float, default=0.01, help="TV weight (default 0.01)")
    parser.add_argument("--seed", type=int, default=0, help="mask and noise seed (default 0)")
    add_solver_arguments(parser, "SCS", peer_max_size=PEER_MAX_SIZE)
    args = parser.parse_args(argv)

    truth, mask, data = make_data(args.size, args.seed, args.sigma, args.fraction)
    problem = build_problem(mask, data, args.lam)
    baseline = zero_filled(mask, data)
    print(
        f"Compressive MRI: {args.size}x{args.size} phantom, {mask.sum()} of {mask.size} "
        f"frequencies sampled ({mask.mean():.1%}), sigma {args.sigma}, lam {args.lam}"
    )
    print(f"zero-filled inverse FFT: PSNR {psnr(baseline, truth):.2f} dB")
    default_peer = "SCS" if args.size <= PEER_MAX_SIZE else None
    solves = run_comparison(problem, truth, args, default_peer, PEER_SKIPPED)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"\nwrote {save_figure(args.out / 'mri.png', truth, mask, baseline, solves)}")
    return solves


if __name__ == "__main__":
    main()
