"""Every model of the zoo and of the structured suite on torch (CPU) against NumPy (and,
marked ``gpu``, on CuPy and torch on CUDA).

Each model is solved twice, with the default NumPy backend and with ``backend="torch"``,
at tight tolerances (``EPS``): both runs must take the same method
(``extra_stats["algorithm"]``), end ``optimal``, and agree on the objective and on every
primal value to 1e-7 relative. The same method runs on both backends (ADMM with its
factored KKT system, split ADMM, FISTA), written once against the array namespace; the
NumPy runs use the compiled ADMM loop, the torch runs the plain one, so that this also
checks the two loops against each other.

``test_admm_plain_loop_matches_compiled`` runs ADMM's plain loop on NumPy against the
compiled loop (the fused kernel's reference).
"""

from __future__ import annotations

from collections.abc import Callable

import cvxpy as cp
import numpy as np
import pytest
from device_options import cupy_options, torch_cuda_options

import cvxprox  # noqa: F401
from compare.suites import structured, zoo
from cvxprox.interface.options import SolverOptions
from cvxprox.interface.solver import PROGRAM
from cvxprox.solvers.admm.kkt import ADMM

pytest.importorskip("torch")

#: Tolerances of both runs: tight enough that two runs whose rounding differs (the
#: compiled and the plain ADMM loop, LDL' and LU solves) agree to 1e-7.
EPS = 1e-9
AGREE = 1e-7

#: Small sizes of the structured models, and a looser EPS for TV inpainting (its ADMM
#: needs about 6000 iterations at 1e-6, over 600000 at 1e-9; both backends run the same
#: Gram x-update and proxes there, so their iterates agree to round-off at any EPS).
STRUCTURED_SIZES = {
    "tv_denoising": 16,
    "deconvolution": 200,
    "lasso": 80,
    "tv_inpainting": 16,
    "tv_deblurring": 16,
}
STRUCTURED_EPS = {"tv_inpainting": 1e-6}

CASES: dict[str, tuple[Callable[[], cp.Problem], float]] = {
    **{f"zoo-{name}": ((lambda b=build: b(0)), EPS) for name, build in zoo.MODELS.items()},
    **{
        f"structured-{name}": (
            (lambda b=build, n=name: b(structured.SEED, STRUCTURED_SIZES[n])),
            STRUCTURED_EPS.get(name, EPS),
        )
        for name, build in structured.MODELS.items()
    },
}


def _solve(build: Callable[[], cp.Problem], **options: object) -> tuple[cp.Problem, np.ndarray]:
    prob = build()
    prob.solve(solver="NABLAPROX", **options)
    x = np.concatenate([np.ravel(v.value) for v in prob.variables()])
    return prob, x


#: The backends checked against NumPy, and their agreement (GPU reductions round
#: differently: 1e-6 there, as in ``test_backend``).
BACKENDS = [
    pytest.param(lambda: {"backend": "torch"}, AGREE, id="torch"),
    pytest.param(cupy_options, 10 * AGREE, id="cupy", marks=pytest.mark.gpu),
    pytest.param(torch_cuda_options, 10 * AGREE, id="torch-cuda", marks=pytest.mark.gpu),
]


@pytest.mark.parametrize(("options", "agree"), BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_backend_matches_numpy(
    name: str, options: Callable[[], dict[str, str]], agree: float
) -> None:
    build, eps = CASES[name]
    opts = options()
    ref, x_ref = _solve(build, eps_abs=eps, eps_rel=eps)
    got, x = _solve(build, eps_abs=eps, eps_rel=eps, **opts)
    assert ref.status == got.status == cp.OPTIMAL
    algorithm = ref.solver_stats.extra_stats["algorithm"]
    assert got.solver_stats.extra_stats["algorithm"] == algorithm
    assert got.value == pytest.approx(ref.value, rel=agree, abs=agree)
    np.testing.assert_allclose(x, x_ref, rtol=0, atol=agree * max(1.0, np.max(np.abs(x_ref))))


@pytest.mark.parametrize("name", ["lp", "markowitz", "robust_lp", "nearest_correlation", "mpc"])
def test_admm_plain_loop_matches_compiled(name: str) -> None:
    """ADMM's plain loop (the reference of ``cvxprox.backend.jit.admm.admm_iterations``) on NumPy:
    the compiled loop's iteration count and, at tight tolerances, its point to 1e-7."""
    prob = zoo.MODELS[name](0)
    data, _, _ = prob.get_problem_data("NABLAPROX")
    program = data[PROGRAM].assemble()
    opts = SolverOptions(eps_abs=EPS, eps_rel=EPS)
    fused_solver = ADMM(program, opts)
    fused_solver.fused = True
    fused = fused_solver.solve()
    plain_solver = ADMM(program, opts)
    plain_solver.fused = False
    plain = plain_solver.solve()
    assert fused.status == plain.status == cp.OPTIMAL
    assert plain.iterations == fused.iterations
    scale = max(1.0, float(np.max(np.abs(fused.x))))
    np.testing.assert_allclose(plain.x, fused.x, rtol=0, atol=AGREE * scale)
