"""The CuPy backend's fused kernels, as CUDA C sources (``cvxprox.backend.cupy`` compiles
them with ``cupy.ElementwiseKernel``).

Each kernel is an :class:`Elementwise`: CuPy's four parts (input parameters, output
parameters, the loop body for element ``i``, a name). ``T`` is the iterate's floating
type (``float`` or ``double``, from the arrays); step sizes and coefficients are
``float64`` scalars. Each kernel fuses what the array-namespace reference in
``cvxprox.backend.Backend`` computes in several passes, with the same operations in
double precision rounded to ``T`` once (the reference rounds each one in float32), and
propagates NaN as the reference does (comparisons written so that a NaN operand takes
the NaN branch). The sources are plain strings so that the tests compile them on the CPU
too (``tests/cuda_emulator.py``), where there is no GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Elementwise:
    """One ``cupy.ElementwiseKernel``: ``in_params`` and ``out_params`` are CuPy's comma
    separated ``type name`` lists, ``operation`` the CUDA C body for element ``i``."""

    in_params: str
    out_params: str
    operation: str
    name: str


@cache
def combine(count: int) -> Elementwise:
    """out = sum_{k < count} a_k v_k (``Backend.combine``), count >= 1."""
    params = ", ".join(f"float64 a{k}, T v{k}" for k in range(count))
    terms = " + ".join(f"a{k} * v{k}" for k in range(count))
    return Elementwise(params, "T out", f"out = {terms};", f"cvxprox_combine{count}")


@cache
def pdhg_primal_step(diagonal: bool, bounded: bool) -> Elementwise:
    """x+ = proj_[l, u]((x - tau (c + K'y)) / (1 + tau p)) (``Backend.pdhg_primal_step``),
    with the division only when ``diagonal`` (p given) and the projection only when
    ``bounded`` (l, u given)."""
    params = ["T x", "T kty", "T c", "float64 tau"]
    body = ["double v = x - tau * ((double)c + kty);"]
    if diagonal:
        params.append("T p")
        body.append("v = v / (1.0 + tau * p);")
    if bounded:
        params += ["T lower", "T upper"]
        body.append("v = v < lower ? (double)lower : v;")
        body.append("v = v > upper ? (double)upper : v;")
    body.append("out = v;")
    name = f"cvxprox_pdhg_primal{'_diagonal' if diagonal else ''}{'_bounded' if bounded else ''}"
    return Elementwise(", ".join(params), "T out", "\n".join(body), name)


PDHG_DUAL_STEP = Elementwise(
    "T y, T ax, T kx, T b, float64 sigma, bool free",
    "T out",
    "double v = y + sigma * (2.0 * ax - kx - b);\nout = (free || !(v > 0.0)) ? v : 0.0;",
    "cvxprox_pdhg_dual",
)
"""y+ = v on free rows, min(v, 0) elsewhere, v = y + sigma (2 A x+ - K x - b)
(``Backend.pdhg_dual_step``)."""
