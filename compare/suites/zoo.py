"""The zoo: sixteen ordinary CVXPY models of modest size, one per everyday model type.

Each model is a function ``build_<name>(seed) -> cvxpy.Problem`` (tens to a few hundred
variables), listed in :data:`MODELS` with its problem class in :data:`MODEL_CLASSES`.
The reference objective is Clarabel's at tight tolerances (:data:`REFERENCE_OPTIONS`),
computed once and cached.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from compare.harness import Case, ReferenceSolver, Suite

#: Options of the Clarabel reference solve.
REFERENCE_OPTIONS = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}

#: Seed of the models' data.
SEED = 0


def build_lp(seed: int = 0) -> cp.Problem:
    """Random feasible, bounded LP: min c'x s.t. Ax <= b, x >= 0 (150 vars, 100 rows).

    ``b = A x0 + s0`` makes it feasible; ``c = -A'lam + mu`` with ``lam, mu >= 0``
    makes its dual feasible, hence the LP bounded.
    """
    rng = np.random.default_rng(seed)
    m, n = 100, 150
    A = rng.standard_normal((m, n))
    b = A @ rng.uniform(0, 1, n) + rng.uniform(0.1, 1, m)
    c = -A.T @ rng.uniform(0, 1, m) + rng.uniform(0, 1, n)
    x = cp.Variable(n)
    return cp.Problem(cp.Minimize(c @ x), [A @ x <= b, x >= 0])


def build_transportation(seed: int = 0) -> cp.Problem:
    """Transportation problem: 10 warehouses, 20 stores, Euclidean shipping costs."""
    rng = np.random.default_rng(seed)
    n_src, n_dst = 10, 20
    src, dst = rng.uniform(0, 100, (n_src, 2)), rng.uniform(0, 100, (n_dst, 2))
    cost = np.linalg.norm(src[:, None, :] - dst[None, :, :], axis=2)
    demand = rng.uniform(10, 50, n_dst)
    supply = rng.uniform(0.5, 1.5, n_src)
    supply *= 1.2 * demand.sum() / supply.sum()
    X = cp.Variable((n_src, n_dst), nonneg=True)
    constraints = [cp.sum(X, axis=1) <= supply, cp.sum(X, axis=0) == demand]
    return cp.Problem(cp.Minimize(cp.sum(cp.multiply(cost, X))), constraints)


def build_markowitz(seed: int = 0) -> cp.Problem:
    """Long-only Markowitz portfolio, 100 assets, factor covariance, risk aversion 5."""
    rng = np.random.default_rng(seed)
    n, k = 100, 5
    F = rng.standard_normal((n, k)) * 0.1
    sigma = F @ F.T + np.diag(rng.uniform(0.01, 0.05, n))
    mu = rng.normal(0.05, 0.03, n)
    w = cp.Variable(n)
    objective = cp.Maximize(mu @ w - 5.0 * cp.quad_form(w, sigma))
    return cp.Problem(objective, [cp.sum(w) == 1, w >= 0])


def build_lasso(seed: int = 0) -> cp.Problem:
    """Lasso: 100 samples, 200 features, 10 nonzero true coefficients."""
    rng = np.random.default_rng(seed)
    m, n = 100, 200
    A = rng.standard_normal((m, n))
    x_true = np.zeros(n)
    x_true[rng.choice(n, 10, replace=False)] = rng.standard_normal(10)
    b = A @ x_true + 0.1 * rng.standard_normal(m)
    lam = 0.1 * np.max(np.abs(A.T @ b))
    x = cp.Variable(n)
    return cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A @ x - b) + lam * cp.norm1(x)))


def build_huber(seed: int = 0) -> cp.Problem:
    """Huber regression: 200 samples, 50 features, 10% gross outliers."""
    rng = np.random.default_rng(seed)
    m, n = 200, 50
    A = rng.standard_normal((m, n))
    b = A @ rng.standard_normal(n) + 0.1 * rng.standard_normal(m)
    outliers = rng.choice(m, m // 10, replace=False)
    b[outliers] += rng.choice([-1, 1], outliers.size) * rng.uniform(5, 20, outliers.size)
    x = cp.Variable(n)
    return cp.Problem(cp.Minimize(cp.sum(cp.huber(A @ x - b, M=1.0))))


def build_svm(seed: int = 0) -> cp.Problem:
    """Soft-margin SVM (hinge loss + l2): 200 points, 20 features, overlapping classes."""
    rng = np.random.default_rng(seed)
    m, n = 200, 20
    y = rng.choice([-1.0, 1.0], m)
    X = rng.standard_normal((m, n)) + 0.5 * y[:, None] * rng.standard_normal(n)
    w, b = cp.Variable(n), cp.Variable()
    loss = cp.sum(cp.pos(1 - cp.multiply(y, X @ w + b))) / m
    return cp.Problem(cp.Minimize(loss + 0.1 * cp.sum_squares(w)))


def build_mpc(seed: int = 0) -> cp.Problem:
    """Linear MPC: 6 states, 3 inputs, horizon 20, quadratic cost, |u| <= 1."""
    rng = np.random.default_rng(seed)
    nx, nu, T = 6, 3, 20
    A = np.eye(nx) + 0.1 * rng.standard_normal((nx, nx))
    A /= max(1.0, np.max(np.abs(np.linalg.eigvals(A))))  # marginally stable
    B = rng.standard_normal((nx, nu))
    x0 = 5.0 * rng.standard_normal(nx)
    x, u = cp.Variable((nx, T + 1)), cp.Variable((nu, T))
    constraints = [x[:, 0] == x0, x[:, 1:] == A @ x[:, :-1] + B @ u, cp.abs(u) <= 1]
    cost = cp.sum_squares(x) + 0.1 * cp.sum_squares(u) + 10 * cp.sum_squares(x[:, T])
    return cp.Problem(cp.Minimize(cost), constraints)


def build_logistic(seed: int = 0) -> cp.Problem:
    """l1-regularized logistic regression: 200 samples, 20 features."""
    rng = np.random.default_rng(seed)
    m, n = 200, 20
    X = rng.standard_normal((m, n))
    w_true = rng.standard_normal(n) * (rng.uniform(size=n) < 0.5)
    y = (X @ w_true + 0.5 * rng.standard_normal(m) > 0).astype(float)
    w = cp.Variable(n)
    z = X @ w
    loss = cp.sum(cp.logistic(z) - cp.multiply(y, z)) / m
    return cp.Problem(cp.Minimize(loss + 0.01 * cp.norm1(w)))


def build_entropy(seed: int = 0) -> cp.Problem:
    """Maximum entropy distribution on 100 points under 20 moment inequalities."""
    rng = np.random.default_rng(seed)
    n, m = 100, 20
    F = rng.standard_normal((m, n))
    p0 = rng.dirichlet(np.ones(n))
    g = F @ p0 + 0.05 * rng.uniform(size=m)
    p = cp.Variable(n)
    return cp.Problem(cp.Maximize(cp.sum(cp.entr(p))), [cp.sum(p) == 1, F @ p <= g])


def build_robust_lp(seed: int = 0) -> cp.Problem:
    """Robust LP with ellipsoidal uncertainty (SOCP): 30 constraints, 20 variables."""
    rng = np.random.default_rng(seed)
    m, n = 30, 20
    a = rng.standard_normal((m, n))
    b = rng.uniform(1, 2, m)
    P = 0.1 * rng.standard_normal((m, n, n))
    c = rng.standard_normal(n)
    x = cp.Variable(n)
    constraints = [a[i] @ x + cp.norm(P[i].T @ x, 2) <= b[i] for i in range(m)]
    constraints.append(cp.norm(x, "inf") <= 10)
    return cp.Problem(cp.Minimize(c @ x), constraints)


def build_nearest_correlation(seed: int = 0) -> cp.Problem:
    """Nearest correlation matrix (SDP) to a noisy 15 x 15 estimate, Frobenius norm."""
    rng = np.random.default_rng(seed)
    n = 15
    N = rng.uniform(-1, 1, (n, n))
    C = (N + N.T) / 2
    np.fill_diagonal(C, 1.0)
    X = cp.Variable((n, n), symmetric=True)
    return cp.Problem(cp.Minimize(cp.norm(X - C, "fro")), [X >> 0, cp.diag(X) == 1])


def build_maxcut(seed: int = 0) -> cp.Problem:
    """Goemans-Williamson max-cut SDP relaxation of a random 16-node weighted graph."""
    rng = np.random.default_rng(seed)
    n = 16
    W = np.triu(rng.uniform(0, 1, (n, n)) * (rng.uniform(size=(n, n)) < 0.4), 1)
    W = W + W.T
    L = np.diag(W.sum(axis=1)) - W
    X = cp.Variable((n, n), PSD=True)
    return cp.Problem(cp.Maximize(cp.trace(L @ X) / 4), [cp.diag(X) == 1])


def build_geo_mean(seed: int = 0) -> cp.Problem:
    """Proportional-fair allocation: maximize geo_mean(x) under 10 resource budgets."""
    rng = np.random.default_rng(seed)
    n, m = 20, 10
    R = rng.uniform(0, 1, (m, n))
    x = cp.Variable(n)
    return cp.Problem(cp.Maximize(cp.geo_mean(x)), [R @ x <= 1, x >= 0])


def build_eq_qp(seed: int = 0) -> cp.Problem:
    """Equality-constrained convex QP: 100 variables, 30 equalities."""
    rng = np.random.default_rng(seed)
    n, m = 100, 30
    M = rng.standard_normal((n, n))
    P = M @ M.T / n + 0.1 * np.eye(n)
    q = rng.standard_normal(n)
    A, b = rng.standard_normal((m, n)), rng.standard_normal(m)
    x = cp.Variable(n)
    return cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, P) + q @ x), [A @ x == b])


def build_trend_filter(seed: int = 0) -> cp.Problem:
    """l1 trend filtering of a noisy piecewise-linear signal of length 300."""
    rng = np.random.default_rng(seed)
    n = 300
    slopes = rng.standard_normal(6)
    signal = np.cumsum(np.repeat(slopes, n // 6)) / 10
    y = signal + 0.5 * rng.standard_normal(n)
    D = sp.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(n - 2, n))
    x = cp.Variable(n)
    return cp.Problem(cp.Minimize(0.5 * cp.sum_squares(y - x) + 5.0 * cp.norm1(D @ x)))


def build_max_volume_ellipsoid(seed: int = 0) -> cp.Problem:
    """Largest ellipsoid {Bu + d : |u| <= 1} in a random 4-D polytope (log_det, SOC)."""
    rng = np.random.default_rng(seed)
    n, m = 4, 20
    a = rng.standard_normal((m, n))
    b = rng.uniform(1, 2, m)
    B, d = cp.Variable((n, n), PSD=True), cp.Variable(n)
    constraints = [cp.norm(B @ a[i], 2) + a[i] @ d <= b[i] for i in range(m)]
    return cp.Problem(cp.Maximize(cp.log_det(B)), constraints)


#: Model name -> builder; tests can import this to run the zoo with any solver.
MODELS: dict[str, Callable[[int], cp.Problem]] = {
    "lp": build_lp,
    "transportation": build_transportation,
    "markowitz": build_markowitz,
    "lasso": build_lasso,
    "huber": build_huber,
    "svm": build_svm,
    "mpc": build_mpc,
    "logistic": build_logistic,
    "entropy": build_entropy,
    "robust_lp": build_robust_lp,
    "nearest_correlation": build_nearest_correlation,
    "maxcut": build_maxcut,
    "geo_mean": build_geo_mean,
    "eq_qp": build_eq_qp,
    "trend_filter": build_trend_filter,
    "max_volume_ellipsoid": build_max_volume_ellipsoid,
}


#: Model name -> problem class (the richest cone CVXPY's canonicalization needs).
MODEL_CLASSES = {
    "lp": "LP",
    "transportation": "LP",
    "markowitz": "QP",
    "lasso": "QP",
    "huber": "QP",
    "svm": "QP",
    "mpc": "QP",
    "logistic": "EXP",
    "entropy": "EXP",
    "robust_lp": "SOCP",
    "nearest_correlation": "SDP",
    "maxcut": "SDP",
    "geo_mean": "SOCP",
    "eq_qp": "QP",
    "trend_filter": "QP",
    "max_volume_ellipsoid": "SDP",
}


def build_model(name: str) -> cp.Problem:
    """The zoo model ``name`` with the benchmark's data (:data:`SEED`)."""
    return MODELS[name](SEED)


def suite() -> Suite:
    """The zoo suite; its reference is Clarabel at 1e-10 tolerances."""
    cases = tuple(
        Case(
            name=name,
            problem_class=MODEL_CLASSES[name],
            size=build(SEED).size_metrics.num_scalar_variables,
            build=partial(build_model, name),
        )
        for name, build in MODELS.items()
    )
    return Suite(
        name="zoo",
        title="CVXPY model zoo",
        cases=cases,
        reference_solver=ReferenceSolver(
            "CLARABEL",
            REFERENCE_OPTIONS,
            "Clarabel with tol_gap_abs = tol_gap_rel = tol_feas = 1e-10",
        ),
    )
