"""The GPU against the CPU and the LP peers, in one run.

Usage (from the repository root, on a machine with a CUDA GPU and CuPy)::

    python -m compare.gpu [--sections lp,tv,deblur,layer] [--lp-sizes 10x168,20x720,50x2436]
                          [--image-sizes 512,1024,2048] [--batch 256] [--eps 1e-4]
                          [--time-limit 120] [--cpu-time-limit 60] [--threads 16]
                          [--cupdlpx PATH] [--peak-gbs GBS] [--out FILE]

Sections, each a table of one row per run:

- ``lp``: the capacity-expansion LP of ``examples/energy_planning.py`` at the sizes
  ``NODESxHOURS`` (about 1.4e4, 1.2e5 and 1.0e6 variables by default), at
  eps_abs = eps_rel = ``--eps``: NABLAPROX's PDHG on the GPU (CuPy, float64 and float32)
  and on the CPU (NumPy), HiGHS' interior point on ``--threads`` threads, and cuPDLPx
  (its command line ``--cupdlpx PATH`` on an MPS file written by HiGHS, or its Python
  package ``cupdlpx`` when installed) at the same tolerances. The objective column's
  reference is HiGHS.
- ``tv``: 2-D TV denoising (``compare.suites.structured``'s model) of N x N images, at
  default options: NABLAPROX on the GPU (float64, float32) and on the CPU with
  ``--threads`` threads.
- ``deblur``: 2-D TV deblurring (a 7x7 Gaussian blur, ``cvxprox.atoms.conv2d``), the
  same runs.
- ``layer``: the batched lasso layer of ``compare.torch_layers`` (n = 100, m = 50,
  B = ``--batch``, one block-diagonal program), one forward and backward pass with the
  parameters as CUDA tensors and as CPU tensors at the layer's defaults (the solve on the
  CPU), and with CUDA tensors solved on the GPU (``solver_args`` device="cuda",
  backend="torch").

Times are the solver's ``solve_time`` for the LPs and the images (transfers, scaling and
iterations; each problem is compiled by CVXPY once, and a small problem of each kind is
solved first on every run so that no row holds CUDA start-up or kernel compilation), and
wall time for the layer. The last column is the share of the GPU's peak memory
bandwidth that an iteration reaches: the bytes an iteration must move (``lp_bytes``,
``tv_bytes``: what the method reads and writes at least once per iteration, in the
iterate's precision) over the measured time per iteration, over the peak (the device's
memory clock and bus width, else ``PEAK_GBS`` by its name, else ``--peak-gbs``). Without
CUDA or CuPy the script exits at once with a message saying what is missing.

On a GPU machine lent for a few minutes, the GPU tests and a run that fits in about
eight minutes (cuPDLPx's command line built from its source first: its Makefile's
``build`` target, which needs nvcc and zlib)::

    make -C cuPDLPx build CUDA_HOME=$(dirname $(dirname $(which nvcc)))
    python -m pytest -q -m gpu tests/
    python -m compare.gpu --time-limit 30 --cpu-time-limit 20 --cupdlpx cuPDLPx/build/cupdlpx
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cvxpy as cp
import numpy as np

import cvxprox  # noqa: F401  (registers NABLAPROX)
from compare.suites.energy import EXAMPLE, load_example, parse_size
from compare.suites.structured import build_tv_deblurring, build_tv_denoising
from cvxprox.backend import get_backend

SECTIONS = ("lp", "tv", "deblur", "layer")
DEFAULT_LP_SIZES = "10x168,20x720,50x2436"
DEFAULT_IMAGE_SIZES = "512,1024,2048"
#: Peak memory bandwidth in GB/s by device name, where CUDA does not report the clock.
PEAK_GBS = {"H200": 4800.0, "H100 SXM": 3350.0, "H100 PCIe": 2000.0, "A100-SXM4-80GB": 2039.0}
HEADER = (
    "| problem | run | status | objective | rel. diff | iterations | seconds | "
    "ms / iteration | bandwidth |\n| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
)


@dataclass
class Row:
    """One run of one problem."""

    problem: str
    run: str
    status: str
    objective: float = math.nan
    iterations: int = 0
    seconds: float = math.nan
    bytes_per_iteration: float = math.nan

    def format(self, reference: float | None, peak: float) -> str:
        diff = "-"
        if reference is not None and math.isfinite(self.objective):
            diff = f"{abs(self.objective - reference) / max(1.0, abs(reference)):.1e}"
        per_it = self.seconds / self.iterations if self.iterations else math.nan
        share = self.bytes_per_iteration / per_it / peak if per_it > 0 else math.nan
        return (
            f"| {self.problem} | {self.run} | {self.status} | {self.objective:.8g} | {diff} | "
            f"{self.iterations or '-'} | {self.seconds:.3f} | "
            f"{'-' if math.isnan(per_it) else f'{1e3 * per_it:.3f}'} | "
            f"{'-' if math.isnan(share) else f'{100 * share:.0f}%'} |"
        )


def lp_bytes(n: int, m: int, nnz: int, word: int) -> float:
    """Bytes a PDHG iteration on an LP (x in R^n, A (m, n) with nnz entries, 4-byte
    indices) moves at least: A x and A'y (each matrix's values, column indices and row
    pointers once, its input vector once, its output once), the primal update (x, K'y, c,
    l, u in, x out), the dual update (y, A x, K x, b in, a byte of cone mask, y out) and
    the reflected Halpern step's combinations of the four fields (two in, one out)."""
    spmv = 2 * nnz * (word + 4) + 4 * (m + n + 2) + 2 * word * (m + n)
    return spmv + 6 * n * word + 5 * m * word + m + 6 * (n + m) * word


def tv_bytes(pixels: int, word: int) -> float:
    """Bytes an iteration of dual FISTA on 2-D isotropic TV denoising moves at least: the
    dual field (two planes) and its previous value in, the new one out, K'y and its
    previous value in and the new one out, the data q and the diagonal H in."""
    return (2 + 2 + 2 + 1 + 1 + 1 + 2) * pixels * word


def peak_bandwidth(override: float | None) -> tuple[float, str]:
    """(bytes per second, how it was found) of the current CUDA device."""
    import cupy  # noqa: PLC0415

    if override is not None:
        return override * 1e9, "--peak-gbs"
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    clock_khz, bus_bits = props.get("memoryClockRate", 0), props.get("memoryBusWidth", 0)
    if clock_khz and bus_bits:
        return 2.0 * clock_khz * 1e3 * bus_bits / 8, "memory clock x bus width x 2"
    name = device_name()
    for key, gbs in PEAK_GBS.items():
        if all(part in name for part in key.split()):
            return gbs * 1e9, f"datasheet of {key}"
    raise SystemExit(f"gpu: no peak bandwidth known for {name}; pass --peak-gbs")


def device_name() -> str:
    import cupy  # noqa: PLC0415

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else name


def check_cuda() -> str:
    """A line describing the GPU; SystemExit with the reason when there is none."""
    try:
        get_backend("cupy", "cuda")
    except ValueError as exc:
        raise SystemExit(f"gpu: no GPU run possible: {exc}") from None
    import cupy  # noqa: PLC0415

    memory = cupy.cuda.Device().mem_info[1] / 2**30
    return f"{device_name()}, {memory:.0f} GiB, CuPy {cupy.__version__}"


def nablaprox(
    problem: cp.Problem, name: str, run: str, options: dict, word_bytes: Callable[[int], float]
) -> Row:
    """One NABLAPROX solve; an exception becomes a row with status ``error``."""
    try:
        problem.solve(solver="NABLAPROX", warm_start=False, **options)
    except Exception as exc:  # noqa: BLE001  (one failed run must not stop the table)
        traceback.print_exc(file=sys.stderr)
        return Row(name, run, f"error: {type(exc).__name__}")
    stats = problem.solver_stats
    word = 4 if options.get("dtype") == "float32" else 8
    value = math.nan if problem.value is None else float(problem.value)
    row = Row(name, run, problem.status, value, stats.num_iters or 0, stats.solve_time)
    if options.get("device") == "cuda":
        row.bytes_per_iteration = word_bytes(word)
    return row


def highs(problem: cp.Problem, name: str, threads: int, time_limit: float) -> Row:
    """HiGHS' interior point on ``threads`` threads, at its default tolerances (HiGHS
    keeps one thread pool per process: it is reset so that the count applies)."""
    import highspy  # noqa: PLC0415

    options = {"solver": "ipm", "threads": threads, "time_limit": time_limit}
    try:
        highspy.Highs.resetGlobalScheduler(True)
        start = time.perf_counter()
        problem.solve(solver="HIGHS", highs_options=options)
        seconds = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        return Row(name, f"HiGHS ipm {threads} threads", f"error: {type(exc).__name__}")
    stats = problem.solver_stats
    value = math.nan if problem.value is None else float(problem.value)
    solve_time = stats.solve_time if stats.solve_time is not None else seconds
    return Row(name, f"HiGHS ipm {threads} threads", problem.status, value,
               stats.num_iters or 0, solve_time)  # fmt: skip


def write_mps(problem: cp.Problem, path: Path) -> None:
    """The LP ``problem`` as an MPS file, written by HiGHS from CVXPY's data for it."""
    import highspy  # noqa: PLC0415

    from compare.cupdlpx_conif import CuPdlpx  # noqa: PLC0415

    data = problem.get_problem_data(CuPdlpx())[0]
    A = data["A"].tocsc()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = A.shape[1], A.shape[0]
    lp.col_cost_, lp.offset_ = np.asarray(data["c"], dtype=float), data["offset"]
    lp.col_lower_, lp.col_upper_ = data["lb"], data["ub"]
    lp.row_lower_, lp.row_upper_ = data["l"], data["u"]
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = A.indptr, A.indices, A.data
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    h.writeModel(str(path))


def parse_cupdlpx_summary(text: str) -> dict[str, str]:
    """cuPDLPx's ``<name>_summary.txt`` (``key: value`` lines) as a dict."""
    return {k.strip(): v.strip() for k, v in re.findall(r"^([^:\n]+):(.*)$", text, re.M)}


def cupdlpx(
    problem: cp.Problem, name: str, binary: str | None, eps: float, time_limit: float,
    n: int, m: int, nnz: int,
) -> Row | None:  # fmt: skip
    """cuPDLPx at eps_opt = eps_feas = ``eps``: its command line when ``binary`` is given,
    else its Python package; None when neither is there."""
    if binary is None:
        try:
            from compare.cupdlpx_conif import CuPdlpx  # noqa: PLC0415

            CuPdlpx().import_solver()
        except ImportError:
            return None
        options = {"TimeLimit": time_limit, "FeasibilityTol": eps, "OptimalityTol": eps}
        try:
            problem.solve(solver=CuPdlpx(), **options)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            return Row(name, "cuPDLPx", f"error: {type(exc).__name__}")
        stats = problem.solver_stats
        value = math.nan if problem.value is None else float(problem.value)
        return Row(name, "cuPDLPx", problem.status, value, stats.num_iters or 0,
                   stats.solve_time, lp_bytes(n, m, nnz, 8))  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        mps = Path(folder) / "lp.mps"
        write_mps(problem, mps)
        command = [binary, "--time_limit", str(time_limit), "--eps_opt", str(eps),
                   "--eps_feas", str(eps), str(mps), folder]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        summary = Path(folder) / "lp_summary.txt"
        if done.returncode != 0 or not summary.exists():
            print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
            return Row(name, "cuPDLPx", f"error: exit {done.returncode}")
        fields = parse_cupdlpx_summary(summary.read_text())
    return Row(
        name, "cuPDLPx", fields.get("Termination Reason", "?"),
        float(fields.get("Primal Objective Value", "nan")),
        int(fields.get("Iterations Count", "0")), float(fields.get("Runtime (sec)", "nan")),
        lp_bytes(n, m, nnz, 8),
    )  # fmt: skip


def gpu_runs(time_limit: float, extra: dict) -> list[tuple[str, dict]]:
    """The NABLAPROX runs on the GPU: CuPy in float64 and float32."""
    base = {"device": "cuda", "time_limit": time_limit, **extra}
    return [("gpu f64", base), ("gpu f32", {**base, "dtype": "float32"})]


def lp_section(args: argparse.Namespace, peak: float) -> list[str]:
    model = load_example(EXAMPLE)
    eps = {"eps_abs": args.eps, "eps_rel": args.eps, "algorithm": "pdhg"}
    plan = [*gpu_runs(args.time_limit, eps), ("cpu", {**eps, "time_limit": args.cpu_time_limit})]
    warm = model.build_capacity_expansion(model.generate_system(2, 24))[0]
    for run, options in plan:
        nablaprox(warm, "warm-up", run, options, lambda w: 0.0)
    lines = [f"## Energy LP (PDHG at eps {args.eps:g})", "", HEADER]
    for text in filter(None, (p.strip() for p in args.lp_sizes.split(","))):
        nodes, hours = parse_size(text)
        problem = model.build_capacity_expansion(model.generate_system(nodes, hours))[0]
        from cvxprox.interface.solver import PROGRAM  # noqa: PLC0415

        program = problem.get_problem_data("NABLAPROX")[0][PROGRAM].assemble()
        n, m, nnz = program.n, program.m, program.A.nnz
        name = f"energy {nodes}x{hours} ({n} vars, {m} rows, {nnz} nnz)"
        rows = [highs(problem, name, args.threads, args.cpu_time_limit)]
        peer = cupdlpx(problem, name, args.cupdlpx, args.eps, args.time_limit, n, m, nnz)
        rows += [peer] if peer is not None else []
        rows += [nablaprox(problem, name, run, options, partial(lp_bytes, n, m, nnz))
                 for run, options in plan]  # fmt: skip
        reference = rows[0].objective if math.isfinite(rows[0].objective) else None
        lines += [row.format(reference, peak) for row in rows]
        print("\n".join(lines[-len(rows) :]), flush=True)
    return lines


def image_section(
    title: str, build: Callable[[int], cp.Problem], sizes: list[int], args: argparse.Namespace,
    peak: float, bandwidth: bool,
) -> list[str]:  # fmt: skip
    plan = [*gpu_runs(args.time_limit, {}),
            (f"cpu {args.threads} threads", {"threads": args.threads,
                                             "time_limit": args.cpu_time_limit})]  # fmt: skip
    warm = build(64)
    for run, options in plan:
        nablaprox(warm, "warm-up", run, options, lambda w: 0.0)
    lines = [f"## {title} (default options)", "", HEADER]
    for size in sizes:
        problem = build(size)
        name = f"{size}x{size}"

        def moved(word: int, size: int = size) -> float:
            return tv_bytes(size * size, word) if bandwidth else math.nan

        rows = [nablaprox(problem, name, run, options, moved) for run, options in plan]
        reference = rows[-1].objective if math.isfinite(rows[-1].objective) else None
        lines += [row.format(reference, peak) for row in rows]
        print("\n".join(lines[-len(rows) :]), flush=True)
    return lines


def layer_section(args: argparse.Namespace) -> list[str]:
    import torch  # noqa: PLC0415

    from compare.torch_layers import CVXPROX, lasso_data, make_layer  # noqa: PLC0415

    n, m = 100, 50
    data = lasso_data(n, m, args.batch)
    layer = make_layer(CVXPROX, n, m)
    lines = [f"## Batched lasso layer (n = {n}, m = {m}, B = {args.batch})", "",
             "| tensors | solve | status | forward s | backward s |",
             "| --- | --- | --- | ---: | ---: |"]  # fmt: skip
    plan = [("cuda", "cpu (default)", {}), ("cpu", "cpu (default)", {}),
            ("cuda", "gpu (torch backend)", {"device": "cuda", "backend": "torch"})]  # fmt: skip
    for device, solve, solver_args in plan:
        try:
            params = [
                torch.tensor(data[k], device=device, requires_grad=True) for k in ("A", "b", "lam")
            ]
            weight = torch.as_tensor(data["w"], device=device)
            for _ in range(2):  # the first pass warms up
                for p in params:
                    p.grad = None
                start = time.perf_counter()
                (x,) = layer(*params, solver_args=solver_args)
                mid = time.perf_counter()
                (x * weight).sum().backward()
                if device == "cuda":
                    torch.cuda.synchronize()
                end = time.perf_counter()
            status = layer.info.get("status", "?")
            lines.append(f"| {device} | {solve} | {status} | {mid - start:.3f} | {end - mid:.3f} |")
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            lines.append(f"| {device} | {solve} | error: {type(exc).__name__} | - | - |")
        print(lines[-1], flush=True)
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma separated")
    parser.add_argument("--lp-sizes", default=DEFAULT_LP_SIZES, help="NODESxHOURS list")
    parser.add_argument("--image-sizes", default=DEFAULT_IMAGE_SIZES, help="N list")
    parser.add_argument("--batch", type=int, default=256, help="layer batch (256)")
    parser.add_argument("--eps", type=float, default=1e-4, help="LP eps_abs = eps_rel (1e-4)")
    parser.add_argument("--time-limit", type=float, default=120.0, help="s per GPU solve")
    parser.add_argument("--cpu-time-limit", type=float, default=60.0, help="s per CPU solve")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads")
    parser.add_argument("--cupdlpx", help="path of cuPDLPx's command-line binary")
    parser.add_argument("--peak-gbs", type=float, help="peak memory bandwidth, GB/s")
    parser.add_argument("--out", type=Path, help="also write the tables here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        build_parser().error(f"unknown sections {unknown}; choose from {SECTIONS}")
    sizes = [int(s) for s in args.image_sizes.split(",") if s.strip()]
    header = f"GPU: {check_cuda()}; CPU: {os.cpu_count()} cores"
    peak, source = peak_bandwidth(args.peak_gbs)
    lines = [f"# {header}", "", f"Peak bandwidth {peak / 1e9:.0f} GB/s ({source}).", ""]
    print("\n".join(lines), flush=True)
    t0 = time.perf_counter()
    if "lp" in sections:
        lines += [*lp_section(args, peak), ""]
    if "tv" in sections:
        build = lambda size: build_tv_denoising(size=size)  # noqa: E731
        lines += [*image_section("2-D TV denoising", build, sizes, args, peak, True), ""]
    if "deblur" in sections:
        build = lambda size: build_tv_deblurring(size=size)  # noqa: E731
        lines += [*image_section("2-D TV deblurring", build, sizes, args, peak, False), ""]
    if "layer" in sections:
        lines += [*layer_section(args), ""]
    lines.append(f"total {time.perf_counter() - t0:.0f} s")
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")
    print(lines[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
