"""CvxproxLayer's structured route: the batch solved as one block-diagonal structured
program and differentiated through the prox maps' Jacobians. Gradients against finite
differences and against the cone route, on models with parameters in the terms' arguments
(the torch evaluation), in weights (probes) and in constraints."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_torch_layer import check_gradient  # noqa: E402

from cvxprox.torch import CvxproxLayer  # noqa: E402
from cvxprox.torch.expression import evaluate  # noqa: E402

TIGHT = {"eps_abs": 1e-10, "eps_rel": 1e-10}


def lasso(rng):
    m, n = 8, 12
    A, b = cp.Parameter((m, n)), cp.Parameter(m)
    lam = cp.Parameter(nonneg=True)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b) + lam * cp.norm1(x)))
    return prob, [A, b, lam], [x], [rng.standard_normal((m, n)), rng.standard_normal(m), 0.5]


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


MODELS = [
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
    # 2-D TV: a group l2 term, whose prox Jacobian is not diagonal.
    Y, lam, X = cp.Parameter((4, 4)), cp.Parameter(nonneg=True), cp.Variable((4, 4))
    tv = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(X - Y) + lam * cp.tv(X)))
    layer = CvxproxLayer(tv, [Y, lam], [X])
    layer(torch.tensor(rng.standard_normal((4, 4))), torch.tensor(0.2))
    assert layer.info["route"].startswith("cones: no prox Jacobian"), layer.info["route"]
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
