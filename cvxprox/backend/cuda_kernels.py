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

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any


@dataclass(frozen=True)
class Elementwise:
    """One ``cupy.ElementwiseKernel``: ``in_params`` and ``out_params`` are CuPy's comma
    separated ``[raw] type name`` lists (a ``raw`` array is indexed by the body itself),
    ``operation`` the CUDA C body for element ``i``, ``preamble`` device functions it
    calls (in ``double``: ``T`` is not defined there)."""

    in_params: str
    out_params: str
    operation: str
    name: str
    preamble: str = ""


# The device functions every kernel may call (each kernel's ``preamble``); comparisons are
# written as Python's min and max decide, so that NaN propagates as in the compiled NumPy
# steps, and the disc's denominator is GroupL2.prox_conj's max(||v||, w, tiny).
_TINY_LITERAL = "2.2250738585072014e-308"
PREAMBLE = f"""
__device__ double cvxprox_clip(const double v, const double lower, const double upper) {{
    const double low = v < lower ? lower : v;
    return low > upper ? upper : low;
}}
__device__ double cvxprox_x_tilde(const double q, const double kty, const double kty_prev,
                                  const double h_inv, const double beta) {{
    return -(q + (kty + beta * (kty - kty_prev))) * h_inv;
}}
__device__ double cvxprox_disc_scale(const double v0, const double v1, const double w) {{
    double norm = sqrt(v0 * v0 + v1 * v1);
    norm = w > norm ? w : norm;
    norm = {_TINY_LITERAL} > norm ? {_TINY_LITERAL} : norm;
    return w / norm;
}}
template <typename Pairs>
__device__ double cvxprox_tv_adjoint(const Pairs& y, const long long p, const long long rows,
                                     const long long cols) {{
    const long long r1 = rows - 1;
    const long long row = p % rows, col = p / rows;
    const long long g = row + r1 * col;
    double t = 0.0;
    if (col > 0 && row < r1) t += y[2 * (g - r1)];
    if (row > 0 && col < cols - 1) t += y[2 * (g - 1) + 1];
    if (row < r1 && col < cols - 1) {{
        t -= y[2 * g];
        t -= y[2 * g + 1];
    }}
    return t;
}}
"""
"""``cvxprox_clip(v, l, u)``; ``cvxprox_x_tilde``: -(q + K'y~) / H at a pixel;
``cvxprox_disc_scale(v0, v1, w)``: the factor projecting (v0, v1) onto the disc of radius
w; ``cvxprox_tv_adjoint(y, p, rows, cols)``: (K'y)_p of 2-D isotropic TV, y the pairs in
the term's order (the layout of the TV kernels below)."""


@cache
def combine(count: int) -> Elementwise:
    """out = sum_{k < count} a_k v_k (``Backend.combine``), count >= 1."""
    params = ", ".join(f"float64 a{k}, T v{k}" for k in range(count))
    terms = " + ".join(f"a{k} * v{k}" for k in range(count))
    return Elementwise(params, "T out", f"out = {terms};", f"cvxprox_combine{count}")


_HALPERN = "float64 a, float64 b_point, float64 e"


@cache
def pdhg_primal_step(diagonal: bool, bounded: bool, halpern: bool = False) -> Elementwise:
    """x+ = proj_[l, u]((x - tau (c + K'y)) / (1 + tau p)) (``Backend.pdhg_primal_step``),
    with the division only when ``diagonal`` (p given) and the projection only when
    ``bounded`` (l, u given); with ``halpern`` also the next Halpern point's x,
    (a x+ + b x) + e anchor (``Backend.pdhg_primal_halpern``)."""
    params = ["T x", "T kty", "T c", "float64 tau"]
    body = ["double v = x - tau * ((double)c + kty);"]
    if diagonal:
        params.append("T p")
        body.append("v = v / (1.0 + tau * p);")
    if bounded:
        params += ["T lower", "T upper"]
        body.append("v = cvxprox_clip(v, lower, upper);")
    body.append("out = v;")
    outputs = "T out"
    if halpern:
        params += [_HALPERN, "T anchor"]
        body.append("after = (a * (double)(T)v + b_point * x) + e * anchor;")
        outputs = "T out, T after"
    name = (
        f"cvxprox_pdhg_primal{'_diagonal' if diagonal else ''}{'_bounded' if bounded else ''}"
        f"{'_halpern' if halpern else ''}"
    )
    return Elementwise(", ".join(params), outputs, "\n".join(body), name, PREAMBLE)


PDHG_DUAL_STEP = Elementwise(
    "T y, T ax, T kx, T b, float64 sigma, bool free",
    "T out",
    "double v = y + sigma * (2.0 * ax - kx - b);\nout = (free || !(v > 0.0)) ? v : 0.0;",
    "cvxprox_pdhg_dual",
)
"""y+ = v on free rows, min(v, 0) elsewhere, v = y + sigma (2 A x+ - K x - b)
(``Backend.pdhg_dual_step``)."""

PDHG_DUAL_HALPERN = Elementwise(
    f"T y, T ax, T kx, T b, float64 sigma, bool free, {_HALPERN}, T anchor_y, T anchor_kx",
    "T out, T after, T after_kx",
    """double v = y + sigma * (2.0 * ax - kx - b);
    v = (free || !(v > 0.0)) ? v : 0.0;
    out = v;
    after = (a * (double)(T)v + b_point * y) + e * anchor_y;
    after_kx = (a * ax + b_point * kx) + e * anchor_kx;""",
    "cvxprox_pdhg_dual_halpern",
)
"""``PDHG_DUAL_STEP`` and the next Halpern point's y and K x,
(a y+ + b y) + e anchor_y and (a A x+ + b K x) + e anchor_kx
(``Backend.pdhg_dual_halpern``)."""


# Dual FISTA's trial step on 2-D isotropic TV (``cvxprox.solvers.dual_fista``,
# ``DualIterations.trial``; the layout of ``cvxprox.backend.jit.dual_tv``): an r x c image
# x in column-major order, pixel p = i + r j; group g = i + (r - 1) j (i < r - 1, j < c - 1)
# with (K x)_{2g} = x_{p+r} - x_p and (K x)_{2g+1} = x_{p+1} - x_p, y in the term's order
# (the pair of group g at 2g, 2g + 1).

TV_DUAL_GROUPS = Elementwise(
    "raw T q, raw T kty, raw T kty_prev, raw T h_inv, raw T lower, raw T upper, raw T y, "
    "raw T y_prev, raw T w, int64 rows, float64 beta, float64 L, bool bounded, "
    "bool one_weight, bool last",
    "raw T y_new, raw T z, T dd, T rd",
    """
    const long long r1 = rows - 1;
    const long long p = i % r1 + rows * (i / r1);
    double x0 = cvxprox_x_tilde(q[p], kty[p], kty_prev[p], h_inv[p], beta);
    double x1 = cvxprox_x_tilde(q[p + 1], kty[p + 1], kty_prev[p + 1], h_inv[p + 1], beta);
    double xr = cvxprox_x_tilde(q[p + rows], kty[p + rows], kty_prev[p + rows],
                                h_inv[p + rows], beta);
    if (bounded) {
        x0 = cvxprox_clip(x0, lower[p], upper[p]);
        x1 = cvxprox_clip(x1, lower[p + 1], upper[p + 1]);
        xr = cvxprox_clip(xr, lower[p + rows], upper[p + rows]);
    }
    const double a0 = xr - x0;
    const double a1 = x1 - x0;
    const double w_g = one_weight ? (double)w[0] : (double)w[i];
    const double y0 = y[2 * i], y1 = y[2 * i + 1];
    const double t0 = y0 + beta * (y0 - (double)y_prev[2 * i]);
    const double t1 = y1 + beta * (y1 - (double)y_prev[2 * i + 1]);
    const double v0 = t0 + a0 / L;
    const double v1 = t1 + a1 / L;
    const double scale = cvxprox_disc_scale(v0, v1, w_g);
    const double m0 = v0 * scale, m1 = v1 * scale;
    y_new[2 * i] = m0;
    y_new[2 * i + 1] = m1;
    const double d0 = m0 - t0, d1 = m1 - t1;
    dd = d0 * d0 + d1 * d1;
    rd = d0 * (m0 - y0) + d1 * (m1 - y1);
    if (last) {
        z[2 * i] = L * (t0 - m0) + a0;
        z[2 * i + 1] = L * (t1 - m1) + a1;
    }
    """,
    "cvxprox_tv_dual_groups",
    PREAMBLE,
)
"""Per group g: y+_g = the projection of y~_g + (K x~)_g / L onto the disc of radius w_g
(x~ = clip(-(q + K'y~) / H, l, u) at the group's three pixels, y~ = y + beta (y -
y_prev)); the group's shares of ||d||^2 and d'(y+ - y), d = y+ - y~; with ``last``,
z_g = L (y~_g - y+_g) + (K x~)_g. Runs over the (r - 1)(c - 1) groups (the size of
``dd``, ``rd``); ``lower``, ``upper`` are read only when ``bounded``."""

TV_PRIMAL_PIXELS = Elementwise(
    "raw T y_new, T q, T h, T h_inv, raw T lower, raw T upper, T kty, T kty_prev, "
    "int64 rows, int64 cols, float64 beta, bool bounded",
    "T kty_new, T descent",
    """
    const double s = cvxprox_tv_adjoint(y_new, i, rows, cols);
    kty_new = s;
    const double kty_t = kty + beta * ((double)kty - kty_prev);
    if (bounded) {
        const double x_t = cvxprox_clip(-(q + kty_t) * h_inv, lower[i], upper[i]);
        const double v_new = -(q + s) * h_inv;
        const double x_new = cvxprox_clip(v_new, lower[i], upper[i]);
        const double dx = x_new - x_t;
        descent = 2.0 * h * (dx * (0.5 * dx + v_new - x_new));
    } else {
        const double ktd = s - kty_t;
        descent = ktd * (ktd * h_inv);
    }
    """,
    "cvxprox_tv_primal_pixels",
    PREAMBLE,
)
"""Per pixel p: (K'y+)_p, and p's share of the descent test's left side at it
(``DualIterations.trial``: ((K'(y+ - y~))_p)^2 / H_p, or with bounds
2 H_p dx_p (dx_p / 2 + v+_p - x+_p)). Runs over the r c pixels."""


class TVDualTrial:
    """Dual FISTA's trial step on 2-D isotropic TV as two kernels and one read-back
    (``DualIterations.trial``'s fused form): ``TV_DUAL_GROUPS`` over the groups,
    ``TV_PRIMAL_PIXELS`` over the pixels, then the three sums come back together.

    Parameters
    ----------
    launch : callable
        ``launch(spec, *args)`` runs an :class:`Elementwise` (CuPy's compiled kernel on a
        GPU; the tests' CPU emulator).
    module : module
        The arrays' NumPy-like module (``cupy``; ``numpy`` in the tests).
    rows, cols : int
        The image.
    weight : array (1,) or ((rows - 1)(cols - 1),)
        The discs' radii w_g.
    q, H : arrays (rows cols,)
        F's gradient at 0 and its diagonal Hessian, on the device.
    bounds : (array (n,), array (n,)) or None
        l and u on the device.
    """

    def __init__(
        self,
        launch: Callable[..., Any],
        module: Any,
        rows: int,
        cols: int,
        weight: Any,
        q: Any,
        H: Any,
        bounds: tuple[Any, Any] | None,
    ) -> None:
        self.launch, self.module = launch, module
        self.rows, self.cols, self.groups = rows, cols, (rows - 1) * (cols - 1)
        self.weight, self.q, self.H, self.H_inv = weight, q, H, 1.0 / H
        self.bounded = bounds is not None
        unused = module.zeros(1, dtype=q.dtype)
        self.lower, self.upper = bounds if bounds is not None else (unused, unused)
        self.unused = unused

    def __call__(
        self, y: Any, y_prev: Any, Kty: Any, Kty_prev: Any, beta: float, L: float, with_z: bool
    ) -> tuple[Any, Any, tuple[float, float, float], Any]:
        """(y+, K'y+, (||d||^2, d'(y+ - y), the descent test's left side), z or None)."""
        xp = self.module
        y_new = xp.empty_like(y)
        z = xp.empty_like(y) if with_z else self.unused
        dd = xp.empty(self.groups, dtype=y.dtype)
        rd = xp.empty(self.groups, dtype=y.dtype)
        self.launch(
            TV_DUAL_GROUPS, self.q, Kty, Kty_prev, self.H_inv, self.lower, self.upper, y,
            y_prev, self.weight, self.rows, float(beta), float(L), self.bounded,
            self.weight.shape[0] == 1, bool(with_z), y_new, z, dd, rd,
        )  # fmt: skip
        Kty_new, descent = self.launch(
            TV_PRIMAL_PIXELS, y_new, self.q, self.H, self.H_inv, self.lower, self.upper,
            Kty, Kty_prev, self.rows, self.cols, float(beta), self.bounded,
        )  # fmt: skip
        sums = xp.stack([dd.sum(), rd.sum(), descent.sum()]).tolist()
        return y_new, Kty_new, (sums[0], sums[1], sums[2]), z if with_z else None


# PDHG's iteration on 2-D TV in a box (``cvxprox.backend.jit.pdhg_tv.tv_pdhg_iteration``,
# the same layout as the TV kernels above) as three kernels: x+ over the pixels, the pairs
# over the groups, K'y+ over the pixels; with ``combine`` each also forms its fields of the
# next KM point, a_step T + a_point z, and with ``average`` of the next running average,
# a_average average + a_new T. Comparisons are written as Python's min and max decide, so
# that the arithmetic is the compiled NumPy step's, operation for operation (``PREAMBLE``).
_COMBINE = "float64 a_step, float64 a_point"
_AVERAGE = "float64 a_average, float64 a_new"


def _pixel_kernel(
    params: list[str], body: list[str], stem: str, value: str, combine: bool, average: bool
) -> Elementwise:
    """A per-pixel kernel of PDHG on 2-D TV in a box whose ``body`` computes ``value``,
    the new ``stem`` (written to ``{stem}_new``); with ``combine`` also the next KM
    point ``{stem}_next`` = a_step value + a_point ``stem``, with ``average`` the running
    average ``{stem}_mean`` = a_average ``{stem}_average`` + a_new value."""
    params, outputs = list(params), [f"T {stem}_new"]
    body = [*body, f"{stem}_new = {value};"]
    if combine:
        params.append(_COMBINE)
        outputs.append(f"T {stem}_next")
        body.append(f"{stem}_next = a_step * {value} + a_point * {stem};")
    if average:
        params += [f"T {stem}_average", _AVERAGE]
        outputs.append(f"T {stem}_mean")
        body.append(f"{stem}_mean = a_average * {stem}_average + a_new * {value};")
    name = f"cvxprox_tv_pdhg_{stem}{'_combine' if combine else ''}{'_average' if average else ''}"
    return Elementwise(", ".join(params), ", ".join(outputs), "\n".join(body), name, PREAMBLE)


@cache
def tv_pdhg_pixels_x(combine: bool, average: bool) -> Elementwise:
    """x+ = clip(x - tau (c + K'y), l, u), and its combinations."""
    params = ["T x", "T kty", "T c", "T lower", "T upper", "float64 tau"]
    body = ["const double v = cvxprox_clip(x - tau * ((double)c + kty), lower, upper);"]
    return _pixel_kernel(params, body, "x", "v", combine, average)


@cache
def tv_pdhg_groups(combine: bool, average: bool) -> Elementwise:
    """Per group g: (K x+)_g, y+_g (the projection of y_g + s (2 K x+ - K x)_g onto the
    disc of radius w_g), z_g = (w - y+_g) / s, and their combinations; all arrays raw
    (pairs at 2g, 2g + 1), run over the groups (``size``)."""
    params = ["raw T x_new", "raw T y", "raw T kx", "raw T w", "int64 rows", "float64 s",
              "bool one_weight"]  # fmt: skip
    outputs = ["raw T kx_new", "raw T y_new", "raw T z"]
    body = [
        "const long long r1 = rows - 1;",
        "const long long p = i % r1 + rows * (i / r1);",
        "const double a0 = (double)x_new[p + rows] - x_new[p];",
        "const double a1 = (double)x_new[p + 1] - x_new[p];",
        "kx_new[2 * i] = a0;",
        "kx_new[2 * i + 1] = a1;",
        "const double w0 = y[2 * i] + s * (2.0 * a0 - kx[2 * i]);",
        "const double w1 = y[2 * i + 1] + s * (2.0 * a1 - kx[2 * i + 1]);",
        "const double w_g = one_weight ? (double)w[0] : (double)w[i];",
        "const double scale = cvxprox_disc_scale(w0, w1, w_g);",
        "const double y0 = w0 * scale, y1 = w1 * scale;",
        "y_new[2 * i] = y0;",
        "y_new[2 * i + 1] = y1;",
        "z[2 * i] = (w0 - y0) / s;",
        "z[2 * i + 1] = (w1 - y1) / s;",
    ]
    if combine:
        params.append(_COMBINE)
        outputs += ["raw T y_next", "raw T kx_next"]
        body += [
            "y_next[2 * i] = a_step * y0 + a_point * y[2 * i];",
            "y_next[2 * i + 1] = a_step * y1 + a_point * y[2 * i + 1];",
            "kx_next[2 * i] = a_step * a0 + a_point * kx[2 * i];",
            "kx_next[2 * i + 1] = a_step * a1 + a_point * kx[2 * i + 1];",
        ]
    if average:
        params += ["raw T y_average", "raw T kx_average", _AVERAGE]
        outputs += ["raw T y_mean", "raw T kx_mean"]
        body += [
            "y_mean[2 * i] = a_average * y_average[2 * i] + a_new * y0;",
            "y_mean[2 * i + 1] = a_average * y_average[2 * i + 1] + a_new * y1;",
            "kx_mean[2 * i] = a_average * kx_average[2 * i] + a_new * a0;",
            "kx_mean[2 * i + 1] = a_average * kx_average[2 * i + 1] + a_new * a1;",
        ]
    name = f"cvxprox_tv_pdhg_groups{'_combine' if combine else ''}{'_average' if average else ''}"
    return Elementwise(", ".join(params), ", ".join(outputs), "\n".join(body), name, PREAMBLE)


@cache
def tv_pdhg_pixels_kty(combine: bool, average: bool) -> Elementwise:
    """(K'y+)_p, and its combinations."""
    params = ["raw T y_new", "T kty", "int64 rows", "int64 cols"]
    body = ["const double t = cvxprox_tv_adjoint(y_new, i, rows, cols);"]
    return _pixel_kernel(params, body, "kty", "t", combine, average)


def tv_pdhg_iteration(
    launch: Callable[..., Any],
    module: Any,
    grid: Any,
    weight: Any,
    x: Any,
    kty: Any,
    y: Any,
    kx: Any,
    c: Any,
    lower: Any,
    upper: Any,
    tau: float,
    s: float,
    combination: tuple | None,
) -> tuple:
    """``cvxprox.backend.jit.pdhg_tv.tv_pdhg_iteration``'s result by the three kernels:
    (x+, y+, K x+, K'y+, z, the next point's four fields, the next average's four
    fields), the fields not formed empty. ``combination``: None, or (a_step, a_point,
    average, a_average, a_new) with ``average`` the average's four fields or None.
    ``launch(spec, *args, size=None)`` runs a kernel; ``module`` is the arrays' module."""
    rows, cols, groups = grid.rows, grid.cols, (grid.rows - 1) * (grid.cols - 1)
    empty = module.zeros(0, dtype=x.dtype)
    combine = combination is not None
    average = combination[2] if combine else None
    mean = average is not None
    x_args = [x, kty, c, lower, upper, float(tau)]
    coefficients = []
    if combine:
        a_step, a_point, _, a_average, a_new = combination
        coefficients = [float(a_step), float(a_point)]
        x_args += coefficients
    if mean:
        x_args += [average[0], float(a_average), float(a_new)]
    xs = launch(tv_pdhg_pixels_x(combine, mean), *x_args)
    xs = (xs,) if not isinstance(xs, tuple) else xs
    x_new = xs[0]
    pair = [module.empty_like(y) for _ in range(3 + 2 * combine + 2 * mean)]
    group_args = [x_new, y, kx, weight, rows, float(s), weight.shape[0] == 1, *coefficients]
    if mean:
        group_args += [average[1], average[2], float(a_average), float(a_new)]
    launch(tv_pdhg_groups(combine, mean), *group_args, *pair, size=groups)
    kty_args = [pair[1], kty, rows, cols, *coefficients]
    if mean:
        kty_args += [average[3], float(a_average), float(a_new)]
    ktys = launch(tv_pdhg_pixels_kty(combine, mean), *kty_args)
    ktys = (ktys,) if not isinstance(ktys, tuple) else ktys
    kx_new, y_new, z = pair[:3]
    step = (x_new, y_new, kx_new, ktys[0], z)
    following = (xs[1], pair[3], pair[4], ktys[1]) if combine else (empty,) * 4
    averaged = (xs[-1], pair[-2], pair[-1], ktys[-1]) if mean else (empty,) * 4
    return (*step, *following, *averaged)
