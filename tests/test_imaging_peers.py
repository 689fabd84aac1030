"""The imaging peers (``compare.imaging_peers``): each peer's form of a shared model is
the CVXPY model (its point's CVXPY objective approaches Clarabel's), the checkpoints
stop at the target, and the table's ratios."""

from __future__ import annotations

import math

import cvxpy as cp
import numpy as np
import pytest

from compare import imaging_peers as peers
from compare.suites import structured

#: Tiny sizes: an image side, a signal length.
SIZES = {"tv_denoising": 12, "deconvolution": 60, "tv_deblurring": 12}

#: How close a peer must come to the reference within CAP iterations.
TARGET, CAP = 1e-4, 2048


@pytest.fixture(scope="module")
def references() -> dict[str, float]:
    return {m: peers.reference_objective(m, n, cache_path=False) for m, n in SIZES.items()}


def test_data_helpers_are_the_builders_data() -> None:
    noisy = structured.tv_denoising_data(structured.SEED, 10)
    problem = structured.build_tv_denoising(structured.SEED, 10)
    objective, _ = peers.evaluate(problem, noisy)
    expected = structured.TV_DENOISING_WEIGHT * np.sum(
        np.hypot(np.diff(noisy, axis=0)[:, :-1], np.diff(noisy, axis=1)[:-1, :])
    )
    assert objective == pytest.approx(expected, rel=1e-12)
    k, y = structured.deconvolution_data(structured.SEED, 50)
    problem = structured.build_deconvolution(structured.SEED, 50)
    objective, _ = peers.evaluate(problem, np.zeros(50))
    assert (k.size, y.size) == (31, 80)
    assert objective == pytest.approx(np.sum(y**2), rel=1e-12)


@pytest.mark.parametrize("model", list(SIZES))
def test_pyproximal_reaches_the_reference(model: str, references: dict[str, float]) -> None:
    pytest.importorskip("pyproximal")
    run = peers.run_pyproximal(model, SIZES[model], references[model], TARGET, 0.3, CAP)
    assert run.reached and math.isfinite(run.objective)
    assert run.rel_error <= TARGET and run.iterations < CAP


@pytest.mark.parametrize("model", list(SIZES))
def test_dprox_reaches_the_reference(model: str, references: dict[str, float]) -> None:
    if not peers.installed(peers.DPROX):
        pytest.skip("dprox is not installed")
    run = peers.run_dprox(model, SIZES[model], references[model], TARGET, 1.0, CAP)
    assert run.reached and math.isfinite(run.objective)
    assert run.rel_error <= TARGET and run.iterations < CAP


def test_checkpoints_stop_at_the_first_budget_within_target() -> None:
    """minimize x^2 (reference 0) with the point 1/sqrt(k) after k iterations: the
    errors at budgets 1, 2, 4, 8, 16 are 1, 1/2, ..., 1/16, and 16 is the first budget
    within 0.1."""
    x = cp.Variable()
    toy = cp.Problem(cp.Minimize(cp.square(x)))
    checkpoints = peers.Checkpoints(toy, 0.0, 0.1, lambda k: np.array(1 / math.sqrt(k)), 64)

    def solve() -> None:
        for k in range(1, 65):
            checkpoints(k)

    peers.iterate(solve, checkpoints)
    run = checkpoints.run("toy", "toy", "")
    assert run.iterations == 16 and run.reached
    assert run.rel_error == pytest.approx(1 / 16)


def test_checkpoints_stop_past_the_time_limit() -> None:
    """A run past its time limit stops at the next iteration, judged there, short of
    the target."""
    x = cp.Variable()
    toy = cp.Problem(cp.Minimize(cp.square(x)))
    checkpoints = peers.Checkpoints(toy, 0.0, 1e-9, lambda k: np.array(1.0), 64, 0.0, -1.0)
    peers.iterate(lambda: [checkpoints(k) for k in range(3, 65)], checkpoints)
    run = checkpoints.run("toy", "toy", "")
    assert run.iterations == 1 and not run.reached
    assert run.rel_error == 1.0 and "time limit" in run.note


def test_table_ratios() -> None:
    runs = [
        peers.Run(peers.NABLAPROX, "m", 0.5, 100, 1.0, 1e-5, 0.0),
        peers.Run(peers.DPROX, "m", 2.0, 1024, 1.0, 9e-6, 0.0),
        peers.Run(peers.PYPROXIMAL, "m", 4.0, 4096, 1.0, 3e-5, 0.0, reached=False),
    ]
    assert peers.ratio(runs[0], runs[1]) == pytest.approx(0.25)
    missing = peers.Run(peers.DPROX, "m", math.nan, 0, math.nan, math.nan, math.nan, False)
    assert math.isnan(peers.ratio(runs[0], missing))
    lines = peers.table(runs, {"m": 8}).splitlines()
    assert "| 0.25 |" in lines[3]
    assert "| 0.125 (peer short of the target) |" in lines[4]
