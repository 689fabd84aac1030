"""``compare/gpu.py``'s parts that run without a GPU: the MPS file it hands cuPDLPx, the
reading of cuPDLPx's summary, the bytes an iteration must move, and the message when
there is no GPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cvxpy as cp
import numpy as np
import pytest

from compare import gpu


def test_mps_file_holds_the_lp(tmp_path: Path) -> None:
    """HiGHS reads the written file back to the LP's optimum (objective constant and
    variable bounds included)."""
    highspy = pytest.importorskip("highspy")
    rng = np.random.default_rng(0)
    x = cp.Variable(5)
    A = rng.standard_normal((4, 5))
    constraints = [A @ x <= 1, x >= -1, x <= 2, cp.sum(x) == 1]
    problem = cp.Problem(cp.Minimize(rng.random(5) @ x + 3), constraints)
    problem.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10)
    gpu.write_mps(problem, tmp_path / "lp.mps")
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.readModel(str(tmp_path / "lp.mps"))
    h.run()
    assert h.getInfo().objective_function_value == pytest.approx(problem.value, rel=1e-8)


def test_cupdlpx_summary() -> None:
    text = "Termination Reason: OPTIMAL\nRuntime (sec): 1.5e+00\nIterations Count: 1200\n"
    fields = gpu.parse_cupdlpx_summary(text)
    assert fields["Termination Reason"] == "OPTIMAL"
    assert float(fields["Runtime (sec)"]) == 1.5 and int(fields["Iterations Count"]) == 1200


def test_bytes_per_iteration() -> None:
    """Linear in the sizes, and the matrix counted twice (A and A') with its indices."""
    base = gpu.lp_bytes(10, 20, 0, 8)
    assert gpu.lp_bytes(10, 20, 100, 8) - base == 2 * 100 * 12
    assert gpu.lp_bytes(10, 20, 100, 4) < gpu.lp_bytes(10, 20, 100, 8)
    assert gpu.tv_bytes(1000, 8) == 2 * gpu.tv_bytes(1000, 4) == 11 * 1000 * 8


def test_without_a_gpu_it_says_what_is_missing() -> None:
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed")
    with pytest.raises(SystemExit, match="no GPU run possible: device='cuda' needs CuPy"):
        gpu.main(["--sections", "lp"])
    with pytest.raises(SystemExit):
        gpu.main(["--sections", "nonsense"])


def test_every_section_runs_with_the_cpu_standing_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole script on tiny sizes with the CPU in the GPU runs' place (no GPU here):
    every section prints its table, a failing run becomes a row, and the report is
    written; so that a GPU machine's minutes are not spent on the script's own errors."""
    monkeypatch.setattr(gpu, "check_cuda", lambda: "CPU standing in")
    monkeypatch.setattr(gpu, "peak_bandwidth", lambda override: (1e11, "test"))
    monkeypatch.setattr(
        gpu,
        "gpu_runs",
        lambda time_limit, extra: [("cpu as gpu", {"time_limit": time_limit, **extra})],
    )
    out = tmp_path / "gpu.md"
    argv = ["--lp-sizes", "2x24", "--image-sizes", "16", "--batch", "3", "--threads", "1",
            "--time-limit", "20", "--cpu-time-limit", "20", "--out", str(out)]  # fmt: skip
    assert gpu.main(argv) == 0
    text = out.read_text()
    for title in ("Energy LP", "2-D TV denoising", "2-D TV deblurring", "Batched lasso layer"):
        assert f"## {title}" in text
    rows = [line for line in text.splitlines() if line.startswith("| energy 2x24")]
    assert any("HiGHS" in row and "optimal" in row for row in rows)
    assert any("cpu as gpu" in row and "optimal" in row for row in rows)
    assert text.count("| 16x16 | cpu as gpu | optimal") == 2
    assert "| cpu | cpu (default) | optimal" in text
