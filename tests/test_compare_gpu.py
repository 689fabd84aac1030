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
