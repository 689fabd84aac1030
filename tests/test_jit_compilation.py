"""Which kernels a solve compiles: only those it runs, each once for every matrix it sees.

The solves run in a fresh process with an empty Numba cache (``NUMBA_CACHE_DIR`` in a
temporary directory), so that every kernel the solves reach is compiled there and shows in
its dispatcher's ``signatures`` (a kernel loaded from a warm cache would show nothing).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = """
import json

import cvxpy as cp
import numpy as np

import cvxprox  # noqa: F401
from cvxprox.solvers.admm.hsde import EmbeddingADMM
from cvxprox.backend.jit import cones, equilibrate, hsde, residuals

# The compiled loop of the embedding, not the plain one that small problems run while it
# is neither compiled nor cached (test_small_first_solve_skips_the_compiled_loop).
EmbeddingADMM.fused = True

rng = np.random.default_rng(0)
A = rng.standard_normal((15, 20))
x = cp.Variable(20)
b = A @ rng.uniform(0, 1, 20) + 0.1
lp = cp.Problem(cp.Minimize(rng.standard_normal(20) @ x), [A @ x <= b, x >= 0, x <= 1])
lp.solve(solver="NABLAPROX")
statuses = [lp.status]
compiled = {name: len(getattr(cones, name).signatures) for name in cones.__dict__
            if hasattr(getattr(cones, name), "signatures")}
# A QP: its P and the LP's "no P" placeholder, and SciPy's int32 or int64 indices, must
# all go through one compilation of each kernel.
F = rng.standard_normal((30, 20))
qp = cp.Problem(cp.Minimize(cp.sum_squares(F @ x - 1) + x[0]), [cp.sum(x) == 1, x >= 0])
qp.solve(solver="NABLAPROX")
statuses.append(qp.status)
counts = {
    "embedding_iterations": len(hsde.embedding_iterations.signatures),
    "project_cones": len(cones.project_cones.signatures),
    "ruiz_passes": len(equilibrate.ruiz_passes.signatures),
    "kkt_worst": len(residuals.kkt_worst.signatures),
}
print(json.dumps({"statuses": statuses, "after_lp": compiled, "counts": counts}))
"""


def _run_child(tmp_path: Path) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_lp_compiles_no_psd_exp_or_power_kernel_and_one_signature_each(tmp_path: Path) -> None:
    result = _run_child(tmp_path)
    assert result["statuses"] == ["optimal", "optimal"]
    after_lp = result["after_lp"]
    assert after_lp["project_cones"] == 1  # the LP did run the compiled projection
    for kernel in (
        "project_psd",
        "project_exp",
        "exp_root",
        "project_pow3d",
        "pow_root",
        "project_soc",
    ):
        assert after_lp[kernel] == 0, f"an LP compiled {kernel}"
    assert result["counts"] == {
        "embedding_iterations": 1,
        "project_cones": 1,
        "ruiz_passes": 1,
        "kkt_worst": 1,
    }


FIRST = """
import json

import cvxprox  # noqa: F401
from compare.first_solve import _lp
from cvxprox.backend.jit import hsde

iterations = []
for _ in range(2):
    lp = _lp(0)
    lp.solve(solver="NABLAPROX")
    iterations.append(lp.solver_stats.num_iters)
print(json.dumps({"status": lp.status, "iterations": iterations,
                  "compiled": len(hsde.embedding_iterations.signatures)}))
"""


def test_small_first_solve_skips_the_compiled_loop(tmp_path: Path) -> None:
    """With an empty kernel cache a small LP runs the embedding's plain loop (the compiled
    loop is not compiled: the first solve after installation skips its compilation) and
    takes the compiled loop's iterations (130, polished on a basis, as with a warm
    cache)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", FIRST], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"status": "optimal", "iterations": [130, 130], "compiled": 0}


def test_first_solve_script_measures_a_model(capsys) -> None:  # noqa: ANN001
    """``python -m compare.first_solve`` runs a model in a child with its own empty cache and
    reports its algorithm, times and compiled kernels (none for FISTA on a lasso)."""
    from compare.first_solve import main

    main(["--models", "lasso", "--no-write"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| lasso")]
    cells = [cell.strip() for cell in rows[-1].strip("|").split("|")]
    assert cells[1] == "fista" and cells[-2] == "optimal" and cells[-1] == "0: none"
    assert all(float(cell) > 0 for cell in cells[2:7])


def test_cached_kernels_are_dropped_when_a_source_of_the_package_changes(tmp_path: Path) -> None:
    """A kernel inlines the kernels it calls from other files, which Numba's own check (the
    time stamp of the kernel's file) does not see: the package's cached kernels are kept
    while every one of its files is unchanged and removed as soon as one changes."""
    from cvxprox.backend.jit import SOURCES_STAMP, drop_stale_kernels

    (tmp_path / "cones.py").write_text("x = 1\n")
    (tmp_path / "hsde.py").write_text("y = 2\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()

    def cached() -> list[str]:
        return sorted(p.name for p in cache.iterdir() if p.name != SOURCES_STAMP)

    (cache / "hsde.loop-12.py311.nbi").write_text("index")
    (cache / "hsde.loop-12.py311.1.nbc").write_text("code")
    (cache / "hsde.cpython-311.pyc").write_text("bytecode")
    assert drop_stale_kernels(tmp_path)  # no record of the sources: nothing is trusted
    assert cached() == ["hsde.cpython-311.pyc"]
    (cache / "hsde.loop-12.py311.nbi").write_text("index")
    assert not drop_stale_kernels(tmp_path)  # the same sources: the kernel stays
    assert cached() == ["hsde.cpython-311.pyc", "hsde.loop-12.py311.nbi"]
    (tmp_path / "cones.py").write_text("x = 3\n")  # another file than the kernel's
    assert drop_stale_kernels(tmp_path)
    assert cached() == ["hsde.cpython-311.pyc"]
