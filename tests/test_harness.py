"""The benchmark harness (``compare/``): isolation, failure statuses, reports, suites.

Children are real processes (``python -m compare.child``), so a few tests take seconds;
the case builders they run are the module-level functions below.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import signal
import sys
import time
import types
from pathlib import Path

import cvxpy as cp
import numpy as np
import pytest

from compare import cli, report, tv_scale
from compare.cupdlpx_conif import CuPdlpx
from compare.harness import (
    Case,
    PeerRatio,
    Record,
    RunConfig,
    Suite,
    _dead_child_outcome,
    out_of_reach,
    run_suite,
)
from compare.references import ReferenceCache, reference_key
from compare.solve import ERROR, LICENCE_LIMIT, OUT_OF_MEMORY, Outcome, classify_error
from compare.solvers import SolveSettings, solver_options
from compare.suites import SIZED_SUITES, SUITES, energy, make_suite, structured

# ------------------------------------------------------------------ case builders


def small_lp() -> cp.Problem:
    """min x0 + 2 x1 s.t. x0 + x1 >= 1, x >= 0: optimum 1."""
    x = cp.Variable(2)
    return cp.Problem(cp.Minimize(x[0] + 2 * x[1]), [x[0] + x[1] >= 1, x >= 0])


def small_qp() -> cp.Problem:
    """min |x - 1|^2 s.t. sum(x) <= 1 on 3 variables: optimum 4/3."""
    x = cp.Variable(3)
    return cp.Problem(cp.Minimize(cp.sum_squares(x - 1)), [cp.sum(x) <= 1])


def dies() -> cp.Problem:
    """Kills its own process."""
    os._exit(3)


def sleeps() -> cp.Problem:
    """Outlives any time limit of these tests."""
    time.sleep(120)
    return small_lp()


def hogs_memory() -> cp.Problem:
    """Allocates 16 GB."""
    np.ones(2**31)
    return small_lp()


def wide_lp() -> cp.Problem:
    """An LP with 2500 variables, beyond a size-limited Gurobi licence."""
    x = cp.Variable(2500)
    return cp.Problem(cp.Minimize(cp.sum(x)), [x >= 1])


def _case(name: str, build, reference: float = 1.0, problem_class: str = "LP") -> Case:
    return Case(name=name, problem_class=problem_class, size=2, build=build, reference=reference)


# ---------------------------------------------------------------- process isolation


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Record]:
    """One run of a suite whose cases crash, hang, exhaust memory, and then succeed."""
    suite = Suite(
        name="failures",
        title="Failures",
        cases=(
            _case("dies", dies),
            _case("sleeps", sleeps),
            _case("hogs_memory", hogs_memory),
            _case("fine", small_lp),
        ),
    )
    config = RunConfig(
        eps_abs=1e-6,
        eps_rel=1e-6,
        timeout=0.5,
        memory_gb=2.0,
        out=tmp_path_factory.mktemp("results"),
        kill_factor=1.0,
        kill_grace=4.0,
    )
    records = run_suite(suite, ["CLARABEL"], config, progress=False)
    return {r.case: r for r in records}


def test_crashing_child_is_recorded(failing_run: dict[str, Record]) -> None:
    record = failing_run["dies"]
    assert record.status == "crash"
    assert "exit code 3" in record.note
    assert not record.success


def test_hanging_child_is_killed_as_timeout(failing_run: dict[str, Record]) -> None:
    record = failing_run["sleeps"]
    assert record.status == "timeout"
    assert "killed after 4.5 s" in record.note


def test_memory_limit_gives_out_of_memory(failing_run: dict[str, Record]) -> None:
    record = failing_run["hogs_memory"]
    assert record.status == OUT_OF_MEMORY
    assert "MemoryError" in record.note


def test_run_goes_on_after_failures(failing_run: dict[str, Record]) -> None:
    record = failing_run["fine"]
    assert record.status == cp.OPTIMAL and record.success
    assert record.rel_error < 1e-6
    assert record.memory_mb > 0 and record.iterations > 0
    assert record.compile_time >= 0 and record.solve_time > 0


def test_dead_child_classification() -> None:
    assert _dead_child_outcome(-signal.SIGSEGV, "").status == "crash"
    assert "SIGSEGV" in _dead_child_outcome(-signal.SIGSEGV, "").note
    assert _dead_child_outcome(1, "MemoryError: ...\n").status == OUT_OF_MEMORY
    assert _dead_child_outcome(-signal.SIGABRT, "std::bad_alloc").status == OUT_OF_MEMORY
    assert _dead_child_outcome(-signal.SIGKILL, "").status == OUT_OF_MEMORY


# -------------------------------------------------------------------- licence limit


class FakeGurobiError(Exception):
    """Stands in for gurobipy.GurobiError (which carries ``errno``)."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno


def test_error_classification() -> None:
    assert classify_error(FakeGurobiError(10010, "too large"))[0] == LICENCE_LIMIT
    message = "Model too large for size-limited license; visit https://gurobi.com"
    assert classify_error(RuntimeError(message))[0] == LICENCE_LIMIT
    assert classify_error(MemoryError())[0] == OUT_OF_MEMORY
    status, note = classify_error(ValueError("bad\n  value"))
    assert status == ERROR and note == "ValueError: bad value"


def test_gurobi_size_limited_licence(tmp_path: Path) -> None:
    pytest.importorskip("gurobipy")
    suite = Suite(name="wide", title="Wide", cases=(_case("wide", wide_lp, reference=2500.0),))
    config = RunConfig(eps_abs=1e-6, eps_rel=1e-6, timeout=30.0, out=tmp_path)
    (record,) = run_suite(suite, ["GUROBI"], config, progress=False)
    if record.status != LICENCE_LIMIT:  # a full licence: the solve just works
        assert record.success, record
    else:
        assert "size-limited license" in record.note


# -------------------------------------------------------------------------- reports


def test_tiny_suite_writes_reports(tmp_path: Path) -> None:
    suite = Suite(
        name="tiny",
        title="Tiny",
        cases=(_case("lp", small_lp), _case("qp", small_qp, 4 / 3, "QP")),
    )
    config = RunConfig(eps_abs=1e-6, eps_rel=1e-6, timeout=30.0, out=tmp_path)
    solvers = ["CLARABEL", "SCS"]
    records = run_suite(suite, solvers, config, progress=False)
    info = report.RunInfo(suite, config, solvers, {"CUPDLPX": "no CUDA GPU"})
    md, csv_path, png = report.write_report(records, info)

    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert set(Record.columns()) == set(rows[0])
    assert {r["case"] for r in rows} == {"lp", "qp"}
    assert all(r["success"] == "True" for r in rows), rows

    text = md.read_text()
    for column in ("attempted", "successes", "success rate (%)", "time sgm (s)", "sgm / best"):
        assert column in text
    assert "| CLARABEL | 2 | 2 | 100.0 |" in text
    assert "CUPDLPX unavailable (no CUDA GPU)" in text
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 1000


def _record(
    case: str,
    solver: str,
    seconds: float,
    success: bool,
    size: int = 10,
    iterations: int = 1,
    algorithm: str = "",
) -> Record:
    return Record(
        suite="s",
        case=case,
        group="",
        problem_class="LP",
        variables=size,
        constraints=1,
        solver=solver,
        status=cp.OPTIMAL if success else "timeout",
        objective=1.0,
        reference=1.0,
        rel_error=0.0,
        violation=0.0,
        compile_time=0.0,
        solve_time=seconds,
        iterations=iterations,
        memory_mb=1.0,
        success=success,
        note="",
        algorithm=algorithm,
    )


def test_iterations_next_to_the_anchor_of_each_method() -> None:
    records = [
        _record("a", "NABLAPROX", 1.0, True, iterations=300, algorithm="pdhg"),
        _record("a", "PDLP", 1.0, True, iterations=600),
        _record("a", "SCS", 1.0, True, iterations=50),
        _record("b", "NABLAPROX", 1.0, True, iterations=90, algorithm="admm"),
        _record("b", "PDLP", 1.0, True, iterations=10),
        _record("b", "SCS", 1.0, True, iterations=30),
        _record("c", "NABLAPROX", 1.0, True, iterations=90, algorithm="pdhg"),
        _record("c", "PDLP", 1.0, False, iterations=10),
        _record("d", "NABLAPROX", 1.0, True, iterations=5, algorithm="fista"),
        _record("d", "SCS", 1.0, True, iterations=5),
    ]
    records[7] = dataclasses.replace(records[7], status="optimal")  # fails the check only
    rows = report.anchor_ratios(records)
    assert [(r.case, r.anchor) for r in rows] == [("a", "PDLP"), ("b", "SCS"), ("c", "PDLP")]
    assert [r.strict for r in rows[:2]] == [0.5, 3.0] and math.isnan(rows[2].strict)
    assert rows[2].own == 9.0
    text = "\n".join(report.anchor_lines(records))
    assert "NABLAPROX pdhg / PDLP, both pass the suite's check: **0.50** (over 1 cases)" in text
    assert "NABLAPROX pdhg / PDLP, the anchor's own `optimal`: **4.75** (over 2 cases)" in text
    assert "NABLAPROX admm / SCS, both pass the suite's check: **3.00** (over 1 cases)" in text
    assert "| c | pdhg | 90 | PDLP | 10 | 9.00 * |" in text


def test_records_round_trip_through_csv(tmp_path: Path) -> None:
    records = [
        _record("a", "NABLAPROX", 1.5, True, iterations=300, algorithm="pdhg"),
        _record("b", "PDLP", 2.0, False, iterations=7),
    ]
    report.write_csv(tmp_path / "r.csv", records)
    assert report.read_csv(tmp_path / "r.csv") == records


def test_pdlp_reports_its_iterations() -> None:
    pytest.importorskip("ortools.pdlp.python.pdlp")
    from compare.solve import PdlpBoundsAsConstraints

    x = cp.Variable(3, nonneg=True)
    prob = cp.Problem(cp.Minimize(cp.sum(x)), [x[0] + 2 * x[1] + x[2] >= 2, x[2] <= 1])
    prob.solve(solver=PdlpBoundsAsConstraints())
    assert prob.status == cp.OPTIMAL and prob.value == pytest.approx(1.0, abs=1e-4)
    assert prob.solver_stats.num_iters > 0


def test_performance_ratios_and_summary_numbers() -> None:
    records = [
        _record("a", "NABLAPROX", 1.0, True),
        _record("a", "SCS", 2.0, True),
        _record("b", "NABLAPROX", 3.0, False),
        _record("b", "SCS", 4.0, True),
    ]
    ratios = report.performance_ratios(records, ["NABLAPROX", "SCS"])
    np.testing.assert_allclose(ratios["NABLAPROX"], [1.0, np.inf])
    np.testing.assert_allclose(ratios["SCS"], [2.0, 1.0])
    assert report.median_ratio(records, "NABLAPROX", "SCS") == (0.5, 1)
    assert math.isclose(report.shifted_geometric_mean([0.0, 0.0]), 0.0, abs_tol=1e-12)
    assert report.charged_times(records[2:3], timeout=60.0) == [60.0]


def test_ladder_line_names_the_first_failing_size() -> None:
    records = [
        _record("2x24", "HIGHS", 1.0, True, 371),
        _record("4x168", "HIGHS", 9.0, False, 5569),
        _record("2x24", "SCS", 1.0, True, 371),
    ]
    first, second = report.ladder_lines(records, ["HIGHS", "SCS"])
    assert "HIGHS: stopped being usable at 4x168 (5,569 variables: timeout)" in first
    assert "up to 2x24" in first
    assert "SCS: usable at every size" in second


def test_ladder_stops_only_when_out_of_time_or_memory() -> None:
    inaccurate = _record("2x24", "NABLAPROX", 1.0, False)
    inaccurate.status = cp.OPTIMAL  # an answer in time, judged inaccurate
    assert not out_of_reach(inaccurate, timeout=60.0)
    assert out_of_reach(_record("2x24", "SCS", 1.0, False), timeout=60.0)  # killed
    assert out_of_reach(_record("2x24", "SCS", 61.0, True), timeout=60.0)  # too slow


# ---------------------------------------------------------------- suites and options


def test_default_accuracy_passes_no_tolerances() -> None:
    defaults = SolveSettings(eps_abs=None, eps_rel=None, time_limit=10.0)
    assert solver_options("NABLAPROX", defaults) == {"time_limit": 10.0, "device": "cpu"}
    assert solver_options("CLARABEL", defaults) == {"time_limit": 10.0}
    assert solver_options("ECOS", defaults) == {}
    assert solver_options("HIGHS_IPM", defaults) == {
        "time_limit": 10.0,
        "highs_options": {"solver": "ipm"},
    }
    assert solver_options("HIGHS_SIMPLEX", defaults)["highs_options"] == {"solver": "simplex"}


def test_select_takes_cases_and_a_subset_per_group() -> None:
    cases = tuple(
        Case(f"{g}{i}", "LP", i, small_lp, group=g)
        for g in ("feasible", "infeasible")
        for i in range(3)
    )
    suite = Suite(name="s", title="S", cases=cases)
    assert [c.name for c in suite.select(subset=1).cases] == ["feasible0", "infeasible0"]
    assert [c.name for c in suite.select(["infeasible2"]).cases] == ["infeasible2"]
    with pytest.raises(ValueError, match="unknown case"):
        suite.select(["nope"])


def test_reference_cache_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "references.json"
    key = reference_key("zoo", "lasso", 200)
    ReferenceCache(path).put(key, 85.6, solver="CLARABEL")
    assert key == "zoo/lasso/200"
    assert ReferenceCache(path).get(key) == 85.6
    assert ReferenceCache(path).get("zoo/lasso/201") is None


def test_accuracy_maps_to_each_solvers_options() -> None:
    settings = SolveSettings(eps_abs=1e-3, eps_rel=0.0, time_limit=10.0)
    assert solver_options("CLARABEL", settings) == {
        "tol_gap_abs": 1e-3,
        "tol_gap_rel": 0.0,
        "tol_feas": 1e-3,
        "time_limit": 10.0,
    }
    assert "ipm_optimality_tolerance" not in solver_options("HIGHS", settings)
    assert "BarConvTol" not in solver_options("GUROBI", settings)
    tight = SolveSettings(eps_abs=1e-12, eps_rel=1e-12, time_limit=5.0, device="cuda")
    assert solver_options("GUROBI", tight)["FeasibilityTol"] == 1e-9
    assert solver_options("NABLAPROX", tight)["device"] == "cuda"
    assert solver_options("ECOS", tight) == {"abstol": 1e-12, "reltol": 1e-12, "feastol": 1e-12}


def test_nablaprox_options_from_the_command_line() -> None:
    args = cli.build_parser().parse_args(
        ["--suite", "zoo", "--nablaprox-option", "algorithm=pdhg", "--nablaprox-option=eps=1e-5"]
    )
    assert args.nablaprox_option == [("algorithm", "pdhg"), ("eps", 1e-5)]
    settings = SolveSettings(1e-4, 1e-4, 10.0, nablaprox_options=tuple(args.nablaprox_option))
    assert solver_options("NABLAPROX", settings)["algorithm"] == "pdhg"
    assert "algorithm" not in solver_options("SCS", settings)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--suite", "zoo", "--nablaprox-option", "pdhg"])


def test_default_solvers_follow_problem_classes() -> None:
    lp_suite = Suite(name="s", title="S", cases=(_case("lp", small_lp),))
    chosen, unavailable = cli.choose_solvers([], lp_suite)
    assert "ECOS" not in chosen and "ECOS" not in unavailable
    assert "CLARABEL" in chosen and "HIGHS" in chosen
    assert "CUPDLPX" in chosen or "CUPDLPX" in unavailable
    args = cli.build_parser().parse_args(["--suite", "netlib", "--time-limit", "10"])
    assert args.timeout == 10.0


STUB_ENERGY = """
import cvxpy as cp


def generate_system(nodes, hours, seed=0):
    return (nodes, hours)


def problem_size(nodes, hours):
    return nodes * hours


def build_capacity_expansion(system):
    x = cp.Variable(problem_size(*system), nonneg=True)
    return cp.Problem(cp.Minimize(cp.sum(x) + 1)), {"x": x}
"""


def test_energy_suite_against_a_stub_model(tmp_path: Path) -> None:
    stub = tmp_path / "energy_stub.py"
    stub.write_text(STUB_ENERGY)
    suite = energy.suite(["4x48", "2x3"], example=stub)
    assert [(c.name, c.size) for c in suite.cases] == [("2x3", 6), ("4x48", 192)]
    assert suite.ladder and suite.reference_solver.solver == "HIGHS"
    assert suite.cases[0].build().size_metrics.num_scalar_variables == 6
    # The default ladder aims at 1e3 ... 1e6 variables: nodes * hours here.
    assert energy.default_sizes(stub) == ["4x240", "8x1248", "16x6240", "32x8760"]
    with pytest.raises(ValueError, match="NODESxHOURS"):
        energy.parse_size("8by168")


# ------------------------------------------------------------------------- cuPDLPx


class FakeCupdlpxModel:
    """``cupdlpx.Model`` on top of SciPy's HiGHS, for the interface's data mapping."""

    def __init__(self, **data: object) -> None:
        self.data = data

    def setParams(self, **params: object) -> None:  # noqa: N802  (cuPDLPx's name)
        self.params = params

    def optimize(self) -> None:
        from scipy.optimize import linprog

        d = self.data
        A, l, u = d["constraint_matrix"], d["constraint_lower_bound"], d["constraint_upper_bound"]
        eq, up = l == u, np.isfinite(l) & (l != u)
        result = linprog(
            d["objective_vector"],
            A_ub=-A[up],
            b_ub=-l[up],
            A_eq=A[eq],
            b_eq=l[eq],
            bounds=list(zip(d["variable_lower_bound"], d["variable_upper_bound"], strict=True)),
        )
        self.Status, self.X, self.IterCount, self.Runtime = 0, result.x, result.nit, 0.0
        self.ObjVal = result.fun + d["objective_constant"]
        self.Pi = np.zeros(A.shape[0])


def test_cupdlpx_interface_maps_the_lp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupdlpx", types.SimpleNamespace(Model=FakeCupdlpxModel))
    x = cp.Variable(3, bounds=[-1.0, 3.0])  # passed to cuPDLPx as variable bounds
    constraints = [x[0] + x[1] == 2, x[0] - x[2] <= 1]
    prob = cp.Problem(cp.Minimize(x[0] - x[1] + x[2] + 6), constraints)
    prob.solve(solver=CuPdlpx(), TimeLimit=1.0)
    expected = prob.value
    prob.solve(solver="CLARABEL")
    assert prob.status == cp.OPTIMAL
    assert math.isclose(expected, prob.value, rel_tol=1e-6) and math.isclose(expected, 1.0)


def test_cli_runs_one_zoo_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # HiGHS's solver_stats.extra_stats is its own info object, not a dict.
    solvers = "clarabel,highs"
    argv = ["--suite", "zoo", "--cases", "lp", "--solvers", solvers, "--out", str(tmp_path)]
    cli.main([*argv, "--timeout", "30"])
    out = capsys.readouterr().out
    assert "| CLARABEL | 1 | 1 | 100.0 |" in out
    assert "| HIGHS | 1 | 1 | 100.0 |" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "references.json",
        "zoo.csv",
        "zoo.md",
        "zoo_profile.png",
    ]


# ------------------------------------------------------------------ structured suite


def test_structured_suite_registers_with_its_settings() -> None:
    assert "structured" in SUITES and "structured" in SIZED_SUITES
    suite = make_suite("structured")
    assert [(c.name, c.problem_class, c.size) for c in suite.cases] == [
        ("tv_denoising", "SOCP", 192 * 192),
        ("deconvolution", "SOCP", 6000),
        ("lasso", "QP", 8000),
        ("tv_inpainting", "SOCP", 128 * 128),
        ("tv_deblurring", "SOCP", 128 * 128),
    ]
    assert suite.solvers == ("NABLAPROX", "SCS", "CLARABEL")
    assert (suite.eps_abs, suite.eps_rel, suite.tol, suite.timeout) == (1e-4, 1e-4, 1e-3, 1200.0)
    assert suite.reference_solver.solver == "CLARABEL"
    assert suite.peer_ratio == PeerRatio("NABLAPROX", ("SCS", "CLARABEL"), 0.2)
    args = cli.build_parser().parse_args(["--suite", "structured"])
    assert args.tol is None  # the suite's 1e-3 applies


@pytest.mark.parametrize("name", list(structured.MODELS))
def test_structured_models_are_dcp_at_their_sizes(name: str) -> None:
    size = 16 if name.startswith("tv_") else 40
    prob = structured.MODELS[name](0, size=size)
    assert prob.is_dcp()
    (variable,) = prob.variables()
    assert variable.shape == ((size, size) if name.startswith("tv_") else (size,))
    assert prob.size_metrics.num_scalar_variables == structured.variables(name, size)
    (case,) = make_suite("structured", [f"{name}={size}"]).select([name]).cases
    assert case.size == structured.variables(name, size)
    assert case.build().size_metrics.num_scalar_variables == case.size


def test_structured_model_data() -> None:
    image = structured.phantom(64)
    assert image.min() >= 0 and image.max() <= 1 and len(np.unique(image)) == 6
    lasso = structured.build_lasso(0, size=40)  # A is 10 x 40
    assert (10, 40) in [c.shape for c in lasso.constants()]
    inpainting = structured.build_tv_inpainting(0, size=50)
    mask = inpainting.constraints[0].args[0].args[0].value
    assert 0.5 < 1 - mask.mean() < 0.7  # about 60% missing
    kernel = structured.gaussian_kernel()
    assert kernel.size == 31 and math.isclose(kernel.sum(), 1.0)
    blur, observed = structured.tv_deblurring_data(0, size=40)
    assert blur.shape == (7, 7) and math.isclose(blur.sum(), 1.0)
    assert np.allclose(blur, blur.T) and observed.shape == (40, 40)
    assert structured.parse_sizes(["lasso=800"])["lasso"] == 800
    with pytest.raises(ValueError, match="MODEL=SIZE"):
        structured.parse_sizes(["lasso800"])
    with pytest.raises(ValueError, match="MODEL=SIZE"):
        structured.parse_sizes(["nope=8"])


def _timed(case: str, solver: str, compile_time: float, solve_time: float, ok: bool) -> Record:
    record = _record(case, solver, solve_time, ok)
    record.compile_time = compile_time
    return record


def test_ratio_to_the_best_peer() -> None:
    records = [
        _timed("a", "NABLAPROX", 0.5, 0.5, True),  # 1 s against CLARABEL's 2 s
        _timed("a", "SCS", 1.0, 3.0, True),
        _timed("a", "CLARABEL", 1.5, 0.5, True),
        _timed("b", "NABLAPROX", 0.0, 1.0, True),  # 1 s against SCS's 10 s
        _timed("b", "SCS", 2.0, 8.0, True),
        _timed("b", "CLARABEL", 0.0, 0.5, False),  # a failure is no peer time
        _timed("c", "NABLAPROX", 0.0, 1.0, False),
        _timed("c", "SCS", 0.0, 1.0, True),
        _timed("d", "NABLAPROX", 0.0, 1.0, True),
        _timed("d", "SCS", 0.0, 1.0, False),
        _timed("d", "OSQP", 0.0, 0.1, True),  # not a peer
    ]
    rows = report.best_peer_ratios(records, "NABLAPROX", ["SCS", "CLARABEL"])
    assert [(r.case, r.peer) for r in rows] == [("a", "CLARABEL"), ("b", "SCS"), ("c", "SCS")] + [
        ("d", "-")
    ]
    np.testing.assert_allclose([r.ratio for r in rows], [0.5, 0.1, np.nan, np.nan])
    np.testing.assert_allclose([r.peer_time for r in rows], [2.0, 10.0, 1.0, np.nan])
    assert rows[2].note == "NABLAPROX failed (timeout)" and rows[3].note == "no peer solved it"
    assert math.isclose(report.geometric_mean([0.5, 0.1, math.nan]), math.sqrt(0.05))

    spec = PeerRatio("NABLAPROX", ("SCS", "CLARABEL"), 0.2)
    text = "\n".join(report.peer_ratio_lines(records, spec, ["NABLAPROX", "SCS", "CLARABEL"]))
    assert "## Time ratio NABLAPROX / min(SCS, CLARABEL)" in text
    assert "| a | 1.000 | CLARABEL | 2.000 | 0.500 |  |" in text
    assert "over the 2 of 4 cases compared: **0.224** (target <= 0.2: not met: not every" in text
    solved = report.peer_ratio_lines(records[:6], spec, ["NABLAPROX", "SCS"])  # SCS only
    assert "NABLAPROX / SCS over the 2 of 2 cases compared: **0.158** (target <= 0.2: met)" in (
        "\n".join(solved)
    )
    slow = [_timed("a", "NABLAPROX", 0.0, 0.5, True), _timed("a", "SCS", 0.0, 1.0, True)]
    missed = report.peer_ratio_lines(slow, spec, ["NABLAPROX", "SCS"])
    assert "**0.500** (target <= 0.2: not met)" in "\n".join(missed)
    assert report.peer_ratio_lines(records, spec, ["SCS", "CLARABEL"]) == []


def test_cli_runs_the_structured_suite_small(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--suite", "structured", "--cases", "deconvolution", "--sizes", "deconvolution=60"]
    cli.main([*argv, "--solvers", "clarabel,scs", "--out", str(tmp_path), "--timeout", "30"])
    out = capsys.readouterr().out
    assert "| CLARABEL | 1 | 1 | 100.0 |" in out and "| SCS | 1 | 1 | 100.0 |" in out
    text = (tmp_path / "structured.md").read_text()
    assert "eps_abs = 0.0001, eps_rel = 0.0001" in text and "<= 0.001" in text
    assert "structured/deconvolution/60" in (tmp_path / "references.json").read_text()


# ------------------------------------------------------------------------ tv_scale


TIME_REPORT = """some solver output
Command terminated by signal 9
\tCommand being timed: "python -m compare.child"
\tMaximum resident set size (kbytes): 204800
\tExit status: 0
"""


def test_tv_scale_reads_time_reports_and_picks_the_baseline() -> None:
    assert tv_scale.parse_time_report(TIME_REPORT) == (200.0, 9)
    assert math.isnan(tv_scale.parse_time_report("nothing")[0])
    assert tv_scale.strip_time_report(TIME_REPORT) == "some solver output"

    def run(solver: str, status: str, objective: float) -> tv_scale.ScaleRun:
        outcome = Outcome(status, objective, compile_time=1.0, solve_time=2.0)
        return tv_scale.ScaleRun(solver, outcome, 4.0, 100.0, "time -v")

    nabla, scs = run("NABLAPROX", "optimal", 101.0), run("SCS", "optimal", 100.5)
    clarabel = run("CLARABEL", "optimal", 100.0)
    assert tv_scale.baseline([nabla, scs, clarabel]) is clarabel
    late = run("CLARABEL", "timeout", math.nan)
    assert tv_scale.baseline([nabla, scs, late]) is nabla
    assert tv_scale.baseline([run("NABLAPROX", "error", math.nan), late]) is None
    table = tv_scale.result_table([nabla, scs, late])
    assert "| NABLAPROX | optimal | 101 | (base) | 3.00 | 1.00 | 4.0 | 100 |" in table
    assert "| SCS | optimal | 100.5 | 4.95e-03 |" in table
    assert "| CLARABEL | timeout | - | - |" in table


def test_tv_scale_runs_one_solver(tmp_path: Path) -> None:
    out = tmp_path / "tv_scale.md"
    (run,) = tv_scale.main(["--size", "8", "--solvers", "clarabel", "--out", str(out)])
    assert run.outcome.status == cp.OPTIMAL and run.peak_rss_mb > 10
    assert "| CLARABEL | optimal |" in out.read_text()


def test_versions_times_two_checkouts_in_their_own_interpreters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from compare import versions

    root = str(Path(versions.__file__).resolve().parent.parent)
    python = sys.executable
    argv = ["--base", root, "--cases", "eq_qp,lasso", "--rounds", "2", "--repeats", "1"]
    versions.main([*argv, "--python", python, "--base-python", python])
    out = capsys.readouterr().out
    assert f"this: {Path(root) / 'cvxprox'}" in out
    rows = [
        line
        for line in out.splitlines()
        if line.startswith("| eq_qp") or line.startswith("| lasso")
    ]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[2]) > 0
        assert cells[5] == "optimal / optimal"
    assert "geometric mean of the ratios" in out
    with pytest.raises(SystemExit):
        versions.main(
            [
                "--base",
                root,
                "--cases",
                "no_such_model",
                "--python",
                python,
                "--base-python",
                python,
            ]
        )
