"""A zoo of ordinary CVXPY models, solved with each solver's default options.

Usage (from the repository root)::

    python compare/zoo.py [--solvers NABLAPROX,SCS,CLARABEL] [--repeats 3] [--seed 0]
                          [--models lasso,mpc] [--timeout 120]

Each model is a function ``build_<name>(seed) -> cvxpy.Problem`` of modest size (tens to
a few hundred variables), listed in :data:`MODELS`. For each model, Clarabel first solves
it at tight tolerances (1e-10) for a reference objective; then every solver solves a
freshly built copy with default options, ``--repeats`` times, keeping the best time of
``prob.solve`` (CVXPY compile included). A solve is accurate when its status is optimal
or optimal_inaccurate and ``|obj - ref| / max(1, |ref|) <= 1e-4``.

Writes ``compare/results/zoo.{csv,md}`` and prints the Markdown report.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `compare` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
from collections.abc import Callable, Iterable  # noqa: E402
from typing import Any  # noqa: E402

import cvxpy as cp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from compare import common  # noqa: E402

#: Relative objective tolerance for a solve to count as accurate.
TOLERANCE = 1e-4

#: Options of the Clarabel reference solve.
REFERENCE_OPTIONS = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}


# ------------------------------------------------------------------------------ models


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


# ------------------------------------------------------------------------------ runner


def size_of(prob: cp.Problem) -> str:
    """``"<variables> / <constraints>"``, in scalar entries of the user's model."""
    return f"{prob.size_metrics.num_scalar_variables} / {sum(c.size for c in prob.constraints)}"


def solve_zoo(
    name: str, seed: int, solver: str, options: dict[str, Any], repeats: int
) -> dict[str, Any]:
    """Worker task: best-of-``repeats`` solve, each on a freshly built problem."""
    best: dict[str, Any] = {}
    for _ in range(repeats):
        prob = MODELS[name](seed)
        result = common.timed_solve(prob, solver, options)
        result["time"] = min(result["time"], best.get("time", np.inf))
        best = result
        if result["status"].startswith("error"):
            break
    best["size"] = size_of(prob)
    return best


def run(
    names: list[str], solvers: list[str], seed: int, repeats: int, timeout: float, out: Path
) -> list[dict[str, Any]]:
    """Reference solve plus one record per (model, solver)."""
    records = []
    with common.SolveWorker() as worker:
        for i, name in enumerate(names, 1):
            ref = worker.run(solve_zoo, (name, seed, "CLARABEL", REFERENCE_OPTIONS, 1), timeout)
            reference = ref.get("objective", np.nan)
            common.log(f"[{i}/{len(names)}] {name:22s} reference {ref['status']} {reference}")
            for solver in solvers:
                res = worker.run(solve_zoo, (name, seed, solver, {}, repeats), timeout * repeats)
                rel_err = common.relative_error(res.get("objective", np.nan), reference)
                records.append(
                    {
                        "model": name,
                        "size": ref.get("size", res.get("size", "?")),
                        "reference_status": ref["status"],
                        "reference": reference,
                        "solver": solver,
                        "status": res["status"],
                        "objective": res.get("objective", np.nan),
                        "rel_err": rel_err,
                        "time": res.get("time", np.nan),
                        "accurate": res["status"] in common.SOLVED and rel_err <= TOLERANCE,
                    }
                )
                common.log(
                    f"    {solver:10s} {res['status']:22s} rel_err={common.fmt(rel_err)} "
                    f"time={common.fmt(res.get('time'), '.4f')}s"
                )
            common.save_progress(out, "zoo", records)
    return records


def _median(values: Iterable[float]) -> float:
    """Median, NaN for no values."""
    v = list(values)
    return float(np.median(v)) if v else float("nan")


def report(
    records: list[dict[str, Any]], solvers: list[str], repeats: int, header: list[str]
) -> str:
    """Markdown report: per-model table and summary per solver."""
    ratio = common.NABLAPROX in solvers and "SCS" in solvers
    lines = (
        ["# CVXPY model zoo", ""]
        + header
        + [
            "- Reference: Clarabel with tol_gap_abs = tol_gap_rel = tol_feas = 1e-10.",
            f"- Solvers: default options; time = best of {repeats} `prob.solve` calls, each "
            "on a freshly built problem (CVXPY compile included).",
            f"- Accurate: status optimal/optimal_inaccurate and |obj - ref| / max(1, |ref|) "
            f"<= {TOLERANCE:g}.",
            "",
            "## Models",
            "",
        ]
    )
    by_key = {(r["model"], r["solver"]): r for r in records}
    names = list(dict.fromkeys(r["model"] for r in records))
    headers = ["Model", "vars / cons", "reference"]
    for solver in solvers:
        headers += [f"{solver} status", f"{solver} rel err", f"{solver} time (ms)"]
    headers += ["NABLAPROX / SCS time"] if ratio else []
    rows, ratios = [], []
    for name in names:
        first = by_key[(name, solvers[0])]
        row = [name, first["size"], common.fmt(first["reference"], ".8g")]
        for solver in solvers:
            r = by_key[(name, solver)]
            row += [
                ("✓ " if r["accurate"] else "") + r["status"],
                common.fmt(r["rel_err"]),
                common.fmt(1e3 * r["time"], ".1f"),
            ]
        if ratio:
            mine, scs = by_key[(name, common.NABLAPROX)], by_key[(name, "SCS")]
            both = mine["status"] in common.SOLVED and scs["status"] in common.SOLVED
            value = mine["time"] / scs["time"] if both else np.nan
            ratios.append(value)
            row.append(common.fmt(value, ".2f"))
        rows.append(row)
    lines += [common.markdown_table(headers, rows), "", "## Summary", ""]

    summary = []
    for solver in solvers:
        mine = [r for r in records if r["solver"] == solver]
        solved = [r for r in mine if r["status"] in common.SOLVED]
        summary.append(
            [
                solver,
                f"{sum(r['accurate'] for r in mine)}/{len(mine)}",
                common.fmt(1e3 * _median(r["time"] for r in solved), ".1f"),
            ]
        )
    headers = ["Solver", f"accurate (<= {TOLERANCE:g})", "median time of solved (ms)"]
    lines += [common.markdown_table(headers, summary), ""]
    if ratio:
        finite = [v for v in ratios if np.isfinite(v)]
        lines.append(
            f"Median time ratio NABLAPROX / SCS: {common.fmt(_median(finite), '.2f')} "
            f"(over the {len(finite)} models both solved, optimal or optimal_inaccurate)."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--solvers", default="NABLAPROX,SCS,CLARABEL", help="comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="solves per model, best time")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model data")
    parser.add_argument("--models", help=f"comma-separated subset of: {', '.join(MODELS)}")
    parser.add_argument("--timeout", type=float, default=120.0, help="hard limit per solve (s)")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    args = parser.parse_args(argv)
    solvers = common.parse_solvers(args.solvers)
    common.parse_solvers("CLARABEL")  # the reference solver must be available too

    names = list(MODELS)
    if args.models:
        names = [n.strip() for n in args.models.split(",")]
        unknown = sorted(set(names) - set(MODELS))
        if unknown:
            sys.exit(f"error: unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")

    records = run(names, solvers, args.seed, args.repeats, args.timeout, args.results_dir)
    markdown = report(records, solvers, args.repeats, common.environment_lines(solvers))
    print(markdown)
    common.write_results(args.results_dir, "zoo", records, markdown)


if __name__ == "__main__":
    main()
