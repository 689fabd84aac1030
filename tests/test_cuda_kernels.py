"""The CuPy backend's fused kernels (``cvxprox.backend.cuda_kernels``) against their
array-namespace references (``cvxprox.backend.Backend``).

On the CPU each kernel's CUDA C source runs through ``cuda_emulator`` (the host's C++
compiler; skipped without one) and equals, bit for bit, the reference computed in
float64 on the same inputs and rounded to the inputs' dtype (the kernels compute in
double and round once, in float32 too).
The same comparisons on a GPU, through ``CuPyBackend``, are marked ``gpu``; a GPU may
contract multiplies and adds into FMAs, so they allow 1e-15 relative in float64.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cuda_emulator  # noqa: I001  (tests/ is on the path)
import numpy as np
import pytest
from device_options import cupy_options
from test_dual_tv import ITERATIONS, _iterations, _problem, _program

import cvxprox
from cvxprox.backend import Backend, cuda_kernels, get_backend
from cvxprox.backend.numpy import NumPyBackend

requires_compiler = pytest.mark.skipif(
    cuda_emulator.compiler() is None, reason="no C++ compiler for the kernel sources"
)
REFERENCE = get_backend("numpy", "cpu", "float64")
N = 257


def _vectors(rng: np.random.Generator, count: int, dtype: type) -> list[np.ndarray]:
    """``count`` random vectors of length N with a NaN, infinities, zeros of both signs."""
    out = []
    for _ in range(count):
        v = rng.standard_normal(N) * 10.0 ** rng.integers(-3, 4, N)
        v[rng.integers(0, N, 3)] = [np.nan, np.inf, -0.0]
        out.append(v.astype(dtype))
    return out


def _bounds(rng: np.random.Generator, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """l <= u with infinite sides, equal sides, and finite boxes."""
    lower = rng.standard_normal(N)
    upper = lower + rng.random(N) * 3.0
    lower[::5], upper[::7], upper[::11] = -np.inf, np.inf, lower[::11]
    return lower.astype(dtype), upper.astype(dtype)


def _f64(args: list) -> list:
    """The array arguments in float64 (bool masks as they are)."""
    return [
        a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype != bool else a for a in args
    ]


Case = Callable[[np.random.Generator, type], tuple[cuda_kernels.Elementwise, list, np.ndarray]]


def _combine(count: int) -> Case:
    def case(rng: np.random.Generator, dtype: type) -> tuple:
        coefficients = [float(a) for a in rng.standard_normal(count)]
        vectors = _vectors(rng, count, dtype)
        args = [arg for pair in zip(coefficients, vectors, strict=True) for arg in pair]
        reference = Backend.combine(REFERENCE, coefficients, _f64(vectors))
        return cuda_kernels.combine(count), args, reference

    return case


def _primal(diagonal: bool, bounded: bool) -> Case:
    def case(rng: np.random.Generator, dtype: type) -> tuple:
        x, kty, c = _vectors(rng, 3, dtype)
        tau = 0.37
        p = (rng.random(N) * 4.0).astype(dtype) if diagonal else None
        bounds = _bounds(rng, dtype) if bounded else None
        args = [x, kty, c, tau] + ([p] if diagonal else []) + (list(bounds) if bounded else [])
        x, kty, c, tau, *rest = _f64(args)
        p = rest.pop(0) if diagonal else None
        reference = Backend.pdhg_primal_step(REFERENCE, x, kty, c, tau, p, rest or None)
        return cuda_kernels.pdhg_primal_step(diagonal, bounded), args, reference

    return case


def _dual(rng: np.random.Generator, dtype: type) -> tuple:
    y, ax, kx, b = _vectors(rng, 4, dtype)
    free = rng.random(N) < 0.3
    args = [y, ax, kx, b, 1.7, free]
    reference = Backend.pdhg_dual_step(REFERENCE, *_f64(args))
    return cuda_kernels.PDHG_DUAL_STEP, args, reference


def _primal_halpern(diagonal: bool, bounded: bool) -> Case:
    def case(rng: np.random.Generator, dtype: type) -> tuple:
        spec, args, _ = _primal(diagonal, bounded)(rng, dtype)
        coefficients = (0.93, -0.41, 0.48)
        anchor = _vectors(rng, 1, dtype)[0]
        x, kty, c, tau, *rest = _f64(args)
        p = rest.pop(0) if diagonal else None
        step = Backend.pdhg_primal_step(REFERENCE, x, kty, c, tau, p, rest or None)
        step = step.astype(dtype).astype(np.float64)  # the next point combines x+ as stored
        after = Backend.combine(REFERENCE, coefficients, [step, x, anchor.astype(np.float64)])
        reference = (step, after)
        spec = cuda_kernels.pdhg_primal_step(diagonal, bounded, True)
        return spec, [*args, *coefficients, anchor], reference

    return case


def _dual_halpern(rng: np.random.Generator, dtype: type) -> tuple:
    _, args, _ = _dual(rng, dtype)
    coefficients = (0.93, -0.41, 0.48)
    anchors = _vectors(rng, 2, dtype)
    y, ax, kx, b, sigma, free = _f64(args)
    anchor_y, anchor_kx = _f64(anchors)
    step = Backend.pdhg_dual_step(REFERENCE, y, ax, kx, b, sigma, free)
    step = step.astype(dtype).astype(np.float64)  # the next point combines y+ as stored
    reference = (
        step,
        Backend.combine(REFERENCE, coefficients, [step, y, anchor_y]),
        Backend.combine(REFERENCE, coefficients, [ax, kx, anchor_kx]),
    )
    return cuda_kernels.PDHG_DUAL_HALPERN, [*args, *coefficients, *anchors], reference


CASES = {
    **{f"combine{k}": _combine(k) for k in range(1, 5)},
    **{f"primal_d{int(d)}_b{int(b)}": _primal(d, b) for d in (False, True) for b in (False, True)},
    "dual": _dual,
    **{
        f"primal_halpern_d{int(d)}_b{int(b)}": _primal_halpern(d, b)
        for d in (False, True)
        for b in (False, True)
    },
    "dual_halpern": _dual_halpern,
}


@requires_compiler
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_source_matches_the_reference(name: str, dtype: type) -> None:
    rng = np.random.default_rng(sum(map(ord, name)))
    spec, args, reference = CASES[name](rng, dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        kernels = cuda_emulator.run(spec, *args)
        if isinstance(kernels, np.ndarray):
            kernels, reference = (kernels,), (reference,)
        assert len(kernels) == len(reference)
        for kernel, expected in zip(kernels, reference, strict=True):
            assert kernel.dtype == dtype and expected.dtype == np.float64
            np.testing.assert_array_equal(kernel, expected.astype(dtype))


@requires_compiler
def test_the_emulator_runs_what_the_source_says() -> None:
    """A kernel whose answer is known by hand: the emulator is not a copy of the
    reference, and a wrong source fails."""
    spec = cuda_kernels.Elementwise("T x, float64 s, bool m", "T out", "out = m ? x * s : -x;", "k")
    x = np.array([1.0, 2.0, -3.0])
    out = cuda_emulator.run(spec, x, 2.0, np.array([True, False, True]))
    np.testing.assert_array_equal(out, [2.0, -2.0, -6.0])
    with pytest.raises(ValueError, match="one shape"):
        cuda_emulator.run(spec, x, 2.0, np.array([True]))


class _EmulatedKernels(NumPyBackend):
    """NumPy arrays with the CuPy backend's fused TV trial run by the kernel emulator:
    ``DualFISTA.iterations`` takes the backend's trial as it does on CuPy."""

    name = "emulated"

    def dual_tv_trial(self, grid: Any, q: Any, H: Any, bounds: Any) -> Any:
        device_bounds = None if bounds is None else tuple(self.asarray(b) for b in bounds)
        return cuda_kernels.TVDualTrial(
            cuda_emulator.run, np, grid.rows, grid.cols, self.asarray(grid.w0),
            self.asarray(q), self.asarray(H), device_bounds,
        )  # fmt: skip


@requires_compiler
@pytest.mark.parametrize("bounded", [False, True])
def test_fused_tv_trial_matches_the_array_iterations(bounded: bool) -> None:
    """Dual FISTA on 2-D isotropic TV (weighted fit, 13 x 17 image) with the backend's
    trial step (the two TV kernels, ``TVDualTrial``, emulated) against the array
    operations of ``DualIterations``, its reference: the same step-rule decisions and
    the same iterates to rounding after 150 iterations in two runs."""
    program = _program(_problem("isotropic", bounded))
    backend = _EmulatedKernels("float64")
    plain = _iterations(program, False, backend)
    fused = _iterations(program, True, backend)
    assert plain.fused is None and fused.fused is not None
    for count in (ITERATIONS - 1, 1):
        plain.run(count)
        fused.run(count)
    assert plain.backtracks > 0 and plain.restarts > 0
    assert (fused.restarts, fused.backtracks) == (plain.restarts, plain.backtracks)
    assert fused.L == pytest.approx(plain.L, rel=1e-12)
    pairs = [("y", fused.y, plain.y), ("Kty", fused.Kty, plain.Kty)]
    pairs += list(zip(("y'", "z'", "K'y'"), fused.probe(), plain.probe(), strict=True))
    for name, a, b in pairs:
        assert np.linalg.norm(a - b) <= 1e-10 * np.linalg.norm(b), name


@requires_compiler
@pytest.mark.parametrize(("combine", "average"), [(False, False), (True, False), (True, True)])
def test_tv_pdhg_kernels_match_the_compiled_step(combine: bool, average: bool) -> None:
    """PDHG on 2-D TV in a box (TV inpainting, 11 x 11) by the three kernels
    (``cuda_kernels.tv_pdhg_iteration``, emulated) against the compiled NumPy pass
    (``NumPyBackend.tv_pdhg_iteration``): the step, the next KM point and the next running
    average, bit for bit."""
    from compare.suites.structured import build_tv_inpainting  # noqa: PLC0415
    from cvxprox.solvers.pdhg import tv_in_a_box  # noqa: PLC0415

    program = cvxprox.compile(build_tv_inpainting(size=11)).program
    grid = tv_in_a_box(program)
    assert grid is not None
    rng = np.random.default_rng(4)
    n, m = program.n, 2 * (grid.rows - 1) * (grid.cols - 1)
    x, kty, c = (rng.standard_normal(n) for _ in range(3))
    y, kx = rng.standard_normal(m), rng.standard_normal(m)
    lower, upper = (
        np.full(n, fill) if bound is None else np.broadcast_to(bound, (n,)).astype(np.float64)
        for bound, fill in ((program.l, -np.inf), (program.u, np.inf))
    )
    mean = tuple(rng.standard_normal(k) for k in (n, m, m, n)) if average else None
    combination = (1.9, -0.9, mean, 0.75, 0.25) if combine else None
    weight = np.asarray(grid.w0, dtype=np.float64)
    args = (grid, weight, x, kty, y, kx, c, lower, upper, 0.37, 1.3, combination)
    compiled = REFERENCE.tv_pdhg_iteration(*args)
    emulated = cuda_kernels.tv_pdhg_iteration(cuda_emulator.run, np, *args)
    assert len(compiled) == len(emulated) == 13
    for k, (a, b) in enumerate(zip(emulated, compiled, strict=True)):
        assert a.shape == b.shape, k
        np.testing.assert_array_equal(a, b, err_msg=str(k))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc")
def test_kernel_sources_compile_with_nvcc(tmp_path: Path) -> None:
    """CUDA's compiler accepts every kernel in float and double (no GPU needed)."""
    specs = [cuda_kernels.combine(k) for k in range(1, 5)]
    specs += [
        cuda_kernels.pdhg_primal_step(d, b, h)
        for d in (False, True)
        for b in (False, True)
        for h in (False, True)
    ]
    specs.append(cuda_kernels.PDHG_DUAL_HALPERN)
    specs += [
        make(combine, average)
        for make in (
            cuda_kernels.tv_pdhg_pixels_x,
            cuda_kernels.tv_pdhg_groups,
            cuda_kernels.tv_pdhg_pixels_kty,
        )
        for combine, average in ((False, False), (True, False), (True, True))
    ]
    specs += [cuda_kernels.PDHG_DUAL_STEP, cuda_kernels.TV_DUAL_GROUPS]
    specs.append(cuda_kernels.TV_PRIMAL_PIXELS)
    done = cuda_emulator.nvcc_compiles(specs, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


def _assert_gpu_close(got: np.ndarray, want: np.ndarray, dtype: type, scale: float) -> None:
    """A GPU result against the float64 reference on the same inputs: float32 within one
    rounding of the reference rounded to float32 (the kernels compute in double and round
    once), float64 within a few roundings of the terms' size (the GPU may fuse multiplies
    and adds)."""
    assert got.dtype == np.dtype(dtype)
    if dtype == np.float32:
        np.testing.assert_allclose(got, want.astype(dtype), rtol=2.0**-23, atol=0.0)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14 * scale)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_on_the_gpu_matches_the_reference(name: str, dtype: type) -> None:
    """Each kernel of ``test_kernel_source_matches_the_reference`` compiled by CuPy and
    run on the GPU."""
    cupy_options()
    import cupy  # noqa: PLC0415

    from cvxprox.backend.cupy import _launch  # noqa: PLC0415

    rng = np.random.default_rng(sum(map(ord, name)))
    spec, args, reference = CASES[name](rng, dtype)
    device = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    outputs = _launch(spec, *device)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    reference = reference if isinstance(reference, tuple) else (reference,)
    scale = max(
        float(np.max(np.abs(a[np.isfinite(a)])))
        for a in args
        if isinstance(a, np.ndarray) and a.dtype != bool
    )
    with np.errstate(invalid="ignore", over="ignore"):
        for got, want in zip(outputs, reference, strict=True):
            _assert_gpu_close(cupy.asnumpy(got), want, dtype, scale)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cupy_backend_methods_run_the_kernels(dtype: type) -> None:
    """``CuPyBackend``'s fused methods (the glue around the kernels: argument order,
    optional parameters, outputs) on the GPU against the float64 reference."""
    cupy_options()
    backend = get_backend("cupy", "cuda", np.dtype(dtype).name)
    rng = np.random.default_rng(5)
    x, kty, c, p, y, ax, kx, b = _vectors(rng, 8, dtype)
    p = np.abs(p)
    bounds = _bounds(rng, dtype)
    free = rng.random(N) < 0.3
    host = _f64([x, kty, c, p, y, ax, kx, b])
    host_bounds = tuple(_f64(list(bounds)))
    scale = 10.0 * max(float(np.max(np.abs(v[np.isfinite(v)]))) for v in host)
    dev = [backend.asarray(v) for v in (x, kty, c, p, y, ax, kx, b)]
    dev_bounds = tuple(backend.asarray(v) for v in bounds)

    def check(got: Any, want: Any) -> None:
        got = got if isinstance(got, tuple) else (got,)
        want = want if isinstance(want, tuple) else (want,)
        for g, w in zip(got, want, strict=True):
            _assert_gpu_close(backend.to_host(g).astype(dtype), w, dtype, scale)

    with np.errstate(invalid="ignore", over="ignore"):
        for count in range(1, 5):
            coefficients = [float(a) for a in rng.standard_normal(count)]
            check(
                backend.combine(coefficients, dev[:count]),
                Backend.combine(REFERENCE, coefficients, host[:count]),
            )
        for diag in (False, True):
            for bounded in (False, True):
                check(
                    backend.pdhg_primal_step(
                        *dev[:3], 0.37, dev[3] if diag else None, dev_bounds if bounded else None
                    ),
                    Backend.pdhg_primal_step(
                        REFERENCE, *host[:3], 0.37, host[3] if diag else None,
                        host_bounds if bounded else None,
                    ),
                )  # fmt: skip
        check(
            backend.pdhg_dual_step(*dev[4:], 1.7, backend.asmask(free)),
            Backend.pdhg_dual_step(REFERENCE, *host[4:], 1.7, free),
        )
        coefficients = (0.93, -0.41, 0.48)
        step = Backend.pdhg_primal_step(REFERENCE, *host[:3], 0.37, host[3], host_bounds)
        step = step.astype(dtype).astype(np.float64)  # the next point combines x+ as stored
        check(
            backend.pdhg_primal_halpern(*dev[:3], 0.37, dev[3], dev_bounds, coefficients, dev[4]),
            (step, Backend.combine(REFERENCE, coefficients, [step, host[0], host[4]])),
        )
        step = Backend.pdhg_dual_step(REFERENCE, *host[4:], 1.7, free)
        step = step.astype(dtype).astype(np.float64)
        check(
            backend.pdhg_dual_halpern(
                *dev[4:], 1.7, backend.asmask(free), coefficients, dev[0], dev[1]
            ),
            (
                step,
                Backend.combine(REFERENCE, coefficients, [step, host[4], host[0]]),
                Backend.combine(REFERENCE, coefficients, [host[5], host[6], host[1]]),
            ),
        )


@pytest.mark.gpu
@pytest.mark.parametrize(("combine", "average"), [(False, False), (True, False), (True, True)])
def test_cupy_tv_pdhg_iteration_matches_the_compiled_step(combine: bool, average: bool) -> None:
    """``CuPyBackend.tv_pdhg_iteration`` (three kernels, one of them sized by its groups)
    on the GPU against the compiled NumPy pass, float64."""
    cupy_options()
    import cupy  # noqa: PLC0415

    from compare.suites.structured import build_tv_inpainting  # noqa: PLC0415
    from cvxprox.solvers.pdhg import tv_in_a_box  # noqa: PLC0415

    program = cvxprox.compile(build_tv_inpainting(size=11)).program
    grid = tv_in_a_box(program)
    rng = np.random.default_rng(4)
    n, m = program.n, 2 * (grid.rows - 1) * (grid.cols - 1)
    x, kty, c = (rng.standard_normal(n) for _ in range(3))
    y, kx = rng.standard_normal(m), rng.standard_normal(m)
    lower, upper = np.zeros(n), np.ones(n)
    mean = tuple(rng.standard_normal(k) for k in (n, m, m, n)) if average else None
    combination = (1.9, -0.9, mean, 0.75, 0.25) if combine else None
    weight = np.asarray(grid.w0, dtype=np.float64)
    compiled = REFERENCE.tv_pdhg_iteration(
        grid, weight, x, kty, y, kx, c, lower, upper, 0.37, 1.3, combination
    )
    backend = get_backend("cupy", "cuda", "float64")
    on = cupy.asarray
    device_mean = None if mean is None else tuple(on(v) for v in mean)
    device_combination = None if not combine else (*combination[:2], device_mean, *combination[3:])
    fields = backend.tv_pdhg_iteration(
        grid, on(weight), on(x), on(kty), on(y), on(kx), on(c), on(lower), on(upper), 0.37,
        1.3, device_combination,
    )  # fmt: skip
    for got, want in zip(fields, compiled, strict=True):
        np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=1e-13, atol=1e-13)
