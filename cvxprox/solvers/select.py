"""The choice of the method for a Program, and its run (``solve_program``).

Each choice comes with the one-line reason that ``verbose`` and
``cvxprox.compile`` show.
"""

from __future__ import annotations

import math
import time
from contextlib import AbstractContextManager
from dataclasses import replace
from functools import cache

import cvxpy.settings as s
import numpy as np
from threadpoolctl import ThreadpoolController

from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import AssembledProgram, Program
from cvxprox.operators.linops import has_fft
from cvxprox.solvers.admm.hsde import EmbeddingADMM
from cvxprox.solvers.admm.kkt import ADMM
from cvxprox.solvers.admm.split import HQS, StructuredADMM, project_bounds
from cvxprox.solvers.common.algorithm import FACTORIZATION_NNZ_LIMIT
from cvxprox.solvers.common.column_scaling import ColumnScaling
from cvxprox.solvers.common.fixed_columns import FixedColumns
from cvxprox.solvers.common.kkt_checks import KKTChecker
from cvxprox.solvers.common.polish import PolishSchedule, is_polishable
from cvxprox.solvers.common.result import LOOSE_CERTIFICATE, SolveResult, loose_factor
from cvxprox.solvers.common.scaling import RuizScaling
from cvxprox.solvers.common.termination import GAP_ROUNDING, exact_gap
from cvxprox.solvers.dual_fista import DualFISTA
from cvxprox.solvers.fista import FISTA
from cvxprox.solvers.hybrid import EmbeddingThenPDHG
from cvxprox.solvers.pdhg import PDHG, tv_in_a_box
from cvxprox.solvers.presolve import Presolved, crossing_singletons, presolve

_STRUCTURED_ONLY = ("ladmm", "hqs", "fista", "dual_fista")
# A presolved run whose postsolved point fails the original test resumes with tolerances
# this many times tighter, at most this many times (``_postsolve_tightening``).
_TIGHTEN = 0.1
_TIGHTEN_TRIES = 2


def choose_algorithm(program: Program, options: SolverOptions) -> tuple[type, str]:
    """The algorithm class to run and a one-line reason: a cone method on the assembled
    view when ``program.solve_assembled``, a method on the terms otherwise (on the
    program without its fixed variables when it has some, as ``solve_program`` runs it)."""
    if program.solve_assembled:
        return choose_cone_algorithm(program.assemble(), options)
    if _fused_tv_pdhg(program, options):
        return choose_structured_algorithm(program, options)
    fixed = FixedColumns(program)
    if fixed.applies:
        algorithm, reason = choose_structured_algorithm(fixed.reduce_program(program), options)
        return algorithm, f"{reason}; {fixed.describe()}"
    return choose_structured_algorithm(program, options)


def choose_cone_algorithm(program: AssembledProgram, options: SolverOptions) -> tuple[type, str]:
    """For a cone program.

    The choice is the same on every backend (NumPy, torch, CuPy). ``auto`` takes ADMM
    on the homogeneous self-dual embedding with adaptive row penalties for QPs, and for
    linear programs the same joined by PDHG after a budget (the embedding is fastest on
    most LPs and certifies infeasibility, restarted PDHG most robust on degenerate ones;
    the two take turns until one settles; PDHG alone when the KKT factor is predicted
    dear; see ``solvers/hybrid.py``), PDHG for float32 and for problems too large to
    factor, and ADMM with its cached factorization for the
    non-polyhedral cones (where it needs far fewer iterations than PDHG).

    QPs: on Maros-Meszaros (qpbenchmark's low accuracy, 10 s, ``python -m compare
    --suite maros-meszaros --solvers NABLAPROX --timeout 10``) ADMM solved 105 of 137,
    the embedding with the row multipliers of ``cvxprox.solvers.admm.penalty`` 123 (SCS
    3.3.1 122 in the same conditions). Of the embedding's 14 failures, 12 are time limits
    on problems whose KKT factor or iteration count is large (CVXQP1_L and CVXQP3_L
    factor to 4e6 nonzeros; CONT-200, CONT-201, CONT-300, BOYD1, BOYD2; QCAPRI, QGFRDXPN,
    QSHELL, QPILOTNO and STADAT1 stall), and POWELL20 and HUESTIS pass its own gap test
    and fail qpbenchmark's: their x'Px is 1e11 and 7e11, where 1e-3 is 65 and 8 units in
    the last place, and qpbenchmark's sum reads 5.6e-3 and 2.0e-3. On the zoo's small
    QPs the embedding takes a few more iterations than ADMM (markowitz 90 against 50, svm
    290 against 180, mpc 90 against 70; trend_filter 280 against 400), milliseconds each
    (``python -m compare.versions``: geometric mean of the zoo's time ratios 1.02).
    """
    if options.algorithm in _STRUCTURED_ONLY:
        raise ValueError(
            f"algorithm={options.algorithm!r} runs on structured programs, and this problem "
            "was canonicalized to cones (see cvxprox.compile(problem) for why); use 'auto', "
            "'admm' or 'pdhg'"
        )
    if options.algorithm == "admm":
        return ADMM, "forced by algorithm='admm'"
    if options.algorithm == "hsde":
        return EmbeddingADMM, "forced by algorithm='hsde'"
    if options.algorithm == "pdhg":
        return PDHG, "forced by algorithm='pdhg'"
    nnz = program.A.nnz + (0 if program.P is None else program.P.nnz)
    if nnz > FACTORIZATION_NNZ_LIMIT:
        return PDHG, f"auto: {nnz} nonzeros is too many to factor; matvec-only PDHG"
    if options.dtype == "float32":
        return PDHG, "auto: float32 iterations (ADMM factors in float64)"
    if program.is_polyhedral and not program.has_quadratic:
        return EmbeddingThenPDHG, "auto: a linear program"
    if program.is_polyhedral:
        return EmbeddingADMM, (
            f"auto: a QP, KKT matrix with {nnz} nonzeros factored once; the embedding's "
            "row penalties follow the residuals"
        )
    return ADMM, f"auto: KKT matrix with {nnz} nonzeros is cheap to factor once"


def choose_structured_algorithm(program: Program, options: SolverOptions) -> tuple[type, str]:
    """For a structured program.

    ``auto``: PDHG for 2-D TV in a box (``tv_in_a_box``, as TV inpainting: its step is
    one compiled pass over the image; ``_fused_tv_pdhg``); FISTA when the objective is
    smooth terms plus at most one prox term acting
    on x itself or through a 2-D TV (two products per iteration, no splitting; the TV's
    prox by an inner solver, so FISTA is passed over where FISTA on the dual applies:
    there the whole problem is that inner problem); ADMM when its x-update is one
    exact diagonal/FFT/DCT solve; FISTA on the dual when sums of squares on x make the
    objective strongly convex with a diagonal Hessian, the other terms entering through
    their conjugates' prox (two products per iteration at an accelerated rate, where an
    ADMM x-update would need a factorization or conjugate gradients); PDHG, i.e.
    linearized ADMM (products only), when an FFT operator would otherwise have to be
    assembled and factored; ADMM with a factored or conjugate-gradient x-update for the
    rest. HQS, a penalty method for plug-and-play
    priors, runs on request. The choice is the same on every backend.
    """
    if options.dtype == "float32":
        raise ValueError("dtype='float32' is available for cone programs (PDHG) only")
    if program.P is not None:
        raise ValueError(
            "a program with a quadratic part P is solved on its assembled view; "
            "set solve_assembled=True"
        )
    if options.algorithm == "hsde":
        raise ValueError(
            "algorithm='hsde' runs on cone programs, and this problem was kept structured "
            "(see cvxprox.compile(problem) for why); use structure='never' or another "
            "algorithm"
        )
    forced = {
        "admm": StructuredADMM,
        "hqs": HQS,
        "ladmm": PDHG,
        "pdhg": PDHG,
    }
    if options.algorithm in forced:
        return forced[options.algorithm], f"forced by algorithm={options.algorithm!r}"
    if _fused_tv_pdhg(program, options):
        return PDHG, (
            "auto: 2-D TV in a box (as in TV inpainting): PDHG's step is one compiled pass "
            "over the image, fixed pixels kept as bounds"
        )
    fista_ok, fista_reason = FISTA.applies(program)
    if options.algorithm == "fista":
        if not fista_ok:
            raise ValueError(f"algorithm='fista' does not apply: {fista_reason}")
        return FISTA, "forced by algorithm='fista'"
    if options.algorithm == "dual_fista":
        dual_ok, dual_reason = DualFISTA.applies(program)
        if not dual_ok:
            raise ValueError(f"algorithm='dual_fista' does not apply: {dual_reason}")
        return DualFISTA, "forced by algorithm='dual_fista'"
    if fista_ok and not (FISTA.inner_prox(program) and DualFISTA.applies(program)[0]):
        return FISTA, f"auto: {fista_reason}"
    gram = _exact_gram(program)
    if gram is not None:
        return StructuredADMM, f"auto: ADMM with an exact x-update ({gram} of the operators)"
    dual_ok, dual_reason = DualFISTA.applies(program)
    if dual_ok:
        return DualFISTA, (
            f"auto: {dual_reason}; FISTA on the dual takes two products per iteration at "
            "an O(1/k^2) rate, where ADMM's x-update would need a factorization or CG"
        )
    fft = [t.op.describe() for t in program.terms if has_fft(t.op)]
    if fft:
        return PDHG, (
            f"auto: {fft[0]} has no common diagonalization with the other operators; "
            "PDHG (linearized ADMM) keeps it an FFT product (an ADMM x-update would factor "
            "its matrix)"
        )
    return StructuredADMM, (
        "auto: ADMM; x-update by a factorization, or conjugate gradients if it would fill in"
    )


def _fused_tv_pdhg(program: Program, options: SolverOptions) -> bool:
    """Whether ``auto`` runs PDHG on the program as it is, fixed variables included: 2-D
    TV in a box (``tv_in_a_box``), where PDHG's iteration is the backend's fused step
    (``Backend.tv_pdhg_iteration``; the same choice on every backend). TV inpainting at
    default options, PDHG so against split ADMM without the fixed pixels (seconds,
    iterations): 64x64 0.09 s, 730 against 0.53 s, 1430; 128x128 0.31 s, 750 against
    2.1 s, 1670; 192x192 0.59 s, 540 against 7.8 s, 2430."""
    return options.algorithm == "auto" and tv_in_a_box(program) is not None


def _exact_gram(program: Program) -> str | None:
    """The kind of the summed Gram operator when every term's Gram is diagonal, FFT- or
    DCT-diagonal and they add up (ADMM's x-update is then one exact solve), else None."""
    grams = [t.op.gram() for t in program.terms]
    if not grams or any(g is None for g in grams):
        return None
    total = grams[0]
    for gram in grams[1:]:
        total = None if total is None else total + gram
    return None if total is None else type(total).__name__


@cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def single_threaded_blas() -> AbstractContextManager:
    """A context in which BLAS runs on one thread.

    The solves and the adjoint's factorizations are small or sequential; a threaded BLAS
    only adds synchronization, and on a loaded machine its spinning threads can make one
    product or factorization twenty to a hundred times slower.
    """
    return _blas().limit(limits=1, user_api="blas")


def solve_program(
    program: Program,
    options: SolverOptions,
    warm_start: dict | None = None,
) -> SolveResult:
    """Solve a program with the algorithm the options ask for (or the automatic choice).

    With ``program.solve_assembled`` a cone method solves the assembled view, and the
    result is in its variables and rows (x then the epigraph variables; the view's
    ``n_program`` and ``term_rows`` locate the program's own). Otherwise a method on the
    terms runs; a program whose column norms spread over more than
    ``ColumnScaling.SPREAD`` is then solved in equilibrated variables x~ = x / E and
    mapped back, and one with fixed variables (l_j = u_j) without them
    (``FixedColumns``). A warm start of other shapes than the solved form's is ignored.

    The iterations are vector operations (dot products, axpys, matrix-vector products)
    for which a threaded BLAS only adds synchronization: BLAS runs single-threaded during
    the solve (``single_threaded_blas``).
    """
    return _within_rounding(_solve(program, options, warm_start), options, program)


def _solve(program: Program, options: SolverOptions, warm_start: dict | None) -> SolveResult:
    """``solve_program`` before the accuracy report (``_within_rounding``)."""
    solved = program.assemble() if program.solve_assembled else program
    if warm_start is not None and (
        warm_start["x"].shape != (solved.n,) or warm_start["y"].shape != (solved.m,)
    ):
        warm_start = None
    if not program.solve_assembled:
        certificate = crossing_singletons(program) if options.presolve else None
        if certificate is not None:
            if options.verbose:
                print("presolve: two one-entry constraint rows cross: infeasible")
            info = {"reason": "two one-entry constraint rows cross (presolve)"}
            return SolveResult(
                s.INFEASIBLE, None, None, certificate, "presolve", 0, 0.0, 0.0, info=info
            )
        if _fused_tv_pdhg(program, options):
            return _run(program, options, warm_start)
        fixed = FixedColumns(program)
        if fixed.applies:
            return _solve_fixed_eliminated(program, fixed, options, warm_start)
        scaling = ColumnScaling(program)
        if scaling.needed:
            return _solve_column_scaled(program, scaling, options, warm_start)
        return _run(program, options, warm_start)
    if options.presolve:
        return _solve_presolved(solved, options, warm_start)
    return _run(solved, options, warm_start)


def _within_rounding(result: SolveResult, options: SolverOptions, program: Program) -> SolveResult:
    """An optimal result whose gap tolerance lies below the rounding level of the
    computed gap (``KKTError.gap_verified``) stays optimal when its gap, computed without
    rounding on the cone program (``exact_gap``), is within the tolerance with room for
    the maps to the user's values (``_exact_gap``), or, for an LP or QP, when a point
    polished from it passes the test with such a gap (``_polished_for_the_gap``);
    otherwise it becomes optimal_inaccurate: its gap was checked to that level, not to
    the one asked (``info["inaccurate"]`` says so). The time this takes counts in the
    solve time."""
    kkt = result.kkt
    if result.status != s.OPTIMAL or kkt is None or kkt.gap_verified:
        return result
    started = time.perf_counter()
    gap, spread = _exact_gap(result, program)
    if gap + spread <= kkt.gap_tol:
        result.info["exact_gap"] = gap
        result.solve_time += time.perf_counter() - started
        if options.verbose:
            print(f"gap {gap:.2e} computed without rounding (spread {spread:.1e}): verified")
        return result
    polished = _polished_for_the_gap(result, options, program, started)
    result.solve_time += time.perf_counter() - started
    if polished:
        return result
    result.status = s.OPTIMAL_INACCURATE
    result.info["inaccurate"] = (
        f"the gap tolerance {kkt.gap_tol:.1e} is below the rounding level "
        f"{kkt.gap_floor:.1e} of the computed gap (objective terms up to "
        f"{kkt.gap_floor / GAP_ROUNDING:.1e}); the gap {kkt.gap:.1e} was checked to that "
        "level"
        + (
            f", and computed without rounding it is {gap:.1e} (with {spread:.1e} of room for "
            "the maps to the user's values)"
            if math.isfinite(gap)
            else ""
        )
        + ": raise eps_rel or eps_abs"
    )
    if options.verbose:
        print(f"status: optimal_inaccurate: {result.info['inaccurate']}")
    return result


def _polished_for_the_gap(
    result: SolveResult, options: SolverOptions, program: Program, started: float
) -> bool:
    """Whether the result's point, polished on the LP or QP it solves (``PolishSchedule``
    from its x, z and y; ``started`` is when this check began), passes the termination
    test with its gap, computed without rounding, within the tolerance; the result then
    holds the polished point (and its warm start). The iterations' point can stall at a
    gap far above the rounding of the one computed without it (Maros-Meszaros' POWELL20
    at eps_abs = 1e-3, eps_rel = 0: 1.8e-3 on an objective of 5.2e10), while a polished
    point is exact to its own rounding (1.6e-4).

    The attempt has its own budget: it ends before the run's time limit and takes at
    most a quarter of the run's time so far (or ``POLISH_ALLOWANCE``). The polished point
    must pass the test in the units of both equilibrations the methods take theirs from
    (Ruiz, as ADMM, the embedding and presolve's original test; Ruiz with Pock-Chambolle,
    as PDHG), so that it is never tested more loosely than the run's own point was."""
    cone = _cone_of_point(result, program)
    if cone is None or not is_polishable(cone) or result.z is None:
        return False
    elapsed = result.setup_time + result.solve_time + (time.perf_counter() - started)
    now = time.perf_counter()
    schedule = PolishSchedule(
        cone,
        _original_checker(cone, options),
        deadline=now + options.time_limit - elapsed,
        started=now - elapsed,
    )
    found = schedule.attempt(result.iterations, result.z, result.y, result.x)
    result.info["polish_attempts"] = result.info.get("polish_attempts", 0) + schedule.attempts
    if found is None:
        return False
    (x, z, y), err = found
    pdhg_units = RuizScaling(cone, options.scaling_iters, pock_chambolle=True)
    also = KKTChecker(cone, pdhg_units, options).evaluate(x, z, y)
    gap, _ = exact_gap(cone.c, cone.b, cone.P, x, y)
    if not (also.converged and gap <= min(err.gap_tol, also.gap_tol)):
        return False
    result.x, result.z, result.y, result.kkt = x, z, y, err
    result.info["polished"] = True
    result.info["exact_gap"] = gap
    warm = result.info.get("warm_start")
    if warm is not None and warm["x"].shape == x.shape and warm["y"].shape == y.shape:
        result.info["warm_start"] = {**warm, "x": x, "z": z, "y": y}
    if options.verbose:
        print(f"polished: gap {gap:.2e} computed without rounding: verified")
    return True


def _exact_gap(result: SolveResult, program: Program) -> tuple[float, float]:
    """``exact_gap`` of the result's point on the cone program it solves (NaN for a
    method on the terms, whose gap is not a cone program's), and the room to leave for
    the maps that carry the point to the user's values: none for an LP or QP, whose
    variable values and constraint duals are entries of x and -y (``cone2prox``), else
    ``exact_gap``'s spread (a PSD cone's duals are rescaled)."""
    cone = _cone_of_point(result, program)
    if cone is None:
        return math.nan, math.nan
    gap, spread = exact_gap(cone.c, cone.b, cone.P, result.x, result.y)
    return gap, 0.0 if cone.is_polyhedral and math.isfinite(gap) else spread


def _cone_of_point(result: SolveResult, program: Program) -> AssembledProgram | None:
    """The cone program whose variables and rows the result's x and y are, or None (a
    method on the terms, or no point)."""
    if not program.solve_assembled or result.x is None or result.y is None:
        return None
    cone = program.assemble()
    if (result.x.shape, result.y.shape) != ((cone.n,), (cone.m,)):
        return None
    return cone


def _run(
    program: Program | AssembledProgram, options: SolverOptions, warm_start: dict | None
) -> SolveResult:
    """Run the chosen method on a structured Program or an assembled view."""
    if isinstance(program, AssembledProgram):
        algorithm, reason = choose_cone_algorithm(program, options)
    else:
        algorithm, reason = choose_structured_algorithm(program, options)
    with single_threaded_blas():
        return algorithm(program, options, warm_start).solve(reason)


def _solve_presolved(
    program: AssembledProgram, options: SolverOptions, warm_start: dict | None
) -> SolveResult:
    """Presolve (``cvxprox.solvers.presolve``), solve the reduced program, postsolve.

    The postsolved point is tested on the original program: a reduced solve's
    ``optimal`` stands only when the original's KKT test passes too, else it becomes
    ``optimal_inaccurate`` (within ``loose_factor``) or ``user_limit``. So is a
    certificate, presolve's own or a postsolved one (``_verify_certificate``); presolve's
    verdict is dropped when its certificate fails, and the program solved as it is.

    Before ADMM alone presolve does not run: its KKT factorization takes bound rows,
    fixed columns and duplicate rows as they are. On Maros-Meszaros (eps 1e-3, 10 s,
    both in one run) ADMM solves 106 of 137 problems with presolve and without (with it
    QSHIP08L and QSHIP12L, without it QPCBOEI2 and QGROW22), in the same iterations
    (geometric mean 1.00 over the 104 both solve), and presolve costs a small model
    0.2-1 ms per solve. PDHG, which projects the bounds presolve makes, the embedding then
    PDHG (LPs) and the embedding (QPs; Maros-Meszaros measured with presolve) presolve.
    """
    t0 = time.perf_counter()
    if choose_cone_algorithm(program, options)[0] is ADMM:
        if options.verbose:
            print("presolve: skipped (ADMM's KKT factorization takes the rows as they are)")
        return _run(program, options, warm_start)
    presolved = presolve(program)
    if options.verbose:
        print(presolved.stats.describe())
    reduced = presolved.program
    if presolved.status is None and (presolved.stats.removed == 0 or reduced.n == 0):
        return _run(program, options, warm_start)
    presolve_time = time.perf_counter() - t0
    if presolved.status is not None:
        y = presolved.certificate if presolved.status == s.INFEASIBLE else None
        x = presolved.certificate if presolved.status == s.UNBOUNDED else None
        result = SolveResult(presolved.status, x, None, y, "presolve", 0, 0.0, presolve_time)
        checker = _original_checker(program, options)
        _verify_certificate(result, checker, options)
        if result.status == s.SOLVER_ERROR:
            if options.verbose:
                print(f"presolve: {result.info['certificate_check']}; solving without it")
            return _run(program, options, warm_start)
    else:
        # The reduced program is tested as the original will be.
        checker = _original_checker(program, options)
        reduced.units = presolved.reduced_units(checker.units)
        result = _run(reduced, options, presolved.reduce_warm_start(warm_start))
        result = _postsolve_tightening(presolved, reduced, result, options, t0, checker)
        result.setup_time += presolve_time
    result.info["presolve"] = presolved.stats.describe()
    return result


def _postsolve_tightening(
    presolved: Presolved,
    reduced: AssembledProgram,
    result: SolveResult,
    options: SolverOptions,
    t0: float,
    checker: KKTChecker,
) -> SolveResult:
    """``_postsolve`` of the reduced result; while the reduced run ended optimal but the
    postsolved point fails the original test (the reduced program is tested with the
    original's units and magnitudes, ``Presolved.reduced_units``, but the rows presolve
    removed are not tested, and the gap's magnitudes c'x and b'y are the reduced
    program's shifted by the fixed columns' objective, not the original's sums), the
    reduced program is solved again from where it stopped with tolerances ``_TIGHTEN``
    times tighter, at most ``_TIGHTEN_TRIES`` times and within what is left of
    ``max_iters`` and ``time_limit``. Iterations and times add up over the runs.
    ``checker`` is the original's (``_original_checker``)."""
    for attempt in range(_TIGHTEN_TRIES + 1):
        warm = result.info.get("warm_start")
        warm = None if warm is None else dict(warm)
        _postsolve(presolved, result, options, checker)
        iterations_left = options.max_iters - result.iterations
        time_left = options.time_limit - (time.perf_counter() - t0)
        if (
            "presolve_check" not in result.info
            or warm is None
            or attempt == _TIGHTEN_TRIES
            or iterations_left <= 0
            or time_left <= 0
        ):
            return result
        factor = _TIGHTEN ** (attempt + 1)
        tighter = replace(
            options,
            eps_abs=options.eps_abs * factor,
            eps_rel=options.eps_rel * factor,
            max_iters=iterations_left,
            time_limit=time_left,
        )
        again = _run(reduced, tighter, warm)
        again.iterations += result.iterations
        again.solve_time += result.solve_time
        again.setup_time += result.setup_time
        result = again
    return result


def _original_checker(original: AssembledProgram, options: SolverOptions) -> KKTChecker:
    """The checker of the program before presolve (its Ruiz scaling)."""
    return KKTChecker(original, RuizScaling(original, options.scaling_iters), options)


def _verify_certificate(result: SolveResult, checker: KKTChecker, options: SolverOptions) -> None:
    """Test a certificate of the program before presolve (``result.y`` a Farkas vector,
    ``result.x`` an unboundedness direction, as presolve or a postsolve made it) with that
    program's tests (``KKTChecker.primal_infeasibility`` / ``dual_infeasibility``, no
    radius test: there is no iterate), in place: an INFEASIBLE or UNBOUNDED certificate
    that fails at ``eps_infeas`` but passes at ``LOOSE_CERTIFICATE`` becomes *_INACCURATE,
    one that fails there too SOLVER_ERROR (``info["certificate_check"]`` says why)."""
    infeasible = result.status in (s.INFEASIBLE, s.INFEASIBLE_INACCURATE)
    test = checker.primal_infeasibility if infeasible else checker.dual_infeasibility
    vector = result.y if infeasible else result.x
    if (
        result.status in (s.INFEASIBLE, s.UNBOUNDED)
        and test(vector, options.eps_infeas) is not None
    ):
        return
    if test(vector, LOOSE_CERTIFICATE) is not None:
        result.status = s.INFEASIBLE_INACCURATE if infeasible else s.UNBOUNDED_INACCURATE
        return
    result.status = s.SOLVER_ERROR
    result.x = result.y = None
    kind = "Farkas certificate" if infeasible else "unboundedness direction"
    result.info["certificate_check"] = f"the {kind} fails the original program's test"


def _postsolve(
    presolved: Presolved,
    result: SolveResult,
    options: SolverOptions,
    checker: KKTChecker,
) -> None:
    """The reduced program's result mapped to the original program, in place: x, y,
    z = Pi_K(A x - b) and the KKT error there (``checker``: the original's); the
    certificates through the same maps, then tested on the original
    (``_verify_certificate``)."""
    original = presolved.original
    if result.status in (s.INFEASIBLE, s.INFEASIBLE_INACCURATE):
        result.y = presolved.postsolve(None, result.y, certificate=True)[1]
        _verify_certificate(result, checker, options)
        return
    if result.status in (s.UNBOUNDED, s.UNBOUNDED_INACCURATE):
        direction = np.zeros(original.n)
        direction[presolved.cols] = result.x
        result.x = direction
        _verify_certificate(result, checker, options)
        return
    if result.x is None or result.y is None:
        return
    x, y = presolved.postsolve(result.x, result.y)
    z = original.cone.project(original.A @ x - original.b)
    kkt = checker.evaluate(x, z, y)
    result.x, result.y, result.z, result.kkt = x, y, z, kkt
    if result.status == s.OPTIMAL and not kkt.converged:
        fits = kkt.normalized <= loose_factor(options)
        result.status = s.OPTIMAL_INACCURATE if fits else s.USER_LIMIT
        result.info["presolve_check"] = "the postsolved point fails the original KKT test"
    warm = result.info.get("warm_start")
    if warm is not None:
        warm.update(x=x, y=y, z=z)


def _solve_column_scaled(
    program: Program,
    scaling: ColumnScaling,
    options: SolverOptions,
    warm_start: dict | None,
) -> SolveResult:
    """Solve the program in x~ = x / E (``ColumnScaling``) and map x back; z, y (and a
    Farkas certificate) are unchanged, an unboundedness direction maps like x."""
    E = scaling.E
    if warm_start is not None and "x" in warm_start:
        warm_start = {**warm_start, "x": warm_start["x"] / E}
    result = _run(scaling.scale_program(program), options, warm_start)
    if result.x is not None:
        result.x = E * result.x
        if result.status != s.UNBOUNDED:
            # In the box exactly (E (l / E) may round off l).
            result.x = project_bounds(program, result.x)
    warm = result.info.get("warm_start")
    if warm is not None:
        warm["x"] = result.x
    result.info["column_scaling"] = True
    return result


def _solve_fixed_eliminated(
    program: Program,
    fixed: FixedColumns,
    options: SolverOptions,
    warm_start: dict | None,
) -> SolveResult:
    """Solve the program without its fixed variables (``FixedColumns``) and map x back.

    z and y (or a Farkas certificate) are the program's own; an unboundedness direction
    is zero on the fixed variables. The reduced program's test is the program's: the
    same rows A x - b - z = A_F x_F - (b - A x_0) - z, the same gap (x_0'(c + A'y)
    moves between the objective's constant and the bound term l'lam_l - u'lam_u), and
    a fixed variable's dual residual is zero for any reduced cost (lam_l - lam_u = r_j
    when l_j = u_j); only the rows' magnitudes in the relative tolerances are the
    reduced rows'.
    """
    reduced = fixed.reduce_program(program)
    if options.verbose:
        print(fixed.describe())
    result = solve_program(reduced, options, fixed.reduce_warm_start(warm_start))
    result.info["fixed_columns"] = program.n - fixed.free.size
    if result.x is None:
        return result
    unbounded = result.status in (s.UNBOUNDED, s.UNBOUNDED_INACCURATE)
    result.x = fixed.expand(result.x, direction=unbounded)
    warm = result.info.get("warm_start")
    if warm is not None:
        fixed.expand_warm_start(warm)
    return result
