"""CvxproxLayer: solutions against Clarabel, gradients against finite differences and
cvxpylayers, batching, unrolling, and the errors a user can run into."""

from __future__ import annotations

import warnings

import cvxpy as cp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cvxprox.torch import CvxproxLayer  # noqa: E402
from cvxprox.torch.layer import solve_options  # noqa: E402

TIGHT = {"eps_abs": 1e-10, "eps_rel": 1e-10}


def lp(rng):
    n, m = 6, 8
    c, A, b = cp.Parameter(n), cp.Parameter((m, n)), cp.Parameter(m)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(c @ x), [A @ x <= b, x >= -1, x <= 1])
    values = [rng.standard_normal(n), rng.standard_normal((m, n)), rng.uniform(0.5, 1.5, m)]
    return prob, [c, A, b], [x], values


def qp(rng):
    n, m, p = 6, 5, 2
    Q = rng.standard_normal((n, n))
    Q = Q @ Q.T + np.eye(n)
    q, G, h = cp.Parameter(n), cp.Parameter((m, n)), cp.Parameter(m)
    F, g = cp.Parameter((p, n)), cp.Parameter(p)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, Q) + q @ x), [G @ x <= h, F @ x == g])
    values = [
        rng.standard_normal(n),
        rng.standard_normal((m, n)),
        rng.uniform(0.0, 0.5, m),
        rng.standard_normal((p, n)),
        rng.standard_normal(p),
    ]
    return prob, [q, G, h, F, g], [x], values


def socp(rng):
    n = 5
    c, x0 = cp.Parameter(n), cp.Parameter(n)
    r = cp.Parameter(nonneg=True)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(c @ x), [cp.norm2(x - x0) <= r, cp.sum(x) <= 10])
    values = [rng.standard_normal(n), rng.standard_normal(n), 1.3]
    return prob, [c, x0, r], [x], values


def lasso(rng):
    m, n = 8, 12
    A, b = cp.Parameter((m, n)), cp.Parameter(m)
    lam = cp.Parameter(nonneg=True)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b) + lam * cp.norm1(x)))
    values = [rng.standard_normal((m, n)), rng.standard_normal(m), 0.5]
    return prob, [A, b, lam], [x], values


def constrained_least_squares(rng):
    m, n = 10, 6
    A, b = cp.Parameter((m, n)), cp.Parameter(m)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b)), [x >= 0, cp.sum(x) == 1])
    values = [rng.standard_normal((m, n)), rng.standard_normal(m)]
    return prob, [A, b], [x], values


def tv(rng):
    k = 5
    Y = cp.Parameter((k, k))
    lam = cp.Parameter(nonneg=True)
    X = cp.Variable((k, k))
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(X - Y) + lam * cp.tv(X)))
    values = [rng.standard_normal((k, k)), 0.3]
    return prob, [Y, lam], [X], values


def entropy(rng):
    n = 5
    c = cp.Parameter(n)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(c @ x - cp.sum(cp.entr(x))), [cp.sum(x) == 1])
    return prob, [c], [x], [rng.standard_normal(n)]


def sdp(rng):
    k = 3
    C = cp.Parameter((k, k), symmetric=True)
    X = cp.Variable((k, k), symmetric=True)
    prob = cp.Problem(cp.Minimize(cp.trace(C @ X)), [X >> 0, cp.trace(X) == 1])
    M = rng.standard_normal((k, k))
    return prob, [C], [X], [M + M.T]


def power_cone(rng):
    x, y, z = cp.Variable(), cp.Variable(), cp.Variable()
    a, d = cp.Parameter(nonneg=True), cp.Parameter(nonneg=True)
    prob = cp.Problem(
        cp.Maximize(z - 0.5 * cp.square(z)), [cp.PowCone3D(x, y, z, 0.3), x + 2 * y <= a, x <= d]
    )
    return prob, [a, d], [x, y, z], [2.0, 0.4]


PROBLEMS = [lp, qp, socp, lasso, constrained_least_squares, tv]
CONES = [entropy, sdp, power_cone]


def _tensors(values, batch=None, rng=None):
    """Parameter tensors; with ``batch``, a perturbed copy per element."""
    out = []
    for v in values:
        v = np.asarray(v, dtype=np.float64)
        if batch is not None:
            scale = 0.0 if v.ndim == 0 else 0.05
            v = v[None] + scale * rng.standard_normal((batch, *v.shape))
        out.append(torch.tensor(v, requires_grad=True))
    return out


def _loss(outputs, weights):
    return sum((w * out).sum() for w, out in zip(weights, outputs, strict=True))


def _clarabel(prob, params, variables, values):
    for p, v in zip(params, values, strict=True):
        p.value = np.asarray(v, dtype=np.float64)
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    return [v.value for v in variables]


@pytest.mark.parametrize("make", PROBLEMS, ids=lambda f: f.__name__)
def test_solution_matches_clarabel(make):
    rng = np.random.default_rng(1)
    prob, params, variables, values = make(rng)
    layer = CvxproxLayer(prob, params, variables, solver_args=TIGHT)
    outputs = layer(*_tensors(values))
    for out, ref in zip(outputs, _clarabel(prob, params, variables, values), strict=True):
        assert out.shape == ref.shape
        np.testing.assert_allclose(out.detach().numpy(), ref, atol=2e-5)


@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("make", PROBLEMS, ids=lambda f: f.__name__)
def test_gradient_matches_finite_differences(make, batch):
    rng = np.random.default_rng(2)
    prob, params, variables, values = make(rng)
    layer = CvxproxLayer(prob, params, variables, solver_args=TIGHT)
    check_gradient(layer, params, _tensors(values, batch, rng), rng)


def check_gradient(layer, params, tensors, rng):
    """The gradient of a random linear loss of the outputs, in a random direction, against
    central finite differences (relative error <= 1e-4)."""
    outputs = layer(*tensors)
    weights = [torch.tensor(rng.standard_normal(o.shape)) for o in outputs]
    _loss(outputs, weights).backward()
    directions = [torch.tensor(rng.standard_normal(t.shape)) for t in tensors]
    for j, p in enumerate(params):
        if p.attributes["nonneg"]:  # keep a nonneg scalar parameter away from 0
            directions[j] = directions[j].abs()
    analytic = sum(float((t.grad * d).sum()) for t, d in zip(tensors, directions, strict=True))
    h = 1e-5  # first-order solves are accurate to ~1e-9, which a smaller step amplifies

    def loss_at(step):
        with torch.no_grad():
            shifted = [t + step * d for t, d in zip(tensors, directions, strict=True)]
            return float(_loss(layer(*shifted), weights))

    numeric = (loss_at(h) - loss_at(-h)) / (2 * h)
    assert abs(analytic - numeric) <= 1e-4 * max(1.0, abs(numeric)), (analytic, numeric)
    return layer


@pytest.mark.parametrize("adjoint", ["reduced", "lu", "lsmr"])
@pytest.mark.parametrize("make", [lp, qp], ids=lambda f: f.__name__)
def test_every_adjoint_method_matches_finite_differences(make, adjoint):
    rng = np.random.default_rng(3)
    prob, params, variables, values = make(rng)
    layer = CvxproxLayer(
        prob, params, variables, solver_args=TIGHT, adjoint=adjoint, structure="never"
    )
    check_gradient(layer, params, _tensors(values, 2, rng), rng)


def test_reduced_adjoint_on_a_second_order_cone_says_why_it_cannot():
    prob, params, variables, values = socp(np.random.default_rng(0))
    layer = CvxproxLayer(prob, params, variables, adjoint="reduced", structure="never")
    outputs = layer(*(tensors := _tensors(values)))
    with pytest.raises(ValueError, match="second-order"):
        _loss(outputs, [torch.ones(o.shape) for o in outputs]).backward()
    assert tensors[0].grad is None


@pytest.mark.parametrize("make", CONES, ids=lambda f: f.__name__)
def test_gradients_through_exponential_psd_and_power_cones(make):
    rng = np.random.default_rng(15)
    prob, params, variables, values = make(rng)
    layer = CvxproxLayer(prob, params, variables, solver_args=TIGHT)
    tensors = _tensors(values)
    outputs = layer(*tensors)
    for out, ref in zip(outputs, _clarabel(prob, params, variables, values), strict=True):
        np.testing.assert_allclose(out.detach().numpy(), ref, atol=1e-5)
    weights = [torch.tensor(rng.standard_normal(o.shape)) for o in outputs]
    _loss(outputs, weights).backward()
    for j, (param, t) in enumerate(zip(params, tensors, strict=True)):
        direction = rng.standard_normal(t.shape)
        if param.attributes["symmetric"]:
            direction = direction + direction.T
        h = 1e-6
        shifted = []
        for step in (h, -h):
            moved = [u.detach().clone() for u in tensors]
            moved[j] = moved[j] + step * torch.tensor(direction)
            with torch.no_grad():
                shifted.append(float(_loss(layer(*moved), weights)))
        numeric = (shifted[0] - shifted[1]) / (2 * h)
        analytic = float((t.grad * torch.tensor(direction)).sum())
        assert abs(analytic - numeric) <= 1e-4 * max(1.0, abs(numeric)), (param, analytic, numeric)


@pytest.mark.parametrize("make", PROBLEMS, ids=lambda f: f.__name__)
def test_gradient_matches_cvxpylayers(make):
    cvxpylayers_torch = pytest.importorskip("cvxpylayers.torch")
    rng = np.random.default_rng(3)
    prob, params, variables, values = make(rng)
    ours = CvxproxLayer(prob, params, variables, solver_args=TIGHT)
    theirs = cvxpylayers_torch.CvxpyLayer(prob, parameters=params, variables=variables)
    weights = None
    grads = []
    for layer, args in ((ours, None), (theirs, {"eps": 1e-12, "max_iters": 100_000})):
        tensors = _tensors(values, 2, np.random.default_rng(4))
        outputs = layer(*tensors, solver_args=args) if args else layer(*tensors)
        if weights is None:
            weights = [torch.tensor(rng.standard_normal(o.shape)) for o in outputs]
        _loss(outputs, weights).backward()
        grads.append([t.grad.numpy() for t in tensors])
    for g_ours, g_theirs in zip(*grads, strict=True):
        scale = max(1.0, np.abs(g_theirs).max())
        np.testing.assert_allclose(g_ours, g_theirs, atol=1e-4 * scale)


def test_batch_equals_loop_and_broadcasts_unbatched_parameters():
    rng = np.random.default_rng(5)
    prob, params, variables, values = lasso(rng)
    layer = CvxproxLayer(prob, params, variables, solver_args=TIGHT)
    A = torch.tensor(rng.standard_normal((4, *params[0].shape)), requires_grad=True)
    b = torch.tensor(values[1], requires_grad=True)  # shared by the batch
    lam = torch.tensor(0.5, requires_grad=True)
    (x,) = layer(A, b, lam)
    assert x.shape == (4, 12)
    x.sum().backward()
    grad_b, grad_lam = b.grad.clone(), lam.grad.clone()
    loop_b, loop_lam = torch.zeros_like(b), torch.zeros_like(lam)
    for k in range(4):
        bk = b.detach().clone().requires_grad_(True)
        lk = lam.detach().clone().requires_grad_(True)
        (xk,) = layer(A[k].detach(), bk, lk)
        np.testing.assert_allclose(xk.detach().numpy(), x[k].detach().numpy(), atol=1e-8)
        xk.sum().backward()
        loop_b += bk.grad
        loop_lam += lk.grad
    np.testing.assert_allclose(grad_b.numpy(), loop_b.numpy(), atol=1e-6)
    np.testing.assert_allclose(grad_lam.numpy(), loop_lam.numpy(), atol=1e-6)


def test_float32_in_float32_out_and_info():
    rng = np.random.default_rng(6)
    prob, params, variables, values = socp(rng)
    layer = CvxproxLayer(prob, params, variables)
    tensors = [torch.tensor(np.asarray(v), dtype=torch.float32) for v in values]
    (x,) = layer(*tensors)
    assert x.dtype == torch.float32
    assert layer.info["status"] == "optimal" and layer.info["iterations"] > 0


def test_warm_start_reuses_the_previous_solution():
    rng = np.random.default_rng(7)
    prob, params, variables, values = lasso(rng)
    layer = CvxproxLayer(prob, params, variables, solver_args=TIGHT)
    tensors = _tensors(values, 3, rng)
    layer(*tensors)
    cold = layer.info["iterations"]
    layer(*tensors, warm_start=True)
    assert layer.info["iterations"] < cold


def test_unrolled_approaches_the_solution_and_its_gradient():
    rng = np.random.default_rng(8)
    prob, params, variables, values = constrained_least_squares(rng)
    implicit = CvxproxLayer(prob, params, variables, solver_args=TIGHT)
    unrolled = CvxproxLayer(prob, params, variables, diff="unrolled", iterations=20000)
    grads, sols = [], []
    for layer in (implicit, unrolled):
        tensors = _tensors(values)
        (x,) = layer(*tensors)
        x.pow(2).sum().backward()
        sols.append(x.detach().numpy())
        grads.append([t.grad.numpy() for t in tensors])
    np.testing.assert_allclose(sols[1], sols[0], atol=1e-6)
    for g_unrolled, g_implicit in zip(grads[1], grads[0], strict=True):
        np.testing.assert_allclose(g_unrolled, g_implicit, atol=1e-4)


def test_unrolled_runs_exactly_the_given_iterations():
    rng = np.random.default_rng(9)
    prob, params, variables, values = socp(rng)
    few = CvxproxLayer(prob, params, variables, diff="unrolled", iterations=3)
    many = CvxproxLayer(prob, params, variables, diff="unrolled", iterations=3000)
    ref = _clarabel(prob, params, variables, values)[0]
    err_few = np.abs(few(*_tensors(values))[0].detach().numpy() - ref).max()
    err_many = np.abs(many(*_tensors(values))[0].detach().numpy() - ref).max()
    assert err_many < 1e-3 < err_few
    with pytest.raises(ValueError, match="fixed number of iterations"):
        few(*_tensors(values), solver_args={"eps_abs": 1e-3})


def test_non_dpp_problem_names_the_expression():
    a, b = cp.Parameter(), cp.Parameter()
    x = cp.Variable()
    prob = cp.Problem(cp.Minimize((a * b) * x), [x >= 0, x <= 1])
    with pytest.raises(ValueError, match=r"not DPP.*offending expression: .*@|\*"):
        CvxproxLayer(prob, [a, b], [x])


def test_non_dcp_problem_is_rejected():
    a = cp.Parameter()
    x = cp.Variable()
    prob = cp.Problem(cp.Maximize(cp.square(x) + a), [x <= 1])
    with pytest.raises(ValueError, match="not DCP"):
        CvxproxLayer(prob, [a], [x])


def test_parameter_and_variable_lists_are_checked():
    rng = np.random.default_rng(10)
    prob, params, variables, _ = lasso(rng)
    with pytest.raises(ValueError, match="missing"):
        CvxproxLayer(prob, params[:2], variables)
    with pytest.raises(ValueError, match="not in the problem"):
        CvxproxLayer(prob, params, [cp.Variable(2)])
    with pytest.raises(ValueError, match="unknown NABLAPROX option"):
        CvxproxLayer(prob, params, variables, solver_args={"tolerance": 1})
    with pytest.raises(ValueError, match="diff must be"):
        CvxproxLayer(prob, params, variables, diff="magic")


def test_bad_tensors_get_clear_errors():
    rng = np.random.default_rng(11)
    prob, params, variables, values = lasso(rng)
    layer = CvxproxLayer(prob, params, variables)
    A, b, lam = _tensors(values)
    with pytest.raises(ValueError, match="parameter .* has shape"):
        layer(A[:3], b, lam)
    with pytest.raises(ValueError, match="expected 3 parameter tensors"):
        layer(A, b)
    with pytest.raises(ValueError, match="NaN"):
        layer(A, b * float("nan"), lam)
    with pytest.raises(ValueError, match="nonnegative"):
        layer(A, b, -lam)
    with pytest.raises(ValueError, match="batch size"):
        layer(torch.zeros(2, *A.shape), torch.zeros(3, *b.shape), lam)


def test_infeasible_batch_raises():
    b = cp.Parameter()
    x = cp.Variable()
    prob = cp.Problem(cp.Minimize(x), [x >= b, x <= 0])
    layer = CvxproxLayer(prob, [b], [x])
    with pytest.raises(cp.SolverError, match="infeasible"):
        layer(torch.tensor(1.0))


def test_iteration_limit_warns():
    rng = np.random.default_rng(12)
    prob, params, variables, values = lasso(rng)
    layer = CvxproxLayer(prob, params, variables, solver_args={"max_iters": 2})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer(*_tensors(values))
    assert any("'user_limit' after 2 iterations" in str(w.message) for w in caught)


@pytest.mark.parametrize("make", PROBLEMS, ids=lambda f: f.__name__)
def test_cvxpylayers_with_the_nablaprox_solver_interface(make):
    cvxpylayers_torch = pytest.importorskip("cvxpylayers.torch")
    from cvxprox.torch import NablaProxSolver

    rng = np.random.default_rng(13)
    prob, params, variables, values = make(rng)
    solver = NablaProxSolver(**TIGHT)
    layers = [
        CvxproxLayer(prob, params, variables, solver_args=TIGHT),
        cvxpylayers_torch.CvxpyLayer(prob, parameters=params, variables=variables, solver=solver),
    ]
    weights = None
    results = []
    for layer in layers:
        tensors = _tensors(values, 2, np.random.default_rng(14))
        outputs = layer(*tensors)
        if weights is None:
            weights = [torch.tensor(rng.standard_normal(o.shape)) for o in outputs]
        _loss(outputs, weights).backward()
        results.append(([o.detach().numpy() for o in outputs], [t.grad.numpy() for t in tensors]))
    (x_ours, g_ours), (x_cvl, g_cvl) = results
    for a, b in zip(x_ours, x_cvl, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for a, b in zip(g_ours, g_cvl, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5 * max(1.0, np.abs(b).max()))


def test_cvxpylayers_solver_returns_constraint_duals():
    cvxpylayers_torch = pytest.importorskip("cvxpylayers.torch")
    from cvxprox.torch import NablaProxSolver

    b = cp.Parameter(2)
    x = cp.Variable(2)
    con = x >= b
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x)), [con])
    layer = cvxpylayers_torch.CvxpyLayer(
        prob, parameters=[b], variables=[x, con.dual_variables[0]], solver=NablaProxSolver()
    )
    value = np.array([1.0, -1.0])
    x_t, dual_t = layer(torch.tensor(value))
    b.value = value
    prob.solve(solver="CLARABEL")
    np.testing.assert_allclose(x_t.numpy(), x.value, atol=1e-5)
    np.testing.assert_allclose(dual_t.numpy(), con.dual_value, atol=1e-5)


def test_learn_tv_weight_example_lowers_the_loss(monkeypatch, capsys):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).parent.parent / "examples" / "learn_tv_weight.py"
    spec = importlib.util.spec_from_file_location("learn_tv_weight", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["learn_tv_weight.py", "--size", "12", "--train", "3", "--test", "2", "--steps", "4"]
    monkeypatch.setattr(sys, "argv", argv)
    module.main()
    out = capsys.readouterr().out
    losses = [float(line.split()[2]) for line in out.splitlines() if line[:4].strip().isdigit()]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert "learned" in out and "grid best" in out


def test_parameters_on_a_gpu_move_the_solve_there(monkeypatch):
    """A CUDA tensor among the parameters puts the solve on the GPU (CuPy when installed,
    else torch) unless the options name a device or the NumPy backend."""
    import importlib.util
    from types import SimpleNamespace

    on_gpu = (torch.zeros(2), SimpleNamespace(device=SimpleNamespace(type="cuda")))
    on_cpu = (torch.zeros(2),)
    assert solve_options({"eps_abs": 1e-6}, on_cpu) == {"eps_abs": 1e-6}
    for cupy_spec, backend in ((object(), "cupy"), (None, "torch")):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, spec=cupy_spec: spec)
        assert solve_options({"eps_abs": 1e-6}, on_gpu) == {
            "eps_abs": 1e-6,
            "device": "cuda",
            "backend": backend,
        }
    assert solve_options({"backend": "torch"}, on_gpu) == {"backend": "torch", "device": "cuda"}
    for kept in ({"device": "cpu"}, {"backend": "numpy"}):
        assert solve_options(kept, on_gpu) == kept


@pytest.mark.gpu
@pytest.mark.parametrize("make", [lp, qp], ids=lambda f: f.__name__)
def test_gradients_on_cuda_tensors_match_the_cpu(make):
    """CUDA parameter tensors: the solve runs on the GPU by default, and the solution and
    the gradients equal the CPU's (float64, to 1e-6)."""
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    rng = np.random.default_rng(5)
    prob, params, variables, values = make(rng)
    layer = CvxproxLayer(prob, params, variables, solver_args=TIGHT)
    results = []
    for device in ("cpu", "cuda"):
        tensors = [t.to(device).detach().requires_grad_() for t in _tensors(values)]
        outputs = layer(*tensors)
        assert layer.info["device"] == device
        assert all(o.device.type == device for o in outputs)
        sum(o.sum() for o in outputs).backward()
        results.append(([o.detach().cpu() for o in outputs], [t.grad.cpu() for t in tensors]))
    for cpu, gpu in zip(*results, strict=True):
        for a, b in zip(cpu, gpu, strict=True):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-6)
