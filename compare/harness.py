"""The benchmark runner: suites of cases, each solve in its own child process.

A :class:`Suite` is a declarative list of :class:`Case` objects: a name, a problem class,
a size, a picklable builder that runs in the child, and where the reference comes from
(a known value, or the suite's reference solver, whose results are cached). For every
case and every solver that applies to it, :func:`iter_suite` starts a fresh Python
process (``python -m compare.child``) with an address-space cap, kills it past a hard
wall-clock limit, and turns what came back, or did not, into a :class:`Record`:
a killed child is a ``"timeout"``, a dead one a ``"crash"`` (or ``"out of memory"``).
Nothing that happens in a child stops the run.

Test-only or ad-hoc suites run the same way: ``run_suite(Suite(...), ["SCS"], config)``.
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import cvxpy as cp
from tqdm import tqdm

from compare.references import ReferenceCache, reference_key
from compare.solve import (
    CRASH,
    LICENCE_LIMIT,
    OUT_OF_MEMORY,
    SOLVED,
    TIMEOUT,
    Outcome,
    SolveTask,
    Verdict,
)
from compare.solvers import NABLAPROX, SOLVERS, SolveSettings

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Statuses after which a ladder suite does not try the solver at larger sizes.
OUT_OF_REACH = (TIMEOUT, OUT_OF_MEMORY, CRASH, LICENCE_LIMIT)

#: Text in a dead child's stderr that means it ran out of memory.
MEMORY_MARKERS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "out of memory")


# --------------------------------------------------------------------------- suites


@dataclass(frozen=True)
class Case:
    """One benchmark problem.

    ``build`` runs in the child and must be picklable (a module-level function or a
    ``functools.partial`` of one). ``size`` is the number of scalar variables (it orders
    the cases and keys the reference cache). ``reference`` is a known optimal value;
    ``expect`` is the status a correct solver returns (``"infeasible"`` for infeasible
    problems); ``assess`` is the suite's own success test, run in the child on the
    solved problem (it replaces the objective and violation test); ``group`` splits a
    suite's summary (Netlib: feasible, infeasible).
    """

    name: str
    problem_class: str
    size: int
    build: Callable[[], cp.Problem]
    reference: float | None = None
    expect: str = cp.OPTIMAL
    assess: Callable[[cp.Problem], Verdict] | None = None
    group: str = ""


@dataclass(frozen=True)
class ReferenceSolver:
    """The solver and options that compute a suite's reference objectives."""

    solver: str
    options: dict[str, Any]
    description: str


@dataclass(frozen=True)
class PeerRatio:
    """A suite's report line: ``solver``'s time over the fastest of ``peers`` per case,
    and its geometric mean over the cases, next to ``target`` (None: no target)."""

    solver: str
    peers: tuple[str, ...]
    target: float | None = None


@dataclass(frozen=True)
class Suite:
    """A named list of cases with the settings that are the suite's own.

    ``eps_abs``/``eps_rel`` are the default accuracy asked of the solvers (None: each
    solver's own default tolerances), ``tol`` the default success tolerance (None:
    :attr:`RunConfig.tolerance`'s), ``solvers`` the default solver set (empty: every
    default solver that applies), ``timeout`` the default time limit; ``peer_ratio``
    adds a time ratio against the best of some peers to the report; ``notes`` are
    extra report lines; ``ladder`` marks a suite of one model at growing sizes, whose
    report says at which size each solver stopped being usable (a solver that ran out of
    time or memory, crashed or was refused by its licence at one size is not run at the
    larger ones: those are recorded as "skipped" failures).
    """

    name: str
    title: str
    cases: tuple[Case, ...]
    notes: tuple[str, ...] = ()
    reference_solver: ReferenceSolver | None = None
    eps_abs: float | None = None
    eps_rel: float | None = None
    ladder: bool = False
    solvers: tuple[str, ...] = ()
    timeout: float = 60.0
    tol: float | None = None
    peer_ratio: PeerRatio | None = None

    @property
    def stem(self) -> str:
        """File name stem of the suite's results (``maros-meszaros`` -> ``maros_meszaros``)."""
        return self.name.replace("-", "_")

    @property
    def classes(self) -> set[str]:
        """Problem classes of the suite's cases."""
        return {case.problem_class for case in self.cases}

    def select(self, names: Sequence[str] | None = None, subset: int | None = None) -> Suite:
        """The suite restricted to ``names`` and to the first ``subset`` cases of each group.

        Raises ValueError naming unknown cases.
        """
        cases = list(self.cases)
        if names:
            known = {case.name for case in cases}
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ValueError(f"unknown case(s) of suite {self.name}: {', '.join(unknown)}")
            cases = [case for case in cases if case.name in set(names)]
        if subset is not None:
            groups = dict.fromkeys(case.group for case in cases)
            cases = [c for g in groups for c in [c for c in cases if c.group == g][:subset]]
        return replace(self, cases=tuple(cases))


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class RunConfig:
    """Settings of one run of a suite.

    ``eps_abs = eps_rel = None`` keeps every solver's default tolerances. ``tol`` is the
    success tolerance on relative objective error and relative constraint violation
    (default ``max(eps_abs, eps_rel, 1e-4)``). A child is killed after
    ``timeout * kill_factor + kill_grace`` seconds (the solver's own limit is
    ``timeout``); reference solves get ``reference_factor`` times the time limit (a case
    whose reference cannot be computed in that time has none). ``repeats`` solves of a
    case keep the fastest (see ``SolveTask``). ``nablaprox_options`` are further
    NABLAPROX options (name, value) pairs, e.g. ``(("algorithm", "pdhg"),)``.
    """

    eps_abs: float | None
    eps_rel: float | None
    timeout: float = 60.0
    memory_gb: float = 8.0
    device: str = "cpu"
    nablaprox_options: tuple[tuple[str, Any], ...] = ()
    tol: float | None = None
    repeats: int = 1
    out: Path = RESULTS_DIR
    kill_factor: float = 1.5
    kill_grace: float = 15.0
    reference_factor: float = 2.0

    @property
    def tolerance(self) -> float:
        """The success tolerance in force."""
        if self.tol is not None:
            return self.tol
        return max(self.eps_abs or 0.0, self.eps_rel or 0.0, 1e-4)

    @property
    def settings(self) -> SolveSettings:
        """What every solver is asked for."""
        return SolveSettings(
            self.eps_abs, self.eps_rel, self.timeout, self.device, self.nablaprox_options
        )

    @property
    def hard_limit(self) -> float:
        """Wall-clock seconds after which a child is killed."""
        return self.timeout * self.kill_factor + self.kill_grace

    def memory_cap(self, solver: str) -> float:
        """Address-space cap (GB) of a child running ``solver``; 0 for GPU runs, since
        CUDA reserves far more virtual address space than it uses."""
        on_gpu = SOLVERS[solver].gpu or (solver == NABLAPROX and self.device != "cpu")
        return 0.0 if on_gpu else self.memory_gb


# ---------------------------------------------------------------------------- records


@dataclass
class Record:
    """One solve: a row of ``<suite>.csv``. Times are seconds, memory is MB."""

    suite: str
    case: str
    group: str
    problem_class: str
    variables: int
    constraints: float
    solver: str
    status: str
    objective: float
    reference: float
    rel_error: float
    violation: float
    compile_time: float
    solve_time: float
    iterations: float
    memory_mb: float
    success: bool
    note: str
    #: The method NABLAPROX ran (``solver_stats.extra_stats["algorithm"]``), else "".
    algorithm: str = ""

    @property
    def time(self) -> float:
        """Wall time of ``prob.solve`` (compile plus solve; NaN if not measured)."""
        return self.compile_time + self.solve_time

    @classmethod
    def columns(cls) -> list[str]:
        """CSV column names, in order."""
        return [f.name for f in fields(cls)]


def relative_error(value: float, reference: float) -> float:
    """``|value - reference| / max(1, |reference|)`` (NaN if either is not finite)."""
    if not (math.isfinite(value) and math.isfinite(reference)):
        return math.nan
    return abs(value - reference) / max(1.0, abs(reference))


def judge(case: Case, outcome: Outcome, reference: float, config: RunConfig) -> tuple[bool, str]:
    """Whether ``outcome`` solves ``case``, and a note on why not (or ``""``)."""
    if outcome.compile_time + outcome.solve_time > config.timeout:
        return False, "over the time limit"
    if case.expect != cp.OPTIMAL:
        passed = outcome.status == case.expect
        return passed, "" if passed else f"expected {case.expect}"
    if outcome.verdict is not None:
        return outcome.verdict, ""
    if outcome.status not in SOLVED:
        return False, ""
    if not math.isfinite(reference):
        return False, "no reference"
    tol = config.tolerance
    misses = [
        f"{what} {value:.1e} > {tol:g}"
        for what, value in (
            ("rel error", relative_error(outcome.objective, reference)),
            ("violation", outcome.violation),
        )
        if not value <= tol  # NaN fails too
    ]
    return not misses, ", ".join(misses)


def make_record(
    suite: Suite, case: Case, solver: str, outcome: Outcome, reference: float, config: RunConfig
) -> Record:
    """The record of one solve, judged."""
    success, why = judge(case, outcome, reference, config)
    return Record(
        suite=suite.name,
        case=case.name,
        group=case.group,
        problem_class=case.problem_class,
        variables=case.size,
        constraints=outcome.constraints,
        solver=solver,
        status=outcome.status,
        objective=outcome.objective,
        reference=reference,
        rel_error=relative_error(outcome.objective, reference),
        violation=outcome.violation,
        compile_time=outcome.compile_time,
        solve_time=outcome.solve_time,
        iterations=outcome.iterations,
        memory_mb=outcome.memory_mb,
        success=success,
        note="; ".join(n for n in (outcome.note, why) if n),
        algorithm=outcome.algorithm,
    )


# ---------------------------------------------------------------------- child process


def _child_environment() -> dict[str, str]:
    """The environment of a child: this process's, with its ``sys.path`` importable."""
    paths = [os.path.abspath(p or os.curdir) for p in sys.path]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _dead_child_outcome(returncode: int, stderr: str) -> Outcome:
    """The outcome of a child that exited without a result."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    last = lines[-1].strip()[:160] if lines else ""
    if any(marker in stderr for marker in MEMORY_MARKERS):
        return Outcome(status=OUT_OF_MEMORY, note=last)
    if returncode == -signal.SIGKILL:
        return Outcome(status=OUT_OF_MEMORY, note="killed by SIGKILL (the kernel's OOM killer?)")
    if returncode < 0:
        how = f"killed by {signal.Signals(-returncode).name}"
    else:
        how = f"exit code {returncode}"
    return Outcome(status=CRASH, note="; ".join(n for n in (how, last) if n))


def run_in_child(
    task: SolveTask, hard_limit: float, memory_gb: float, preload: Sequence[str] = ()
) -> Outcome:
    """Run ``task`` in a fresh ``python -m compare.child`` process and return its outcome,
    or a timeout, crash or out-of-memory outcome when it returns none."""
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        task_path, result_path = Path(tmp, "task.pkl"), Path(tmp, "result.pkl")
        stderr_path = Path(tmp, "stderr.txt")
        task_path.write_bytes(pickle.dumps(task))
        argv = [sys.executable, "-m", "compare.child", str(task_path), str(result_path)]
        argv += [str(memory_gb), *preload]
        with stderr_path.open("wb") as stderr:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=_child_environment(),
                start_new_session=True,  # its own process group, killed as a whole
            )
            try:
                child.wait(timeout=hard_limit)
            except subprocess.TimeoutExpired:
                return Outcome(status=TIMEOUT, note=f"killed after {hard_limit:g} s")
            finally:  # on a timeout, and on an interrupt of this process
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
        if result_path.exists():
            return pickle.loads(result_path.read_bytes())
        stderr_text = stderr_path.read_bytes()[-4000:].decode(errors="replace")
        return _dead_child_outcome(child.returncode, stderr_text)


# --------------------------------------------------------------------------- the run


class _SuiteRun:
    """One run of a suite: its configuration and reference cache."""

    def __init__(self, suite: Suite, config: RunConfig) -> None:
        self.suite = suite
        self.config = config
        self.cache = ReferenceCache(config.out / "references.json")

    def reference(self, case: Case) -> float:
        """The case's reference objective: known, cached, or solved now (NaN if none)."""
        if case.reference is not None:
            return case.reference
        ref = self.suite.reference_solver
        if ref is None or case.expect != cp.OPTIMAL:
            return math.nan
        key = reference_key(self.suite.name, case.name, case.size)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        task = SolveTask(
            case.build, case.problem_class, ref.solver, self.config.settings, options=ref.options
        )
        outcome = self._run(task, self.config.reference_factor * self.config.hard_limit)
        if outcome.status not in SOLVED:
            tqdm.write(f"{case.name}: reference solve {outcome.status} {outcome.note}")
            return math.nan
        self.cache.put(
            key,
            outcome.objective,
            solver=ref.solver,
            status=outcome.status,
            options=str(ref.options),
        )
        return outcome.objective

    def _run(self, task: SolveTask, hard_limit: float) -> Outcome:
        """Run ``task`` in a child with the solver's memory cap and preload."""
        preload = SOLVERS[task.solver].preload
        memory = self.config.memory_cap(task.solver)
        return run_in_child(task, hard_limit, memory, [preload] if preload else [])

    def solve(self, case: Case, solver: str, reference: float) -> Record:
        """Solve ``case`` with ``solver`` in a child and judge it."""
        task = SolveTask(
            case.build,
            case.problem_class,
            solver,
            self.config.settings,
            assess=case.assess,
            repeats=self.config.repeats,
        )
        outcome = self._run(task, self.config.hard_limit)
        return make_record(self.suite, case, solver, outcome, reference, self.config)


def applicable_solvers(case: Case, solvers: Sequence[str]) -> list[str]:
    """The solvers of ``solvers`` that are run on ``case``."""
    return [s for s in solvers if SOLVERS[s].applies_to(case.problem_class, case.size)]


def iter_suite(
    suite: Suite, solvers: Sequence[str], config: RunConfig, progress: bool = True
) -> Iterator[Record]:
    """Solve every case with every applicable solver, yielding records as they come."""
    run = _SuiteRun(suite, config)
    total = sum(len(applicable_solvers(case, solvers)) for case in suite.cases)
    failed: set[str] = set()  # on a ladder: solvers not run at larger sizes
    with tqdm(total=total, desc=suite.name, unit="solve", disable=not progress) as bar:
        for case in suite.cases:
            chosen = applicable_solvers(case, solvers)
            if not chosen:
                continue
            bar.set_postfix_str(f"{case.name} reference")
            reference = run.reference(case)
            for solver in chosen:
                bar.set_postfix_str(f"{case.name} {solver}")
                if solver in failed:
                    skipped = Outcome("skipped", note="out of time or memory at a smaller size")
                    record = make_record(suite, case, solver, skipped, reference, config)
                else:
                    record = run.solve(case, solver, reference)
                if suite.ladder and out_of_reach(record, config.timeout):
                    failed.add(solver)
                yield record
                bar.update()


def out_of_reach(record: Record, timeout: float) -> bool:
    """Whether a ladder stops trying the solver: killed, out of memory, crashed, refused
    by its licence, or not done within the time limit (an inaccurate answer in time is
    no reason to stop)."""
    return record.status in OUT_OF_REACH or not (record.solve_time < timeout)


def run_suite(
    suite: Suite, solvers: Sequence[str], config: RunConfig, progress: bool = True
) -> list[Record]:
    """All records of :func:`iter_suite`."""
    return list(iter_suite(suite, solvers, config, progress))
