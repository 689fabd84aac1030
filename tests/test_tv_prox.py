"""FISTA with the prox of 2-D total variation by an inner solver (``TVProxTerm`` in
``cvxprox/solvers/fista.py``): deblurring with TV against Clarabel, the automatic
choice, and honest statuses when the inner solver is starved."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

import cvxprox
from cvxprox.solvers import fista

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}


def _deblurring(n: int = 24, weight: float = 0.02) -> tuple[cp.Problem, cp.Variable]:
    """1/2 ||K * X - Y||^2 + weight tv(X): a blurred, noisy square, a 5x5 Gaussian kernel."""
    rng = np.random.default_rng(4)
    image = np.zeros((n, n))
    image[n // 4 : 3 * n // 4, n // 3 :] = 1.0
    g = np.exp(-0.5 * (np.arange(-2, 3) / 1.2) ** 2)
    kernel = np.outer(g, g) / np.outer(g, g).sum()
    from scipy.signal import convolve2d

    blurred = convolve2d(image, kernel, mode="same") + 0.02 * rng.standard_normal((n, n))
    X = cp.Variable((n, n))
    fit = 0.5 * cp.sum_squares(cvxprox.atoms.conv2d(kernel, X, mode="same") - blurred)
    return cp.Problem(cp.Minimize(fit + weight * cp.tv(X))), X


def _reference(prob: cp.Problem, X: cp.Variable) -> tuple[float, np.ndarray]:
    prob.solve(solver="CLARABEL", **TIGHT)
    assert prob.status == cp.OPTIMAL
    return prob.value, np.array(X.value, copy=True)


def test_deblurring_with_tv_is_fista_with_an_inner_tv_prox() -> None:
    prob, X = _deblurring()
    value, X_ref = _reference(prob, X)
    prob.solve(solver="NABLAPROX")
    stats = prob.solver_stats.extra_stats
    assert stats["algorithm"] == "fista"
    assert stats["inner_iterations"] > 0
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(value, rel=1e-5)
    np.testing.assert_allclose(X.value, X_ref, atol=2e-3)


def test_tv_denoising_stays_with_fista_on_the_dual() -> None:
    """Without a blur the whole problem is the TV prox: FISTA on the dual solves it."""
    n = 20
    noisy = np.random.default_rng(1).standard_normal((n, n))
    X = cp.Variable((n, n))
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(X - noisy) + 0.3 * cp.tv(X)))
    prob.solve(solver="NABLAPROX")
    assert prob.solver_stats.extra_stats["algorithm"] == "dual_fista"
    prob.solve(solver="NABLAPROX", algorithm="fista")
    assert prob.status == cp.OPTIMAL
    value = prob.value
    prob.solve(solver="CLARABEL", **TIGHT)
    assert value == pytest.approx(prob.value, rel=1e-5)


def test_a_starved_inner_solver_never_gives_a_wrong_optimal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With five inner iterations per prox the TV rows' residual D x - z stays large: the
    outer test sees it, so the run either stops at its limit or is right."""
    prob, X = _deblurring()
    value, _ = _reference(prob, X)
    monkeypatch.setattr(fista, "_INNER_MAX", 5)
    prob.solve(solver="NABLAPROX", algorithm="fista", max_iters=300)
    if prob.status == cp.OPTIMAL:
        assert prob.value == pytest.approx(value, rel=1e-5)
    else:
        assert prob.status in (cp.USER_LIMIT, cp.OPTIMAL_INACCURATE)
