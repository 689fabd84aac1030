"""What the imaging examples share: solving with NABLAPROX and a peer, the comparison table
and the side-by-side figure.

``tv_denoising.py``, ``deconvolution.py``, ``inpainting.py`` and ``mri.py`` build their own
data and CVXPY problem and hand them to :func:`run_comparison`, which solves the problem
with ``--solver`` (NABLAPROX by default) and the peer solver, times both and prints one
table row per solver (objective, relative difference to the peer, wall time including
CVXPY's compilation, PSNR against the ground truth). :func:`save_panels` writes the ground
truth, the observation and each solver's estimate side by side.

The scripts import this module as ``imaging``: ``python examples/<script>.py`` puts
``examples/`` on ``sys.path``, and the tests load it by file name before the scripts.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cvxpy as cp
import numpy as np

import cvxprox  # noqa: F401  (registers the NABLAPROX solver)

#: An extra table column: its header and the value of an estimate, printed as ``10.1e``.
ExtraColumn = tuple[str, Callable[[np.ndarray], float]]


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


def solve_and_time(problem: cp.Problem, solver: str, **options: float | str) -> Solve:
    """Solve ``problem`` with ``solver`` and time it; a solver error is reported in the status.

    The estimate is a copy of the value of ``problem.variables()[0]``; it is None unless the
    status is optimal or optimal_inaccurate.
    """
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


def print_comparison(
    solves: Sequence[Solve], truth: np.ndarray, extra: ExtraColumn | None = None
) -> None:
    """Solver, status, objective, relative difference to the last solve, time and PSNR.

    ``extra`` adds a last column to the rows of the solves that produced an estimate. The
    error message of each solver that raised follows the table.
    """
    reference = solves[-1].objective
    extra_header = f" {extra[0]:>10}" if extra else ""
    print(
        f"{'solver':<10} {'status':<16} {'objective':>15} {'rel. diff':>9} "
        f"{'time (s)':>9} {'PSNR (dB)':>9}{extra_header}"
    )
    for s in solves:
        if s.estimate is None:
            print(f"{s.solver:<10} {s.status:<16} {'-':>15} {'-':>9} {s.seconds:9.2f} {'-':>9}")
            continue
        diff = abs(s.objective - reference) / max(1.0, abs(reference))
        diff_text = f"{diff:9.1e}" if len(solves) > 1 and np.isfinite(diff) else f"{'-':>9}"
        extra_text = f" {extra[1](s.estimate):10.1e}" if extra else ""
        print(
            f"{s.solver:<10} {s.status:<16} {s.objective:15.8e} {diff_text} "
            f"{s.seconds:9.2f} {psnr(s.estimate, truth):9.2f}{extra_text}"
        )
    for s in solves:
        if s.error:
            print(f"{s.solver} failed: {s.error}")


def add_solver_arguments(
    parser: argparse.ArgumentParser,
    peer: str = "CLARABEL",
    *,
    peer_max_size: int | None = None,
    eps: float | None = 1e-5,
    eps_help: str = "NABLAPROX eps_abs = eps_rel",
    no_peer_help: str = "solve with --solver only",
) -> None:
    """Add the options :func:`run_comparison` reads: ``--solver``, ``--eps``,
    ``--algorithm``, ``--peer`` and ``--no-peer``, then ``--out`` (the PNG's folder).

    ``peer`` is the default of ``--peer``; with ``peer_max_size``, ``--peer`` has no
    default and the script runs ``peer`` only up to that size. ``eps`` is the default of
    ``--eps`` (None: NABLAPROX's own).
    """
    parser.add_argument("--solver", default="NABLAPROX", help="solver (default NABLAPROX)")
    parser.add_argument("--eps", type=float, default=eps, help=eps_help)
    parser.add_argument("--algorithm", default="auto", help="NABLAPROX algorithm (default auto)")
    if peer_max_size is None:
        parser.add_argument("--peer", default=peer, help=f"reference solver (default {peer})")
    else:
        help_text = f"reference solver (default {peer} up to size {peer_max_size}, none above)"
        parser.add_argument("--peer", help=help_text)
    parser.add_argument("--no-peer", action="store_true", help=no_peer_help)
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the PNG")


def run_comparison(
    problem: cp.Problem,
    truth: np.ndarray,
    args: argparse.Namespace,
    default_peer: str | None = None,
    skip_note: str = "",
    *,
    extra: ExtraColumn | None = None,
) -> list[Solve]:
    """Solve ``problem`` with ``args.solver``, then with the peer, and print the comparison.

    Parameters
    ----------
    problem : cp.Problem
        Its first variable is the estimate.
    truth : ndarray
        The ground truth, for the PSNR.
    args : argparse.Namespace
        The script's options ``solver``, ``peer`` (None when not given), ``no_peer``,
        ``eps`` (NABLAPROX's ``eps_abs = eps_rel``; None for its default) and
        ``algorithm``. With ``solver`` NABLAPROX, ``eps`` and ``algorithm`` are passed to it
        and printed first.
    default_peer : str or None
        The peer when ``args.peer`` is None; None when the problem is too large for it.
        The peer (upper-cased) is skipped with ``no_peer`` or when it is ``solver`` itself.
    skip_note : str
        Printed after the first solve when ``default_peer`` is None and no peer was asked
        for (nor ``no_peer``).
    extra : (str, callable), optional
        An extra column of the table, see :func:`print_comparison`.

    Returns
    -------
    list of Solve
        The solver's run, then the peer's if it ran.
    """
    options: dict[str, Any] = {}
    if args.solver == "NABLAPROX":
        if args.eps is not None:
            options.update(eps_abs=args.eps, eps_rel=args.eps)
        options["algorithm"] = args.algorithm
        eps_text = "default" if args.eps is None else f"{args.eps:g}"
        print(f"NABLAPROX options: eps_abs = eps_rel = {eps_text}, algorithm {args.algorithm}")
    print()
    solves = [solve_and_time(problem, args.solver, **options)]
    peer = args.peer
    if args.no_peer:
        peer = None
    elif peer is None:
        peer = default_peer
        if peer is None and skip_note:
            print(skip_note)
    if peer is not None and peer.upper() != args.solver:
        solves.append(solve_and_time(problem, peer.upper()))
    print_comparison(solves, truth, extra)
    return solves


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_panels(
    path: Path,
    truth: np.ndarray,
    inputs: Sequence[tuple[str, np.ndarray]],
    solves: Sequence[Solve],
    *,
    clip: bool = False,
) -> Path:
    """Write the ground truth, the ``(title, image)`` inputs and each solver's estimate side
    by side, in gray from 0 to 1 (an input may also be RGB); returns ``path``.

    ``clip`` clips every image to [0, 1] before showing it.
    """
    plt = pyplot()
    panels = [("ground truth", truth), *inputs]
    panels += [
        (f"{s.solver}, PSNR {psnr(s.estimate, truth):.1f} dB", s.estimate)
        for s in solves
        if s.estimate is not None
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (title, image) in zip(axes, panels, strict=True):
        shown = np.clip(image, 0, 1) if clip else image
        ax.imshow(shown, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
