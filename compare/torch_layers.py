"""Differentiable lasso layers: ``CvxproxLayer`` against cvxpylayers, time and memory.

Usage (from the repository root)::

    python -m compare.torch_layers [--quick] [--skip-timing] [--skip-memory]
                                   [--reps 3] [--profile] [--out compare/results/torch_layers.md]

The layer is the lasso ``minimize sum_squares(A x - b) + lam * norm1(x)`` with parameters
A (m x n), b (m) and a nonnegative scalar lam, solved for a batch of B problems (A and b
batched, lam shared). Data (seed 0): A standard normal / sqrt(m), b = A x_true + 0.01
noise with n // 10 nonzeros in x_true, lam = 0.1 * median over the batch of
||A_k' b_k||_inf (sparse, nonzero solutions). The loss of the backward pass is
``sum(w * x)`` for a fixed random w; gradients flow to A, b and lam.

1. **Timing.** For each size, each layer runs in a fresh child process (``python -m
   compare.torch_layers --_timing-child ...``): build the layer (timed), one warm-up
   forward+backward, then ``reps`` forward calls on tensors that do not require gradients
   (cvxpylayers then skips its derivative setup) and ``reps`` forward+backward calls;
   the table gives medians. ``CvxproxLayer`` runs with its default options,
   ``CvxpyLayer`` with its default backend (diffcp + SCS) and default options. The parent
   compares the two layers' last solutions (max abs difference) and gradients (relative
   difference ``||g_1 - g_2|| / ||g_2||``), and at the smallest size both against a
   reference: cvxpylayers at eps_abs = eps_rel = 1e-9.
2. **Memory vs iterations.** Peak memory of one forward+backward at K = 100, 1000 and 2000
   iterations, for the implicit layer run for exactly K iterations (``max_iters = K``,
   tolerances 1e-14, solution polishing switched off in the child) and the unrolled
   layer (``diff="unrolled", iterations=K``). Each measurement is a fresh child
   (``--_memory-child``): imports, data and layer, a warm-up forward+backward on a tiny
   lasso (JIT compilation, torch's lazy setup), then the baseline ``ru_maxrss``; one
   forward+backward; the peak ``ru_maxrss`` minus the baseline is the memory it took
   (torch's CPU tensors included). A second forward+backward under ``tracemalloc`` gives
   the peak of what Python and NumPy allocated (torch's tensors and SuperLU's factors are
   invisible to it).

BLAS and torch threads are left at their defaults, as in the other compare scripts.
``--profile`` adds cProfile's top entries (cumulative time) of CvxproxLayer's forward
and backward at the largest size.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import gc
import importlib.metadata
import io
import json
import math
import os
import platform
import pstats
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:  # ``python compare/torch_layers.py``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from compare.harness import RESULTS_DIR, _child_environment
from compare.report import fmt, markdown_table

#: The layers compared (names used in the tables and on the children's command lines).
CVXPROX, CVXPYLAYERS = "CvxproxLayer", "cvxpylayers"
LAYERS = (CVXPROX, CVXPYLAYERS)

#: Implicit / unrolled differentiation in the memory measurements.
IMPLICIT, UNROLLED = "implicit", "unrolled"
#: The implicit layer forced onto the cone program (``structure="never"``).
IMPLICIT_CONES = "implicit, cones"
MEMORY_MODES = (IMPLICIT, IMPLICIT_CONES, UNROLLED)

#: Tolerance of the implicit layer when it must run exactly ``max_iters`` iterations.
EXACT_ITERS_EPS = 1e-14

#: cvxpylayers' tolerances for the accuracy reference.
REFERENCE_EPS = 1e-9

#: A child is killed after this many seconds.
CHILD_TIMEOUT = 3600.0


@dataclass(frozen=True)
class LassoCase:
    """One size of the timing benchmark."""

    n: int
    m: int
    batch: int
    reps: int
    layers: tuple[str, ...] = LAYERS
    reference: bool = False
    note: str = ""

    @property
    def label(self) -> str:
        return f"n={self.n}, m={self.m}, B={self.batch}"


#: The full run's sizes. cvxpylayers needs more than the 23.5 GB of the benchmark machine
#: at n = 1000, m = 500, B = 64 (peak RSS 3.5 GB building the layer and 6 GB in one
#: forward+backward at m = 100, 8.4 GB and 14 GB at m = 250; at m = 500 the kernel's OOM
#: killer ended it at 24 GB during the first forward call), so the comparison at n = 1000
#: uses m = 250, and m = 500 runs CvxproxLayer only.
FULL_CASES = (
    LassoCase(100, 50, 64, reps=5, reference=True),
    LassoCase(1000, 250, 64, reps=1),
    LassoCase(
        1000,
        500,
        64,
        reps=1,
        layers=(CVXPROX,),
        note="cvxpylayers not run: it ran out of memory (killed at 24 GB RSS in its first "
        "forward call) on this 23.5 GB machine",
    ),
)
QUICK_CASES = (
    LassoCase(30, 15, 8, reps=2, reference=True),
    LassoCase(60, 30, 8, reps=1),
)

#: The memory benchmark: (n, m, B) and the iteration counts.
FULL_MEMORY = ((100, 50, 8), (100, 1000, 2000))
QUICK_MEMORY = ((40, 20, 4), (20, 100, 200))


# --------------------------------------------------------------------------- the lasso


def lasso_problem(n: int, m: int) -> tuple[Any, list, list]:
    """The DPP lasso, its parameters ``[A, b, lam]`` and variables ``[x]``."""
    import cvxpy as cp  # noqa: PLC0415

    A = cp.Parameter((m, n), name="A")
    b = cp.Parameter(m, name="b")
    lam = cp.Parameter(nonneg=True, name="lam")
    x = cp.Variable(n, name="x")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b) + lam * cp.norm1(x)))
    return problem, [A, b, lam], [x]


def lasso_data(n: int, m: int, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A (B, m, n), b (B, m), lam (), w (B, n): see the module docstring."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((batch, m, n)) / math.sqrt(m)
    x_true = np.zeros((batch, n))
    k = max(1, n // 10)
    for row in x_true:
        row[rng.choice(n, k, replace=False)] = rng.standard_normal(k)
    b = np.einsum("bij,bj->bi", A, x_true) + 0.01 * rng.standard_normal((batch, m))
    lam = 0.1 * np.median(np.abs(np.einsum("bij,bi->bj", A, b)).max(axis=1))
    w = rng.standard_normal((batch, n))
    return {"A": A, "b": b, "lam": np.asarray(lam), "w": w}


def make_layer(kind: str, n: int, m: int, **options: Any) -> Any:
    """A ``CvxproxLayer`` (options passed on) or a default ``CvxpyLayer`` of the lasso."""
    problem, params, variables = lasso_problem(n, m)
    if kind == CVXPROX:
        from cvxprox.torch import CvxproxLayer  # noqa: PLC0415

        return CvxproxLayer(problem, params, variables, **options)
    from cvxpylayers.torch import CvxpyLayer  # noqa: PLC0415

    return CvxpyLayer(problem, parameters=params, variables=variables, **options)


def tensors(data: dict[str, np.ndarray], grad: bool) -> list[Any]:
    """The parameter tensors ``[A, b, lam]`` (float64)."""
    import torch  # noqa: PLC0415

    return [torch.tensor(data[key], requires_grad=grad) for key in ("A", "b", "lam")]


def forward_backward(
    layer: Any, data: dict[str, np.ndarray], solver_args: dict | None = None
) -> tuple[float, float, np.ndarray, list[np.ndarray]]:
    """One forward+backward: (forward s, backward s, x, [dA, db, dlam])."""
    import torch  # noqa: PLC0415

    params = tensors(data, grad=True)
    kwargs = {} if solver_args is None else {"solver_args": solver_args}
    start = time.perf_counter()
    (x,) = layer(*params, **kwargs)
    mid = time.perf_counter()
    (x * torch.as_tensor(data["w"], dtype=x.dtype)).sum().backward()
    end = time.perf_counter()
    grads = [p.grad.detach().numpy().copy() for p in params]
    return mid - start, end - mid, x.detach().numpy().copy(), grads


def forward_only(layer: Any, data: dict[str, np.ndarray]) -> float:
    """Seconds of one forward call on tensors that do not require gradients."""
    params = tensors(data, grad=False)
    start = time.perf_counter()
    layer(*params)
    return time.perf_counter() - start


def max_rss_mb() -> float:
    """This process's peak resident set size so far, MB (``ru_maxrss`` is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _proc_status_mb(key: str) -> float:
    """A ``kB`` line of ``/proc/self/status`` in MB (NaN where ``/proc`` does not tell)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return math.nan


def current_rss_mb() -> float:
    """This process's resident set size now, MB (NaN where ``/proc`` does not tell)."""
    return _proc_status_mb("VmRSS")


def peak_rss_mb() -> float:
    """The peak RSS since the last ``reset_peak_rss``: VmHWM, which the reset clears
    (``ru_maxrss`` also keeps the peaks of exited threads, which it does not); the
    process's ``ru_maxrss`` where ``/proc`` does not tell."""
    value = _proc_status_mb("VmHWM")
    return value if math.isfinite(value) else max_rss_mb()


def release_memory() -> None:
    """Collect garbage and hand the C heap's free memory back to the OS (glibc's
    ``malloc_trim``). Without it glibc's heap grows by gigabytes per cvxpylayers call at
    n = 1000 (freed memory stays resident), and the third call runs out of memory."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Reset the peak RSS (``ru_maxrss``, VmHWM) to the current RSS (Linux >= 4.0, writing
    5 to ``/proc/self/clear_refs``); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- children


def timing_child(spec: dict[str, Any], out: Path) -> None:
    """Time one layer at one size; write ``out`` (JSON) and ``out.npz`` (x, gradients)."""
    kind, n, m, batch, reps = spec["kind"], spec["n"], spec["m"], spec["batch"], spec["reps"]
    solver_args = spec.get("solver_args")
    warnings.filterwarnings("ignore", message=".*Solution may be inaccurate.*")
    data = lasso_data(n, m, batch)
    start = time.perf_counter()
    layer = make_layer(kind, n, m)
    build = time.perf_counter() - start
    release_memory()
    forward_backward(layer, data, solver_args)  # warm-up
    release_memory()
    forwards, fb_forward, fb_backward = [], [], []
    x = grads = None
    if not spec.get("reference"):
        for _ in range(reps):
            forwards.append(forward_only(layer, data))
            release_memory()
    for _ in range(reps):
        x = grads = None
        release_memory()
        t_f, t_b, x, grads = forward_backward(layer, data, solver_args)
        fb_forward.append(t_f)
        fb_backward.append(t_b)
    info = getattr(layer, "info", {}) if kind == CVXPROX else {}
    result = {
        "build": build,
        "forward": forwards,
        "fb_forward": fb_forward,
        "fb_backward": fb_backward,
        "peak_rss_mb": max_rss_mb(),
        "status": str(info.get("status", "")),
        "iterations": info.get("iterations"),
        "algorithm": info.get("algorithm", ""),
        "route": str(info.get("route", "")).split(":")[0],
    }
    np.savez(out.with_suffix(".npz"), x=x, dA=grads[0], db=grads[1], dlam=grads[2])
    out.write_text(json.dumps(result))


def memory_child(spec: dict[str, Any], out: Path) -> None:
    """Peak memory of one forward+backward of one layer mode; write ``out`` (JSON)."""
    import torch  # noqa: PLC0415

    mode, iters = spec["mode"], spec["iterations"]
    n, m, batch = spec["n"], spec["m"], spec["batch"]
    warnings.filterwarnings("ignore", message=".*CvxproxLayer: status.*")

    if mode != UNROLLED:
        no_polishing()

    def build(n: int, m: int) -> Any:
        if mode != UNROLLED:
            args = {"max_iters": iters, "eps_abs": EXACT_ITERS_EPS, "eps_rel": EXACT_ITERS_EPS}
            structure = "never" if mode == IMPLICIT_CONES else "auto"
            return make_layer(CVXPROX, n, m, solver_args=args, structure=structure)
        return make_layer(CVXPROX, n, m, diff=UNROLLED, iterations=iters)

    tiny_layer, tiny_data = build(4, 2), lasso_data(4, 2, 2, seed=1)
    layer, data = build(n, m), lasso_data(n, m, batch)
    forward_backward(tiny_layer, tiny_data)  # warm-up: JIT, torch's lazy setup
    del tiny_layer, tiny_data
    release_memory()
    setup_peak = max_rss_mb()
    # The baseline: the RSS now, with the peak reset to it, so that what the setup
    # allocated and freed does not hide the measured run under its own high-water mark.
    reset = reset_peak_rss()
    base = current_rss_mb() if reset else setup_peak
    t_f, t_b, x, _ = forward_backward(layer, data)
    peak = peak_rss_mb() if reset else max_rss_mb()
    iterations = layer.info.get("iterations") if mode != UNROLLED else iters
    status = layer.info.get("status", "") if mode != UNROLLED else "-"
    del x
    release_memory()
    import tracemalloc  # noqa: PLC0415

    tracemalloc.start()
    forward_backward(layer, data)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    result = {
        "setup_peak_mb": setup_peak,
        "peak_reset": reset,
        "baseline_mb": base,
        "peak_mb": peak,
        "delta_mb": peak - base,
        "traced_peak_mb": traced_peak / 2**20,
        "forward": t_f,
        "backward": t_b,
        "iterations": iterations,
        "status": status,
        "torch_threads": torch.get_num_threads(),
    }
    out.write_text(json.dumps(result))


def no_polishing() -> None:
    """Switch off NABLAPROX's solution polishing in this process (there is no option for
    it): a polished point meets even 1e-14 tolerances, so with it a run with
    ``max_iters = K`` can stop early (at n = 200, m = 100, B = 8 and K = 2000 it stopped
    after 400 iterations)."""
    from cvxprox.solvers.common import polish  # noqa: PLC0415

    init = polish.PolishSchedule.__init__

    def disabled(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.enabled = False

    polish.PolishSchedule.__init__ = disabled  # type: ignore[method-assign]


def run_child(flag: str, spec: dict[str, Any]) -> tuple[dict[str, Any] | None, dict, str]:
    """Run a child (``python -m compare.torch_layers FLAG SPEC OUT``); (result, arrays, error)."""
    with tempfile.TemporaryDirectory(prefix="torch-layers-") as tmp:
        out = Path(tmp, "result.json")
        argv = [sys.executable, "-m", "compare.torch_layers", flag, json.dumps(spec), str(out)]
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=_child_environment(),
                timeout=CHILD_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None, {}, f"killed after {CHILD_TIMEOUT:g} s"
        if not out.exists():
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            why = "killed by signal" if proc.returncode < 0 else "exit code"
            last = lines[-1][:200] if lines else ""
            return None, {}, f"{why} {abs(proc.returncode)}" + (f": {last}" if last else "")
        arrays = {}
        npz = out.with_suffix(".npz")
        if npz.exists():
            with np.load(npz) as f:
                arrays = {key: f[key] for key in f.files}
        return json.loads(out.read_text()), arrays, ""


# --------------------------------------------------------------------------- timing


@dataclass
class LayerTiming:
    """One layer's timing at one size."""

    layer: str
    result: dict[str, Any] | None
    arrays: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    error: str = ""

    def median(self, key: str) -> float:
        values = (self.result or {}).get(key) or []
        return float(np.median(values)) if values else math.nan

    @property
    def forward(self) -> float:
        return self.median("forward")

    @property
    def forward_backward(self) -> float:
        if not self.result or not self.result["fb_forward"]:
            return math.nan
        totals = np.add(self.result["fb_forward"], self.result["fb_backward"])
        return float(np.median(totals))


@dataclass
class CaseResult:
    """Both layers (and the reference) at one size."""

    case: LassoCase
    timings: dict[str, LayerTiming]
    reference: LayerTiming | None = None


def agreement(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Max |x_a - x_b| and ||g_a - g_b|| / ||g_b|| per gradient (NaN when missing)."""
    if not a or not b:
        return {key: math.nan for key in ("x", "dA", "db", "dlam")}
    out = {"x": float(np.max(np.abs(a["x"] - b["x"])))}
    for key in ("dA", "db", "dlam"):
        out[key] = float(np.linalg.norm(a[key] - b[key]) / max(np.linalg.norm(b[key]), 1e-300))
    return out


def run_case(case: LassoCase, log: Any) -> CaseResult:
    """Time every layer of ``case`` (and the reference if asked) in children."""
    timings = {}
    for kind in case.layers:
        print(f"timing {kind} at {case.label} ...", file=log, flush=True)
        spec = {"kind": kind, "n": case.n, "m": case.m, "batch": case.batch, "reps": case.reps}
        result, arrays, error = run_child("--_timing-child", spec)
        timings[kind] = LayerTiming(kind, result, arrays, error)
        t = timings[kind]
        print(
            f"  {kind}: "
            + (
                error
                or f"forward {fmt(t.forward, '.3f')} s, forward+backward "
                f"{fmt(t.forward_backward, '.3f')} s, peak RSS {result['peak_rss_mb']:.0f} MB"
            ),
            file=log,
            flush=True,
        )
    reference = None
    if case.reference:
        print(f"reference (cvxpylayers, eps {REFERENCE_EPS:g}) at {case.label} ...", file=log)
        spec = {"kind": CVXPYLAYERS, "n": case.n, "m": case.m, "batch": case.batch, "reps": 1}
        spec["reference"] = True
        spec["solver_args"] = {
            "eps_abs": REFERENCE_EPS,
            "eps_rel": REFERENCE_EPS,
            "max_iters": 1_000_000,
        }
        result, arrays, error = run_child("--_timing-child", spec)
        reference = LayerTiming("reference", result, arrays, error)
        if error:
            print(f"  reference: {error}", file=log)
    return CaseResult(case, timings, reference)


def timing_table(results: Sequence[CaseResult]) -> str:
    """Times, ratios and peak memory per size and layer."""
    headers = ["size", "layer", "build (s)", "forward (s)", "fwd+bwd (s)"]
    headers += ["  of which fwd (s)", "  of which bwd (s)", "peak RSS (MB)", "solver run", "note"]
    rows = []
    for res in results:
        for kind in LAYERS:
            t = res.timings.get(kind)
            if t is None or t.result is None:
                note = t.error if t is not None else res.case.note
                rows.append([res.case.label, kind, *["-"] * 6, "-", note])
                continue
            r = t.result
            run = (
                f"{r.get('route', '')}: {r['algorithm']}, {r['iterations']} it., {r['status']}"
                if kind == CVXPROX
                else "diffcp + SCS"
            )
            rows.append(
                [
                    res.case.label,
                    kind,
                    fmt(r["build"], ".2f"),
                    fmt(t.forward, ".3f"),
                    fmt(t.forward_backward, ".3f"),
                    fmt(t.median("fb_forward"), ".3f"),
                    fmt(t.median("fb_backward"), ".3f"),
                    fmt(r["peak_rss_mb"], ".0f"),
                    run,
                    f"median of {res.case.reps}",
                ]
            )
    return markdown_table(headers, rows)


def ratio_table(results: Sequence[CaseResult]) -> str:
    """cvxpylayers / CvxproxLayer time ratios and the agreement of the two layers."""
    headers = ["size", "forward ratio", "fwd+bwd ratio", "max abs diff x"]
    headers += ["rel diff dA", "rel diff db", "rel diff dlam"]
    rows = []
    for res in results:
        ours, theirs = res.timings.get(CVXPROX), res.timings.get(CVXPYLAYERS)
        if ours is None or theirs is None or ours.result is None or theirs.result is None:
            continue
        agree = agreement(ours.arrays, theirs.arrays)
        rows.append(
            [
                res.case.label,
                fmt(safe_ratio(theirs.forward, ours.forward), ".2f"),
                fmt(safe_ratio(theirs.forward_backward, ours.forward_backward), ".2f"),
                fmt(agree["x"]),
                fmt(agree["dA"]),
                fmt(agree["db"]),
                fmt(agree["dlam"]),
            ]
        )
    return markdown_table(headers, rows)


def reference_table(results: Sequence[CaseResult]) -> str | None:
    """Each layer's distance to the tight-tolerance reference (None without one)."""
    headers = ["size", "layer", "max abs diff x", "rel diff dA", "rel diff db", "rel diff dlam"]
    rows = []
    for res in results:
        ref = res.reference
        if ref is None or ref.result is None:
            continue
        for kind, t in res.timings.items():
            if t.result is None:
                continue
            agree = agreement(t.arrays, ref.arrays)
            rows.append([res.case.label, kind, *(fmt(agree[k]) for k in ("x", "dA", "db", "dlam"))])
    return markdown_table(headers, rows) if rows else None


# --------------------------------------------------------------------------- memory


def run_memory(size: tuple[int, int, int], iterations: Sequence[int], log: Any) -> dict:
    """``{(mode, K): (result or None, error)}`` for every mode and K."""
    n, m, batch = size
    out = {}
    for mode in MEMORY_MODES:
        for iters in iterations:
            print(f"memory: {mode}, K = {iters}, n={n}, m={m}, B={batch} ...", file=log)
            spec = {"mode": mode, "iterations": iters, "n": n, "m": m, "batch": batch}
            result, _, error = run_child("--_memory-child", spec)
            out[(mode, iters)] = (result, error)
            print(
                "  "
                + (
                    error
                    or f"peak {result['peak_mb']:.0f} MB, delta {result['delta_mb']:.1f} MB, "
                    f"traced {result['traced_peak_mb']:.1f} MB"
                ),
                file=log,
                flush=True,
            )
    return out


def _ratio(value: float, base: float) -> str:
    """value / base, or "n/a" when the base rounds to zero (below the RSS page size)."""
    return f"{value / base:.2f}" if base > 0 else "n/a"


def safe_ratio(a: float, b: float) -> float:
    """``a / b``, NaN when b is 0 or not finite."""
    return a / b if b and math.isfinite(b) else math.nan


def memory_table(results: dict, iterations: Sequence[int]) -> str:
    """Peak memory per mode and K, and the ratio of the largest K to the smallest."""
    headers = ["differentiation", "K", "iterations run", "status", "fwd (s)", "bwd (s)"]
    headers += ["setup peak RSS (MB)", "baseline RSS (MB)", "peak RSS (MB)"]
    headers += ["peak - baseline (MB)"]
    headers += ["tracemalloc peak (MB)", f"ratio to K={iterations[0]}: delta, traced"]
    rows = []
    for mode in MEMORY_MODES:
        first = results.get((mode, iterations[0]), (None, ""))[0]
        for iters in iterations:
            result, error = results[(mode, iters)]
            if result is None:
                rows.append([mode, iters, *["-"] * 9, error])
                continue
            ratio = "-"
            if first is not None and iters != iterations[0]:
                ratio = f"{_ratio(result['delta_mb'], first['delta_mb'])}, " + _ratio(
                    result["traced_peak_mb"], first["traced_peak_mb"]
                )
            rows.append(
                [
                    mode,
                    iters,
                    result["iterations"],
                    result["status"],
                    fmt(result["forward"], ".3f"),
                    fmt(result["backward"], ".3f"),
                    fmt(result["setup_peak_mb"], ".0f"),
                    fmt(result["baseline_mb"], ".0f"),
                    fmt(result["peak_mb"], ".0f"),
                    fmt(result["delta_mb"], ".1f"),
                    fmt(result["traced_peak_mb"], ".1f"),
                    ratio,
                ]
            )
    return markdown_table(headers, rows)


# --------------------------------------------------------------------------- profile


def profile_cvxprox(case: LassoCase, top: int = 20) -> str:
    """cProfile's ``top`` entries (cumulative) of CvxproxLayer's forward and backward."""
    import torch  # noqa: PLC0415

    data = lasso_data(case.n, case.m, case.batch)
    layer = make_layer(CVXPROX, case.n, case.m)
    forward_backward(layer, data)  # warm-up
    params = tensors(data, grad=True)
    w = torch.as_tensor(data["w"])
    sections = []
    for name in ("forward", "backward"):
        profiler = cProfile.Profile()
        if name == "forward":
            profiler.enable()
            (x,) = layer(*params)
            profiler.disable()
        else:
            loss = (x * w).sum()
            profiler.enable()
            loss.backward()
            profiler.disable()
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream).strip_dirs()
        stats.sort_stats("cumulative").print_stats(top)
        text = stream.getvalue().strip()
        text = text[text.find("ncalls") :] if "ncalls" in text else text
        total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
        sections.append(f"### {name} ({case.label}; {total:.2f} s profiled)\n\n```\n{text}\n```")
    return "\n\n".join(sections)


# --------------------------------------------------------------------------- report


def package_version(dist: str) -> str:
    try:
        return f"{dist} {importlib.metadata.version(dist)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{dist} (not installed)"


def load_average() -> str:
    """The 1-minute load average of the machine ("-" where unknown)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "-"


def machine_memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return math.nan


def render(
    args: argparse.Namespace,
    cases: Sequence[LassoCase],
    timings: Sequence[CaseResult] | None,
    memory: tuple[tuple[int, int, int], Sequence[int], dict] | None,
    profile: str | None,
) -> str:
    """The Markdown report."""
    import torch  # noqa: PLC0415

    packages = ", ".join(
        package_version(d) for d in ("cvxprox", "cvxpy", "torch", "cvxpylayers", "diffcp", "scs")
    )
    lines = [
        "# Differentiable lasso layers: CvxproxLayer vs cvxpylayers" + (" (quick)" * args.quick),
        "",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {fmt(machine_memory_gb(), '.1f')} GB memory, "
        f"Python {platform.python_version()}; torch threads {torch.get_num_threads()} "
        "(BLAS and torch threads at their defaults)",
        f"- Packages: {packages}",
        f"- Load average (1 min) before the run {getattr(args, 'load_before', '-')}, after "
        f"{getattr(args, 'load_after', '-')} (other work on the machine slows the timings).",
        "- Model: minimize sum_squares(A x - b) + lam * norm1(x), parameters A (m x n) and "
        "b (m) batched, lam (nonneg scalar) shared; seed 0, A ~ N(0, 1/m), b = A x_true + "
        "0.01 noise with n/10 nonzeros in x_true, lam = 0.1 * median_k ||A_k' b_k||_inf; "
        "loss sum(w * x) for a fixed random w, gradients to A, b and lam.",
        "- `python -m compare.torch_layers" + (" --quick" if args.quick else "") + "`; "
        "details in the module's docstring.",
    ]
    parts = ["\n".join(lines)]
    if timings is not None:
        notes = [f"- {c.label}: {c.note}." for c in cases if c.note]
        parts.append(
            "\n".join(
                [
                    "## Batched lasso: time",
                    "",
                    "- Each layer at each size in a fresh process: build the layer, one "
                    "warm-up forward+backward, then `reps` forward calls on tensors without "
                    "`requires_grad` and `reps` forward+backward calls; medians. "
                    "CvxproxLayer: default options (eps_abs = eps_rel = 1e-6); cvxpylayers: "
                    "default backend (diffcp + SCS 3, default eps_abs = eps_rel = 1e-4) and "
                    "options; diffcp solves a batch with a thread pool of one job per CPU.",
                    "- build = constructing the layer (CVXPY's DPP compilation); forward = a "
                    "call without gradients; fwd+bwd = a forward call with gradients plus "
                    "`loss.backward()`; peak RSS = the child's `ru_maxrss` (everything, "
                    "the build and the warm-up included).",
                    "- At n = 1000 the comparison uses m = 250 instead of n/2 = 500: at "
                    "m = 500 the kernel's out-of-memory killer ended cvxpylayers at 24 GB RSS "
                    "in its first forward call (a probe before this run).",
                    "- Between calls the child collects garbage and returns free heap memory "
                    "to the OS (`malloc_trim`): without it glibc's heap grew by gigabytes per "
                    "cvxpylayers call at n = 1000 and its third call ran out of memory.",
                    *notes,
                    "",
                    timing_table(timings),
                    "",
                    "Ratios cvxpylayers / CvxproxLayer (above 1: CvxproxLayer is faster) and "
                    "how far apart the two layers' solutions and gradients are (max abs "
                    "difference of x; ||g_cvxprox - g_cvxpylayers|| / ||g_cvxpylayers||):",
                    "",
                    ratio_table(timings),
                ]
            )
        )
        ref = reference_table(timings)
        if ref is not None:
            parts.append(
                "\n".join(
                    [
                        f"Distance of each layer to a reference (cvxpylayers with eps_abs = "
                        f"eps_rel = {REFERENCE_EPS:g}; the differences above come from the "
                        "layers' default tolerances):",
                        "",
                        ref,
                    ]
                )
            )
    if memory is not None:
        (n, m, batch), iterations, results = memory
        parts.append(
            "\n".join(
                [
                    "## Memory vs iteration count",
                    "",
                    f"- One lasso batch, n = {n}, m = {m}, B = {batch}; one forward+backward "
                    "per fresh process. implicit: CvxproxLayer (its default, structured "
                    "route: FISTA) with max_iters = K and "
                    f"eps_abs = eps_rel = {EXACT_ITERS_EPS:g}; implicit, cones: the same on the "
                    'cone program (`structure="never"`: ADMM) with solution polishing switched '
                    "off (patched in the child: there is no option, and a polished point meets "
                    "even these tolerances and may end a run early), "
                    "so both run K iterations unless they reach these tolerances first; unrolled: "
                    '`diff="unrolled", iterations=K` (torch '
                    "autograd through K PDHG iterations).",
                    "- setup peak RSS: `ru_maxrss` after imports, data, the layer and a "
                    "warm-up forward+backward of a tiny lasso (JIT compilation); then the "
                    "child collects garbage, returns free heap memory to the OS "
                    "(`malloc_trim`) and resets the peak to the current RSS (writing 5 to "
                    "`/proc/self/clear_refs`), which is the baseline; peak RSS: the peak "
                    "(VmHWM of `/proc/self/status`) after the measured forward+backward; "
                    "peak - baseline: what it took "
                    "(the honest number, torch tensors included); tracemalloc peak: Python "
                    "and NumPy allocations of a second forward+backward (torch tensors and "
                    "SuperLU's factors are not seen). Ratios: to the smallest K, for peak - "
                    "baseline and for the tracemalloc peak.",
                    "",
                    memory_table(results, iterations),
                ]
            )
        )
    if profile is not None:
        parts.append(
            "## Profile of CvxproxLayer (cProfile, top entries by cumulative time)\n\n" + profile
        )
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compare.torch_layers",
        description="CvxproxLayer vs cvxpylayers on a batched lasso: time and memory.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--skip-timing", action="store_true", help="no timing benchmark")
    parser.add_argument("--skip-memory", action="store_true", help="no memory benchmark")
    parser.add_argument("--reps", type=int, help="repetitions at every size (default per size)")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile CvxproxLayer at the largest size"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR / "torch_layers.md", help="(compare/results/...)"
    )
    parser.add_argument("--_timing-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--_memory-child", nargs=2, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> str:
    """Command-line entry point; returns the report."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args._timing_child:
        spec, out = args._timing_child
        timing_child(json.loads(spec), Path(out))
        return ""
    if args._memory_child:
        spec, out = args._memory_child
        memory_child(json.loads(spec), Path(out))
        return ""
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be at least 1")
    cases = QUICK_CASES if args.quick else FULL_CASES
    if args.reps is not None:
        cases = tuple(LassoCase(**{**asdict(c), "reps": args.reps}) for c in cases)
    log = sys.stderr
    for case in cases:
        print(f"size {case.label}", file=log)
    args.load_before = load_average()
    timings = None
    if not args.skip_timing:
        timings = [run_case(case, log) for case in cases]
    memory = None
    if not args.skip_memory:
        size, iterations = QUICK_MEMORY if args.quick else FULL_MEMORY
        memory = (size, iterations, run_memory(size, iterations, log))
    profile = None
    if args.profile:
        largest = max(cases, key=lambda c: (CVXPYLAYERS in c.layers, c.n * c.m))
        print(f"profiling CvxproxLayer at {largest.label} ...", file=log, flush=True)
        profile = profile_cvxprox(largest)
    args.load_after = load_average()
    text = render(args, cases, timings, memory, profile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}", file=log)
    return text


if __name__ == "__main__":
    main()
