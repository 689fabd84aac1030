"""CvxproxLayer's structured route: the batch solved as one block-diagonal structured
program and differentiated through the prox maps' Jacobians. Gradients against finite
differences and against the cone route, on models with parameters in the terms' arguments
(the torch evaluation), in weights (probes) and in constraints."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_torch_layer import TIGHT, check_gradient, lasso  # noqa: E402

from cvxprox.torch import CvxproxLayer  # noqa: E402
from cvxprox.torch.expression import evaluate  # noqa: E402


def huber_regression(rng):
    m, n = 12, 6
    A, b = cp.Parameter((m, n)), cp.Parameter(m)
    lam = cp.Parameter(nonneg=True)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(cp.sum(cp.huber(A @ x - b, 0.5)) + lam * cp.norm1(x)))
    b_value = rng.standard_normal(m)
    b_value[:3] += 4.0  # outliers in the linear part of the loss
    return prob, [A, b, lam], [x], [rng.standard_normal((m, n)), b_value, 0.3]


def weighted_elastic_net(rng):
    m, n = 10, 8
    A, b = cp.Parameter((m, n)), cp.Parameter(m)
    w = cp.Parameter(n, nonneg=True)
    mu = cp.Parameter(nonneg=True)
    x = cp.Variable(n)
    objective = (
        0.5 * cp.sum_squares(A @ x - b) + cp.sum(cp.multiply(w, cp.abs(x))) + mu * cp.sum_squares(x)
    )
    values = [rng.standard_normal((m, n)), rng.standard_normal(m), rng.uniform(0.2, 1.0, n), 0.4]
    return cp.Problem(cp.Minimize(objective)), [A, b, w, mu], [x], values


def constrained_lasso(rng):
    m, n, k = 10, 8, 3
    A, b = cp.Parameter((m, n)), cp.Parameter(m)
    G, h = cp.Parameter((k, n)), cp.Parameter(k)
    s = cp.Parameter()
    x = cp.Variable(n)
    prob = cp.Problem(
        cp.Minimize(cp.sum_squares(A @ x - b) + 0.2 * cp.norm1(x)),
        [x >= -1, G @ x <= h, cp.sum(x) == s],
    )
    values = [
        rng.standard_normal((m, n)),
        rng.standard_normal(m),
        rng.standard_normal((k, n)),
        rng.uniform(0.0, 0.3, k),
        0.5,
    ]
    return prob, [A, b, G, h, s], [x], values


def hinge_svm(rng):
    m, n = 20, 4
    X = cp.Parameter((m, n))
    lam = cp.Parameter(nonneg=True)
    w, w0 = cp.Variable(n), cp.Variable()
    labels = np.where(rng.standard_normal(m) > 0, 1.0, -1.0)
    margin = cp.multiply(labels, X @ w + w0)
    prob = cp.Problem(cp.Minimize(cp.sum(cp.pos(1 - margin)) + lam * cp.sum_squares(w)))
    features = rng.standard_normal((m, n)) + 0.8 * labels[:, None]
    return prob, [X, lam], [w, w0], [features, 0.5]


def matrix_denoising(rng):
    """A matrix variable and parameter: Fortran-order vectorization on both routes."""
    Y, lam = cp.Parameter((4, 3)), cp.Parameter(nonneg=True)
    X = cp.Variable((4, 3))
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(X - Y.T.T) + lam * cp.sum(cp.abs(X.T))))
    return prob, [Y, lam], [X], [rng.standard_normal((4, 3)), 0.4]


def tv_denoising(rng):
    """2-D isotropic TV: a group l2 term (block prox Jacobians)."""
    Y, lam = cp.Parameter((5, 4)), cp.Parameter(nonneg=True)
    X = cp.Variable((5, 4))
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(X - Y) + lam * cp.tv(X)))
    return prob, [Y, lam], [X], [rng.standard_normal((5, 4)), 0.3]


def square_root_lasso(rng):
    """An l2 norm of a residual (Norm2) next to group l2 norms of a coefficient matrix."""
    m, n, k = 12, 4, 3
    A, B = cp.Parameter((m, n)), cp.Parameter((m, k))
    lam = cp.Parameter(nonneg=True)
    W = cp.Variable((n, k))
    objective = cp.norm(A @ W - B, "fro") + lam * cp.mixed_norm(W, 2, 1)
    values = [rng.standard_normal((m, n)), rng.standard_normal((m, k)), 0.4]
    return cp.Problem(cp.Minimize(objective)), [A, B, lam], [W], values


def tv1d_denoising(rng):
    """1-D TV of a piecewise constant signal: segments of the prox (TV1D)."""
    y, lam, x = cp.Parameter(12), cp.Parameter(nonneg=True), cp.Variable(12)
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - y) + lam * cp.tv(x)))
    signal = np.repeat([0.0, 2.0, -1.0], 4) + 0.3 * rng.standard_normal(12)
    return prob, [y, lam], [x], [signal, 0.4]


def norm_inf_regression(rng):
    """Least squares with a norm_inf penalty that clips several entries of x together."""
    m, n = 10, 6
    A, b, lam = cp.Parameter((m, n)), cp.Parameter(m), cp.Parameter(nonneg=True)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b) + lam * cp.norm_inf(x)))
    return prob, [A, b, lam], [x], [rng.standard_normal((m, n)), 3.0 * rng.standard_normal(m), 10.0]


def logistic_regression(rng):
    m, n = 20, 4
    X, lam = cp.Parameter((m, n)), cp.Parameter(nonneg=True)
    w = cp.Variable(n)
    labels = np.where(rng.standard_normal(m) > 0, 1.0, -1.0)
    loss = cp.sum(cp.logistic(-cp.multiply(labels, X @ w)))
    prob = cp.Problem(cp.Minimize(loss + lam * cp.sum_squares(w)))
    return prob, [X, lam], [w], [rng.standard_normal((m, n)) + 0.5 * labels[:, None], 0.3]


def entropy_projection(rng):
    """min c'x + ||x - y||^2 - sum(entr(x)) over the simplex (NegEntropy, an equality)."""
    n = 6
    c, y, x = cp.Parameter(n), cp.Parameter(n), cp.Variable(n)
    objective = c @ x + cp.sum_squares(x - y) - cp.sum(cp.entr(x))
    prob = cp.Problem(cp.Minimize(objective), [cp.sum(x) == 1])
    return prob, [c, y], [x], [rng.standard_normal(n), rng.uniform(0.0, 0.5, n)]


MODELS = [
    tv_denoising,
    tv1d_denoising,
    norm_inf_regression,
    logistic_regression,
    entropy_projection,
    square_root_lasso,
    lasso,
    huber_regression,
    weighted_elastic_net,
    constrained_lasso,
    hinge_svm,
    matrix_denoising,
]


def _tensors(values, batch=None, rng=None):
    out = []
    for v in values:
        v = np.asarray(v, dtype=np.float64)
        if batch is not None and v.ndim > 0:
            v = v[None] + 0.05 * rng.standard_normal((batch, *v.shape))
            v = np.abs(v) if np.all(v > 0) else v
        out.append(torch.tensor(v, requires_grad=True))
    return out


def _layer(make, rng, structure="always"):
    prob, params, variables, values = make(rng)
    layer = CvxproxLayer(prob, params, variables, solver_args=TIGHT, structure=structure)
    return layer, params, values


def _loss(outputs, weights):
    return sum((w * out).sum() for w, out in zip(weights, outputs, strict=True))


@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("make", MODELS, ids=lambda f: f.__name__)
def test_gradient_matches_finite_differences(make, batch):
    rng = np.random.default_rng(3)
    layer, params, values = _layer(make, rng)
    check_gradient(layer, params, _tensors(values, batch, rng), rng)
    assert layer.info["route"].startswith("structured"), layer.info["route"]


@pytest.mark.parametrize("make", MODELS, ids=lambda f: f.__name__)
def test_structured_and_cone_routes_agree(make):
    """The same solutions and gradients (every parameter) from both routes, batched."""
    results = []
    for structure in ("always", "never"):
        rng = np.random.default_rng(4)
        layer, _, values = _layer(make, rng, structure)
        tensors = _tensors(values, 2, rng)
        outputs = layer(*tensors)
        weights = [torch.tensor(rng.standard_normal(o.shape)) for o in outputs]
        _loss(outputs, weights).backward()
        results.append(([o.detach() for o in outputs], [t.grad for t in tensors]))
        assert layer.info["route"].startswith("structured" if structure == "always" else "cones")
    (xs_s, gs_s), (xs_c, gs_c) = results
    for a, b in zip(xs_s, xs_c, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    for a, b in zip(gs_s, gs_c, strict=True):
        scale = max(1.0, float(b.abs().max()))
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4 * scale)


def test_auto_takes_the_structured_route_for_a_lasso_and_cones_otherwise():
    rng = np.random.default_rng(5)
    prob, params, variables, values = lasso(rng)
    layer = CvxproxLayer(prob, params, variables)
    layer(*_tensors(values))
    assert layer.info["route"].startswith("structured")
    assert layer.info["algorithm"] == "fista"
    # 1-D TV: an exact TV prox term (FISTA), whose prox Jacobian averages over segments.
    y, mu, z = cp.Parameter(12), cp.Parameter(nonneg=True), cp.Variable(12)
    tv1 = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(z - y) + mu * cp.tv(z)))
    layer = CvxproxLayer(tv1, [y, mu], [z])
    layer(torch.tensor(rng.standard_normal(12)), torch.tensor(0.2))
    assert layer.info["route"].startswith("structured"), layer.info["route"]
    assert layer.info["algorithm"] == "fista"
    # A parameter of 100 entries in a weight cannot be probed.
    W, x = cp.Parameter(100, nonneg=True), cp.Variable(100)
    weighted = cp.Problem(cp.Minimize(cp.sum_squares(x - 1) + cp.sum(cp.multiply(W, cp.abs(x)))))
    layer = CvxproxLayer(weighted, [W], [x], structure="always")
    layer(torch.tensor(rng.uniform(0, 1, 100)))
    assert "enters other than through the argument" in layer.info["route"]


def test_structure_never_and_bad_mode():
    rng = np.random.default_rng(6)
    prob, params, variables, values = lasso(rng)
    layer = CvxproxLayer(prob, params, variables, structure="never")
    layer(*_tensors(values))
    assert layer.info["route"].startswith("cones")
    with pytest.raises(ValueError, match="structure must be one of"):
        CvxproxLayer(prob, params, variables, structure="sometimes")


def test_a_batch_whose_terms_differ_falls_back_to_cones():
    """lam = 0 in one element drops the l1 term from its lowering: that call takes cones,
    and its gradient still matches the structured route's elsewhere."""
    rng = np.random.default_rng(7)
    prob, params, variables, values = lasso(rng)
    layer = CvxproxLayer(prob, params, variables, solver_args=TIGHT)
    A = torch.tensor(np.stack([values[0]] * 2), requires_grad=True)
    b = torch.tensor(np.stack([values[1]] * 2), requires_grad=True)
    lam = torch.tensor(0.5, requires_grad=True)
    layer(A, b, lam)
    assert layer.info["route"].startswith("structured")
    (x,) = layer(A, b, torch.tensor([0.5, 0.0]))
    assert layer.info["route"].startswith("cones: the terms of batch element 1")
    x.sum().backward()
    assert torch.isfinite(A.grad).all()


def test_parameter_values_are_left_as_they_were():
    rng = np.random.default_rng(8)
    prob, params, variables, values = lasso(rng)
    params[2].value = 7.0
    layer = CvxproxLayer(prob, params, variables)
    layer(*_tensors(values))
    assert params[0].value is None and params[1].value is None
    assert params[2].value == 7.0


def test_torch_evaluation_of_affine_expressions():
    """``evaluate`` reproduces CVXPY's values, including Fortran-order reshapes."""
    rng = np.random.default_rng(9)
    A, b = cp.Parameter((3, 4)), cp.Parameter(3)
    x, X = cp.Variable(4), cp.Variable((3, 4))
    for leaf in (A, b, x, X):
        leaf.value = rng.standard_normal(leaf.shape)
    expressions = [
        A @ x - b,
        cp.reshape(X, (4, 3), order="F"),
        cp.reshape(X, (2, 6), order="C"),
        cp.vec(X, order="F"),
        X[1:, ::2],
        X[[0, 2], [1, 3]],
        cp.sum(X, axis=0) + cp.sum(X, axis=1, keepdims=True) @ np.ones((1, 4)) / 4,
        cp.hstack([x, X[0]]),
        cp.vstack([X, A]),
        cp.cumsum(X, axis=1),
        cp.trace(X[:, :3]),
        cp.diag(x),
        cp.convolve(np.arange(3.0), x),
        cp.diff(x),
        2 * X.T @ b + cp.multiply(x, x.value),
    ]
    for expr in expressions:
        leaves = {
            leaf.id: torch.tensor(np.asarray(leaf.value, dtype=np.float64))
            for leaf in expr.variables() + expr.parameters()
        }
        np.testing.assert_allclose(evaluate(expr, leaves).numpy(), expr.value, atol=1e-12)


def _gradients(prob, params, variable, values, structure, weights=None):
    layer = CvxproxLayer(prob, params, [variable], solver_args=TIGHT, structure=structure)
    tensors = [torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for v in values]
    (out,) = layer(*tensors)
    (out if weights is None else out * torch.tensor(weights)).sum().backward()
    return layer.info["route"], [t.grad.numpy() for t in tensors]


def _routes_agree(prob, params, variable, values, weights=None):
    route, structured = _gradients(prob, params, variable, values, "always", weights)
    _, cones = _gradients(prob, params, variable, values, "never", weights)
    for a, b in zip(structured, cones, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    return route


def test_a_parameter_in_an_argument_and_elsewhere_is_probed():
    """c enters the argument of sum_squares and the linear objective: dx/dc = 1/2."""
    x, c = cp.Variable(5), cp.Parameter(5)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - c) + c @ x + 0.3 * cp.norm1(x)))
    route = _routes_agree(prob, [c], x, [np.array([1.0, -2.0, 0.1, 3.0, -0.5])])
    assert route.startswith("structured")
    w = cp.Parameter(100, nonneg=True)
    y = cp.Variable(100)
    shared = cp.Problem(cp.Minimize(cp.sum_squares(y - w) + cp.sum(cp.multiply(w, cp.abs(y)))))
    route, (grad,) = _gradients(shared, [w], y, [np.linspace(0.3, 1.5, 100)], "auto")
    assert route.startswith("cones: parameter")  # 100 entries: too many to probe
    np.testing.assert_allclose(grad, 0.5, atol=1e-6)  # x = w / 2


def test_parameters_the_torch_evaluation_cannot_follow_are_refused():
    """A Huber threshold (an attribute, not an argument) and a reversed slice."""
    rng = np.random.default_rng(10)
    x, A, b, M = cp.Variable(4), cp.Parameter((12, 4)), cp.Parameter(12), cp.Parameter(pos=True)
    prob = cp.Problem(cp.Minimize(cp.sum(cp.huber(A @ x - b, M)) + 0.1 * cp.norm1(x)))
    b_value = rng.standard_normal(12)
    b_value[:3] += 5.0
    values = [rng.standard_normal((12, 4)), b_value, 0.5]
    route, _ = _gradients(prob, [A, b, M], x, values, "auto")
    assert route.startswith("cones:"), route
    p, lam, z = cp.Parameter(6), cp.Parameter(nonneg=True), cp.Variable(6)
    flipped = cp.Problem(cp.Minimize(cp.sum_squares(z[::-1] - p) + lam * cp.norm1(z)))
    _routes_agree(flipped, [p, lam], z, [rng.standard_normal(6), 0.3])


def test_cumsum_of_a_matrix_in_an_argument():
    rng = np.random.default_rng(11)
    X, P, q = cp.Variable((3, 2)), cp.Parameter((3, 2)), cp.Parameter(6)
    residual = cp.cumsum(cp.multiply(P, X), axis=None) - q
    prob = cp.Problem(cp.Minimize(cp.sum_squares(residual) + 0.1 * cp.sum(cp.abs(X))))
    values = [rng.uniform(0.5, 1.5, (3, 2)), rng.standard_normal(6)]
    assert _routes_agree(prob, [P, q], X, values).startswith("structured")


def test_an_equality_fixing_a_coordinate_at_a_kink_takes_the_whole_multiplier():
    """x[0] == a with a = 0, where norm1 is also at its kink: dx0/da = 1."""
    x, t, a = cp.Variable(4), cp.Parameter(4), cp.Parameter()
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - t) + cp.norm1(x)), [x[0] == a])
    values = [np.array([0.2, 2.0, -3.0, 0.1]), 0.0]
    _, (_, da) = _gradients(prob, [t, a], x, values, "always", np.array([1.0, 0, 0, 0]))
    np.testing.assert_allclose(da, 1.0, atol=1e-8)


def _clarabel(prob, params, values):
    for param, value in zip(params, values, strict=True):
        param.value = value
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    return [v.value for v in prob.variables()]


def test_tv1d_gradient_is_the_average_over_the_segments_of_clarabels_solution():
    """x = prox_{lam TV}(y), so dL/dy = D dL/dx with D = 11'/k on each run of k equal
    entries of x, and dL/dlam = (dx/dlam)'dL/dx with dx/dlam = (s_right - s_left)/k on a
    run (s the signs of the jumps to its neighbours), read off Clarabel's solution."""
    rng = np.random.default_rng(12)
    prob, params, variables, values = tv1d_denoising(rng)
    (x_ref,) = _clarabel(prob, params, values)
    cuts = np.flatnonzero(np.abs(np.diff(x_ref)) > 1e-6) + 1
    segments = np.split(np.arange(x_ref.size), cuts)
    assert max(len(seg) for seg in segments) > 1
    layer = CvxproxLayer(prob, params, variables, solver_args=TIGHT)
    y, lam = (torch.tensor(v, requires_grad=True) for v in values)
    (x,) = layer(y, lam)
    assert layer.info["route"].startswith("structured"), layer.info["route"]
    np.testing.assert_allclose(x.detach().numpy(), x_ref, atol=1e-7)
    weights = rng.standard_normal(x_ref.size)
    (x * torch.tensor(weights)).sum().backward()
    jumps = np.concatenate([[0.0], np.sign(np.diff(x_ref))[cuts - 1], [0.0]])
    dy, dlam = np.zeros_like(weights), 0.0
    for k, seg in enumerate(segments):
        dy[seg] = weights[seg].mean()
        dlam += (jumps[k + 1] - jumps[k]) * weights[seg].mean()
    np.testing.assert_allclose(y.grad.numpy(), dy, atol=1e-7)
    np.testing.assert_allclose(float(lam.grad), dlam, atol=1e-7)


def test_norm_inf_regression_clips_several_entries_and_matches_clarabel():
    """The solution has several entries at +-||x||_inf (norm_inf's prox Jacobian has a
    rank-one block there); its gradient against central differences of Clarabel's
    solution map."""
    rng = np.random.default_rng(3)
    prob, params, variables, values = norm_inf_regression(rng)
    (x_ref,) = _clarabel(prob, params, values)
    top = np.abs(x_ref).max()
    assert np.count_nonzero(np.abs(x_ref) > top - 1e-7) > 1
    layer = CvxproxLayer(prob, params, variables, solver_args=TIGHT)
    tensors = [torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for v in values]
    (x,) = layer(*tensors)
    assert layer.info["route"].startswith("structured"), layer.info["route"]
    np.testing.assert_allclose(x.detach().numpy(), x_ref, atol=1e-7)
    weights = rng.standard_normal(x_ref.size)
    (x * torch.tensor(weights)).sum().backward()
    directions = [rng.standard_normal(np.shape(v)) for v in values]
    analytic = sum(
        float((t.grad.numpy() * d).sum()) for t, d in zip(tensors, directions, strict=True)
    )
    h = 1e-5
    losses = [
        weights
        @ _clarabel(prob, params, [v + s * h * d for v, d in zip(values, directions, strict=True)])[
            0
        ]
        for s in (1.0, -1.0)
    ]
    np.testing.assert_allclose(analytic, (losses[0] - losses[1]) / (2 * h), rtol=1e-5, atol=1e-6)
