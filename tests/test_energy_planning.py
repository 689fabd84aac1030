"""The capacity-expansion example (examples/energy_planning.py): data, model, matrix-form port.

The example is poorly scaled on purpose (costs in $/MW-year next to $/MWh, VOLL, MW
capacities); NABLAPROX must still match HiGHS to 1e-4 with default options.
"""

import importlib.util
import sys
from pathlib import Path

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp

import cvxprox  # noqa: F401
from cvxprox.solvers import hybrid

_PATH = Path(__file__).resolve().parents[1] / "examples" / "energy_planning.py"
_spec = importlib.util.spec_from_file_location("energy_planning", _PATH)
ep = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("energy_planning", ep)  # dataclasses look the module up by name
_spec.loader.exec_module(ep)

HAVE_HIGHS = "HIGHS" in cp.installed_solvers()
needs_highs = pytest.mark.skipif(not HAVE_HIGHS, reason="highspy not installed")


def _relative_gap(a: float, b: float) -> float:
    return abs(a - b) / max(1.0, abs(b))


@pytest.fixture(scope="module")
def small():
    """A 3-node, 24-hour instance solved by HiGHS (the reference value)."""
    system = ep.generate_system(3, 24, seed=0)
    prob, variables = ep.build_capacity_expansion(system)
    reference = None
    if HAVE_HIGHS:
        prob.solve(solver="HIGHS")
        assert prob.status == cp.OPTIMAL
        reference = prob.value
    return system, prob, variables, reference


def test_generate_system_is_deterministic_with_right_shapes() -> None:
    a, b = ep.generate_system(5, 30, seed=3), ep.generate_system(5, 30, seed=3)
    c = ep.generate_system(5, 30, seed=4)
    for field in ("demand", "cf_solar", "cf_wind", "gas_existing", "line_capex"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.lines == b.lines
    assert not np.array_equal(a.demand, c.demand)
    for field in ("demand", "cf_solar", "cf_wind"):
        assert getattr(a, field).shape == (5, 30)
    for field in ("gas_existing", "solar_capex", "gas_fuel_cost"):
        assert getattr(a, field).shape == (5,)
    n_lines = len(a.lines)
    assert a.line_existing.shape == a.line_capex.shape == (n_lines,)
    assert a.incidence().shape == (5, n_lines)
    assert (a.demand > 0).all()
    assert (0 <= a.cf_solar).all() and (a.cf_solar <= 1).all() and a.cf_solar.max() > 0.3
    assert (0 <= a.cf_wind).all() and (a.cf_wind <= 1).all()
    # Connected: the graph Laplacian has a single zero eigenvalue.
    B = a.incidence().toarray()
    assert np.sum(np.linalg.eigvalsh(B @ B.T) < 1e-9) == 1


@pytest.mark.parametrize("nodes, hours", [(2, 1), (2, 24), (4, 10), (9, 7)])
def test_problem_size_matches_built_problem(nodes: int, hours: int) -> None:
    prob, _ = ep.build_capacity_expansion(ep.generate_system(nodes, hours))
    assert prob.is_dcp() and prob.is_lp()
    assert prob.size_metrics.num_scalar_variables == ep.problem_size(nodes, hours)


@needs_highs
def test_nablaprox_matches_highs_and_balances_power(small) -> None:
    system, prob, variables, reference = small
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.OPTIMAL
    assert _relative_gap(prob.value, reference) <= 1e-4
    residual = ep.balance_residual(system, variables)
    assert np.abs(residual).max() <= 1e-4 * system.demand.max()


@needs_highs
def test_pdhg_takes_over_from_the_embeddings_point(small, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a budget of 1000 iterations the embedding (which settles this LP alone in
    about 2000) hands over near the optimal face: PDHG starts from its best iterate and
    the race still matches HiGHS."""
    _, prob, _, reference = small
    starts = []
    monkeypatch.setattr(hybrid, "EMBEDDING_BUDGET", 1000)

    class RecordingPDHG(hybrid.PDHG):
        def __init__(self, program, options, warm_start=None) -> None:  # noqa: ANN001
            starts.append(warm_start)
            super().__init__(program, options, warm_start)

    monkeypatch.setattr(hybrid, "PDHG", RecordingPDHG)
    prob.solve(solver="NABLAPROX", warm_start=False)
    stats = prob.solver_stats.extra_stats
    assert stats["handover_iteration"] == 1000
    assert stats["pdhg_iterations"] > 0
    assert len(starts) == 1 and set(starts[0]) == {"x", "z", "y"}
    assert prob.status == cp.OPTIMAL
    assert _relative_gap(prob.value, reference) <= 1e-4


@needs_highs
def test_nablaprox_matches_highs_on_seed_1() -> None:
    system = ep.generate_system(3, 24, seed=1)
    prob, _ = ep.build_capacity_expansion(system)
    prob.solve(solver="HIGHS")
    reference = prob.value
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.OPTIMAL
    assert _relative_gap(prob.value, reference) <= 1e-4


@needs_highs
def test_matrix_form_round_trip(small, tmp_path: Path) -> None:
    _, prob, _, reference = small
    for suffix in (".npz", ".mat"):
        lp = ep.load_matrix_lp(ep.save_matrix_lp(prob, tmp_path / f"lp{suffix}"))
        assert lp.size_metrics.num_scalar_variables == prob.size_metrics.num_scalar_variables
        lp.solve(solver="HIGHS")
        assert lp.status == cp.OPTIMAL
        assert _relative_gap(lp.value, reference) <= 1e-9
    lp.solve(solver="NABLAPROX")
    assert lp.status == cp.OPTIMAL
    assert _relative_gap(lp.value, reference) <= 1e-4


def _tiny_lp() -> dict:
    """min -x0 - 2 x1  s.t.  x0 + x1 <= 4,  x0 - x1 == 1,  -1 <= x0 <= 3,  x1 free: -5.5."""
    return {
        "c": np.array([-1.0, -2.0]),
        "A_ub": np.array([[1.0, 1.0]]),
        "b_ub": np.array([4.0]),
        "A_eq": sp.csr_matrix(np.array([[1.0, -1.0]])),
        "b_eq": np.array([1.0]),
        "lb": np.array([-1.0, -np.inf]),
        "ub": np.array([3.0, np.inf]),
    }


@pytest.mark.parametrize("suffix", [".npz", ".mat"])
def test_matrix_form_dense_sparse_and_infinite_bounds(tmp_path: Path, suffix: str) -> None:
    path = ep.save_matrix_lp(_tiny_lp(), tmp_path / f"tiny{suffix}")
    prob = ep.load_matrix_lp(path)
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(-5.5, abs=1e-5)
    np.testing.assert_allclose(prob.variables()[0].value, [2.5, 1.5], atol=1e-5)


def test_matrix_form_defaults_follow_linprog(tmp_path: Path) -> None:
    """Absent bounds mean x >= 0; an absent A_eq/b_eq pair means no equalities."""
    lp = _tiny_lp()
    for key in ("lb", "ub", "A_eq", "b_eq"):
        del lp[key]
    lp["c"] = np.array([1.0, -1.0])
    prob = ep.load_matrix_lp(ep.save_matrix_lp(lp, tmp_path / "defaults.npz"))
    prob.solve(solver="NABLAPROX")
    assert prob.value == pytest.approx(-4.0, abs=1e-5)


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda lp: lp.pop("c"), "c"),
        (lambda lp: lp.pop("b_ub"), "b_ub"),
        (lambda lp: lp.pop("A_eq"), "A_eq"),
        (lambda lp: lp.update(b_eq=np.array([1.0, 2.0])), "b_eq"),
        (lambda lp: lp.update(A_ub=np.ones((1, 3))), "A_ub"),
        (lambda lp: lp.update(lb=np.zeros(3)), "lb"),
        (lambda lp: lp.update(c=np.array([1.0, np.nan])), "c"),
        (lambda lp: lp.update(b_ub=np.array([np.nan])), "b_ub"),
        (lambda lp: lp.update(A_ub=np.array([[1.0, np.nan]])), "A_ub"),
        (lambda lp: lp.update(ub=np.array([np.nan, 1.0])), "ub"),
        (lambda lp: lp.update(lb=np.array([5.0, 0.0])), "lb, ub"),
        (lambda lp: lp.update(cost=np.ones(2)), "cost"),
    ],
)
@pytest.mark.parametrize("suffix", [".npz", ".mat"])
def test_bad_matrix_files_name_the_field(tmp_path: Path, suffix: str, change, field: str) -> None:
    lp = _tiny_lp()
    change(lp)
    path = ep.save_matrix_lp(lp, tmp_path / f"bad{suffix}")
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        ep.load_matrix_lp(path)


def test_bad_triplets_and_file_type(tmp_path: Path) -> None:
    lp = _tiny_lp()
    ep.save_matrix_lp({**lp, "A_eq": sp.csr_matrix(lp["A_eq"])}, tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as f:
        fields = {k: f[k] for k in f.files}
    del fields["A_eq_col"]
    np.savez(tmp_path / "broken.npz", **fields)
    with pytest.raises(ValueError, match="A_eq_col"):
        ep.load_matrix_lp(tmp_path / "broken.npz")
    with pytest.raises(ValueError, match="path"):
        ep.load_matrix_lp(tmp_path / "lp.txt")
