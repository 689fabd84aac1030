"""The fused dual FISTA iterations for 2-D TV (``cvxprox/backend/jit/dual_tv.py``) against
the plain ones (``DualIterations`` in ``cvxprox/solvers/dual_fista.py``), their reference:
the same iterates after many iterations, with and without bounds, for both forms of TV,
and the programs it does not take."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp

import cvxprox
from cvxprox.backend import Backend, get_backend
from cvxprox.backend.jit import dual_tv
from cvxprox.backend.jit.dual_tv import FusedTVIterations, column_blocks, tv_grid
from cvxprox.ir.program import Program, Term
from cvxprox.operators.linops import MatrixOp, TVDifferences
from cvxprox.solvers import dual_fista
from cvxprox.solvers.common.terms import TermLayout
from cvxprox.solvers.dual_fista import (
    FUSED_FROM,
    DiagonalQuadratic,
    DualFISTA,
    DualIterations,
    ProxTerms,
    dual_lipschitz,
    split_terms,
)

ITERATIONS = 150


def _image(rows: int, cols: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    image = np.zeros((rows, cols))
    image[rows // 4 : 3 * rows // 4, cols // 3 :] = 1.0
    return image + 0.3 * rng.standard_normal((rows, cols))


def _anisotropic(X: cp.Variable, axes: tuple[int, int]) -> cp.Expression:
    return sum(cp.sum(cp.abs(cp.diff(X, axis=axis))) for axis in axes)


def _problem(
    form: str, bounded: bool, rows: int = 13, cols: int = 17, weighted: bool = True
) -> cp.Problem:
    """TV denoising; ``weighted``: a different weight on every pixel's square (a
    diagonal H that is not uniform)."""
    noisy = _image(rows, cols)
    X = cp.Variable((rows, cols))
    weights = np.linspace(0.5, 2.0, rows * cols).reshape((rows, cols), order="F")
    if not weighted:
        weights = np.full((rows, cols), 1.5)
    fit = 0.5 * cp.sum_squares(cp.multiply(np.sqrt(weights), X - noisy))
    tv = {
        "isotropic": lambda: cp.tv(X),
        "anisotropic": lambda: _anisotropic(X, (0, 1)),
        "anisotropic_swapped": lambda: _anisotropic(X, (1, 0)),
    }[form]()
    constraints = [X >= 0, X <= 1] if bounded else []
    return cp.Problem(cp.Minimize(fit + 0.15 * tv), constraints)


def _program(prob: cp.Problem) -> Program:
    return cvxprox.compile(prob, algorithm="dual_fista", structure="always").program


def _iterations(
    program: Program, fuse: bool, backend: Backend | None = None, single: bool = False
) -> DualIterations | FusedTVIterations:
    """The iterations ``DualFISTA.iterations`` picks, from y = 0, on ``backend`` (NumPy
    in float64 by default); ``single``: fused ones start in single precision."""
    backend = backend or get_backend("numpy", "cpu", "float64")
    layout = TermLayout(program, backend)
    quadratic_at, prox_at = split_terms(program)
    smooth = DiagonalQuadratic(program, quadratic_at)
    K = ProxTerms([layout.terms[k] for k in prox_at], program.n, backend)
    L = dual_lipschitz(program, prox_at, smooth.H)
    bounds = (program.l, program.u) if program.has_bounds else None
    y = backend.zeros(K.m)
    return DualFISTA.iterations(
        program, backend, K, smooth, prox_at, bounds, y, L, 1e-12 * L, fuse, single=single
    )


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("blocks", [1, 3])
@pytest.mark.parametrize("bounded", [False, True])
@pytest.mark.parametrize("form", ["isotropic", "anisotropic", "anisotropic_swapped"])
def test_fused_iterations_match_the_plain_ones(
    form: str, bounded: bool, blocks: int, weighted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One pass over the image, or three column blocks swept in parallel (17 columns);
    a uniform H is read as one number. The sums run in another order, so the two agree
    to rounding from the same state: each iteration starts from the plain one's y,
    y_prev, t and L (over a run, a row near its prox's kink or a restart test near 0 can
    turn rounding into another path)."""
    monkeypatch.setattr(dual_tv, "PARALLEL_FROM", 1 if blocks > 1 else dual_tv.PARALLEL_FROM)
    monkeypatch.setattr(dual_tv, "_BLOCK_COLUMNS", 17 // blocks)
    program = _program(_problem(form, bounded, weighted=weighted))
    plain, fused = _iterations(program, fuse=False), _iterations(program, fuse=True)
    assert isinstance(plain, DualIterations)
    assert isinstance(fused, FusedTVIterations)
    assert len(fused.starts) == blocks + 1
    assert fused._h_inv.shape == ((program.n,) if weighted else (1,))
    for _ in range(ITERATIONS):
        fused.Y[fused.slots[0]] = fused._planar(plain.y)
        fused.Y[fused.slots[1]] = fused._planar(plain.y_prev)
        fused.state[0], fused.state[1] = plain.t, plain.L
        counts = (plain.restarts, plain.backtracks)
        assert (fused.restarts, fused.backtracks) == counts
        plain.run(1)
        fused.run(1)
        assert (fused.restarts, fused.backtracks) == (plain.restarts, plain.backtracks)
        assert fused.L == pytest.approx(plain.L, rel=1e-12)
        assert fused.state[0] == pytest.approx(plain.t, rel=1e-12)
        assert _relative(fused.y, plain.y) <= 1e-12
    assert plain.backtracks > 0
    assert plain.restarts > 0
    fused_probe, plain_probe = fused.probe(), plain.probe()
    for name, a, b in zip(("y'", "z'", "K'y'"), fused_probe, plain_probe, strict=True):
        assert _relative(a, b) <= 1e-12, name
    # K'y' comes from the candidate's own pass, column by column: rmatvec's, bit for bit.
    g = fused.grid
    Kty = dual_tv.rmatvec(g.rows, g.cols, g.iso, g.offsets, fused.candidate[0])
    assert np.array_equal(fused_probe[2], Kty)
    shape = fused_probe[0].shape
    out = (np.full(shape, np.nan), np.full(shape, np.nan))
    into = fused.probe(out=out)
    assert into[0] is out[0] and into[1] is out[1]
    # Without ``out`` the pair is the caller's own, not the reused candidate buffers.
    assert not any(np.shares_memory(a, fused._buffers) for a in fused.probe()[:2])
    assert np.array_equal(out[0], fused_probe[0]) and np.array_equal(out[1], fused_probe[1])
    x = fused.clip(-(fused.q + fused_probe[2]) * fused.H_inv)
    if bounded:
        assert x.min() == 0.0
        assert x.max() == 1.0


@pytest.mark.parametrize("form", ["isotropic", "anisotropic"])
def test_fused_state_carries_over_between_runs(form: str) -> None:
    """Runs of ITERATIONS - 1 and 1 iterations end where one run of ITERATIONS does, bit
    for bit; over the first 60, run on their own, the fused iterations follow the plain
    ones (the same decisions, the iterates within rounding's growth)."""
    program = _program(_problem(form, bounded=True))
    split, whole = _iterations(program, fuse=True), _iterations(program, fuse=True)
    split.run(ITERATIONS - 1)
    split.run(1)
    whole.run(ITERATIONS)
    assert np.array_equal(split.y, whole.y)
    counts = (split.restarts, split.backtracks, split.L)
    assert counts == (whole.restarts, whole.backtracks, whole.L)
    assert whole.backtracks > 0
    plain, fused = _iterations(program, fuse=False), _iterations(program, fuse=True)
    plain.run(60)
    fused.run(60)
    assert plain.backtracks > 0
    assert (fused.restarts, fused.backtracks) == (plain.restarts, plain.backtracks)
    assert _relative(fused.y, plain.y) <= 1e-10


@pytest.mark.parametrize("bounded", [False, True])
@pytest.mark.parametrize("form", ["isotropic", "anisotropic"])
def test_single_precision_steps_follow_the_double_ones(form: str, bounded: bool) -> None:
    """From the same state (rounded to float32), a single-precision step lands within
    float32's rounding of the double-precision one; the candidate the checks test is
    computed in double precision from the current y, the same in both; ``promote``
    carries y over exactly and the run goes on in double precision."""
    program = _program(_problem(form, bounded))
    single = _iterations(program, fuse=True, single=True)
    double = _iterations(program, fuse=True)
    assert single.single
    assert not double.single
    assert single.Y.dtype == np.float32
    double.run(40)
    for _ in range(20):
        rounded = double.Y.astype(np.float32)
        single.Y[:] = rounded
        double.Y[:] = rounded
        single.slots[:], single.state[:] = double.slots, double.state
        assert _relative(single.probe()[0], double.probe()[0]) <= 1e-14
        single.run(1)
        double.run(1)
        assert single.y.dtype == np.float64
        assert _relative(single.y, double.y) <= 1e-6
        assert single.L == double.L
    assert single.single_iterations == 20
    y = single.y.copy()
    single.probe()
    single.promote()
    assert single.candidate is None
    assert not single.single
    assert single.Y.dtype == np.float64
    assert np.array_equal(single.y, y)
    single.promote()
    single.run(5)
    assert single.single_iterations == 20
    single.Y[:] = double.Y
    single.slots[:], single.state[:] = double.slots, double.state
    single.run(3)
    double.run(3)
    assert np.array_equal(single.y, double.y)


@pytest.mark.parametrize("weighted", [True, False])
def test_the_grid_gives_the_sparse_lipschitz_bound(weighted: bool) -> None:
    """``dual_lipschitz`` on ``cp.tv``'s matrix, given its grid, takes the bound from the
    grid (``tv_lipschitz``): the one it takes from the sparse matrix."""
    program = _program(_problem("isotropic", bounded=False, weighted=weighted))
    quadratic_at, prox_at = split_terms(program)
    H = DiagonalQuadratic(program, quadratic_at).H
    grid = tv_grid([program.terms[k] for k in prox_at], program.n)
    assert grid is not None
    from_grid = dual_lipschitz(program, prox_at, H, grid)
    assert from_grid == pytest.approx(dual_lipschitz(program, prox_at, H), rel=1e-14)


def test_tv_grid_reads_the_matrix_in_any_sparse_form() -> None:
    """``cp.tv`` lowers to the operator ``TVDifferences``; its matrix is recognized
    too, given as CSC, or as COO with an entry split in two (``MatrixOp`` keeps
    canonical CSR); with one entry changed it is not."""
    program = _program(_problem("isotropic", bounded=False))
    _, prox_at = split_terms(program)
    term = program.terms[prox_at[0]]
    assert isinstance(term.op, TVDifferences)
    grid = tv_grid([term], program.n)
    assert grid is not None and (grid.rows, grid.cols) == (13, 17)
    M = sp.coo_array(term.op.to_sparse())
    same = tv_grid([Term(term.function, MatrixOp(M), term.b)], program.n)
    assert same is not None and (same.rows, same.cols, same.iso) == (13, 17, True)
    split = sp.coo_array(
        (
            np.concatenate([M.data, [0.5]]),
            (np.concatenate([M.row, [M.row[0]]]), np.concatenate([M.col, [M.col[0]]])),
        ),
        shape=M.shape,
    )
    split.data[0] -= 0.5
    changed = sp.csr_array(M)
    changed.data[5] = 2.0
    for matrix, known in ((sp.csc_array(M), True), (split, True), (changed, False)):
        other = Term(term.function, MatrixOp(matrix), term.b)
        assert (tv_grid([other], program.n) is not None) == known


def test_promotion_rules() -> None:
    """Double precision from a worst ratio of at most ``_PROMOTE_RATIO``, a tolerance
    under ``_SINGLE_FLOOR`` max |x|, or ``_STALL_CHECKS`` checks without a new best."""

    x, tol = np.array([0.5, -2.0]), np.array([1e-5])
    ratio = dual_fista._PROMOTE_RATIO
    assert not dual_fista.Promotion().due(4 * ratio, tol, x)
    assert dual_fista.Promotion().due(ratio, tol, x)
    floor = dual_fista._SINGLE_FLOOR * 2.0
    assert dual_fista.Promotion().due(4 * ratio, np.array([0.9 * floor]), x)
    assert not dual_fista.Promotion().due(4 * ratio, np.array([1.1 * floor]), x)
    promotion = dual_fista.Promotion()
    assert not promotion.due(100.0, tol, x)
    decisions = [promotion.due(100.0 + k, tol, x) for k in range(dual_fista._STALL_CHECKS)]
    assert decisions == [False] * (dual_fista._STALL_CHECKS - 1) + [True]
    promotion = dual_fista.Promotion()
    assert not any(promotion.due(100.0 / (k + 1), tol, x) for k in range(10))


def test_data_out_of_single_range_keeps_double_precision() -> None:
    """A q beyond ``SINGLE_RANGE`` keeps the iterations in double precision."""
    program = _program(_problem("isotropic", bounded=False))
    steps = _iterations(program, fuse=True, single=True)
    assert steps.single
    huge = FusedTVIterations(
        steps.grid, steps.q * 1e20, steps.H, None, np.zeros(steps.Y.shape[1]), 8.0, 1e-12,
        (0.97, 2.0, 100), single=True,
    )  # fmt: skip
    assert not huge.single
    assert huge.Y.dtype == np.float64


def test_single_precision_solve_matches_clarabel(monkeypatch: pytest.MonkeyPatch) -> None:
    """At the default tolerances the fused iterations start in single precision and the
    checks, in double precision, still give Clarabel's solution; at eps 1e-7 they never
    leave double precision."""
    monkeypatch.setattr(dual_fista, "FUSED_FROM", 1)
    prob = _problem("isotropic", bounded=False, rows=40, cols=48)
    X = prob.variables()[0]
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    reference, X_ref = prob.value, X.value.copy()
    prob.solve(solver="NABLAPROX", algorithm="dual_fista")
    assert prob.status == cp.OPTIMAL
    stats = prob.solver_stats.extra_stats
    assert stats["fused"]
    assert 0 < stats["single_iterations"] < prob.solver_stats.num_iters
    assert prob.value == pytest.approx(reference, rel=1e-6)
    assert np.max(np.abs(X.value - X_ref)) <= 1e-4
    prob.solve(solver="NABLAPROX", algorithm="dual_fista", eps_abs=1e-7, eps_rel=1e-7)
    assert prob.status == cp.OPTIMAL
    assert prob.solver_stats.extra_stats["single_iterations"] == 0


def test_fused_solve_matches_clarabel_with_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Images under ``FUSED_FROM`` pixels take the plain iterations; with the threshold
    lowered, the fused solve reaches Clarabel's value."""
    prob = _problem("isotropic", bounded=True, rows=20, cols=24)
    assert 20 * 24 < FUSED_FROM
    prob.solve(solver="NABLAPROX", algorithm="dual_fista")
    assert not prob.solver_stats.extra_stats["fused"]
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    reference = prob.value
    monkeypatch.setattr(dual_fista, "FUSED_FROM", 1)
    prob.solve(solver="NABLAPROX", algorithm="dual_fista", eps_abs=1e-8, eps_rel=1e-8)
    assert prob.status == cp.OPTIMAL
    assert prob.solver_stats.extra_stats["fused"]
    assert prob.value == pytest.approx(reference, rel=1e-6)


def test_other_operators_take_the_plain_iterations() -> None:
    """A TV of a shifted image (b != 0), a weighted difference matrix and a 1-D TV are not
    the grids the kernel knows."""
    rows, cols = 6, 5
    noisy = _image(rows, cols)
    X = cp.Variable((rows, cols))
    fit = 0.5 * cp.sum_squares(X - noisy)
    x = cp.Variable(12)
    others = [
        cp.Problem(cp.Minimize(fit + cp.tv(X - noisy))),
        cp.Problem(cp.Minimize(fit + cp.tv(X, 2 * X))),
        cp.Problem(cp.Minimize(fit + cp.sum(cp.abs(cp.diff(X, axis=0))))),
        cp.Problem(cp.Minimize(cp.sum_squares(x - np.arange(12.0)) + cp.norm1(cp.diff(x)))),
    ]
    for prob in others:
        program = _program(prob)
        _, prox_at = split_terms(program)
        assert tv_grid([program.terms[k] for k in prox_at], program.n) is None
        assert isinstance(_iterations(program, fuse=True), DualIterations)


def test_parallel_blocks_give_the_same_iterates_on_any_number_of_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The column blocks are a function of the image, and their sums are added in block
    order, so one thread and all of them give the same iterates, bit for bit."""
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has one thread here")
    monkeypatch.setattr(dual_tv, "PARALLEL_FROM", 1)
    monkeypatch.setattr(dual_tv, "_BLOCK_COLUMNS", 4)
    program = _program(_problem("isotropic", bounded=True, rows=30, cols=41))
    runs = []
    threads = numba.get_num_threads()
    try:
        for count in (1, threads):
            numba.set_num_threads(count)
            fused = _iterations(program, fuse=True)
            assert len(fused.starts) == 11
            fused.run(60)
            runs.append((fused.y.copy(), *fused.probe()))
    finally:
        numba.set_num_threads(threads)
    for one, many in zip(*runs, strict=True):
        assert np.array_equal(one, many)


def test_column_blocks() -> None:
    assert column_blocks(100, 40, 3).tolist() == [0, 13, 27, 40]
    assert column_blocks(100, 40).tolist() == [0, 40]
    assert len(column_blocks(1024, 1024)) == dual_tv._BLOCKS_MAX + 1
    with pytest.raises(ValueError, match="blocks must be in"):
        column_blocks(10, 5, 6)


def test_the_threads_option_bounds_numba_threads_in_a_solve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``threads`` caps Numba's threads inside the solve and restores them after; the
    column blocks give the same answer on one thread and on all of them."""
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has one thread here")
    backend = get_backend("numpy", "cpu", "float64")
    before = numba.get_num_threads()
    with backend.cpu_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with backend.cpu_threads(None):
        assert numba.get_num_threads() == before
    monkeypatch.setattr(dual_tv, "PARALLEL_FROM", 1)
    monkeypatch.setattr(dual_fista, "FUSED_FROM", 1)
    prob = _problem("isotropic", bounded=False, rows=30, cols=41)
    values = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS, None):
        prob.solve(solver="NABLAPROX", algorithm="dual_fista", threads=threads, warm_start=False)
        assert prob.status == cp.OPTIMAL
        assert prob.solver_stats.extra_stats["fused"]
        values.append(prob.value)
    assert values[0] == values[1] == values[2]


def test_torch_runs_on_one_thread_unless_told() -> None:
    """On torch the default (``threads=None``) is one intra-op thread inside the block;
    a count caps torch's threads; both are restored after."""
    torch = pytest.importorskip("torch")
    backend = get_backend("torch", "cpu", "float64")
    before = torch.get_num_threads()
    with backend.cpu_threads(None):
        assert torch.get_num_threads() == 1
    with backend.cpu_threads(2):
        assert torch.get_num_threads() == min(2, before)
    assert torch.get_num_threads() == before


def test_the_checks_test_the_step_without_extrapolation() -> None:
    """The candidate the checks test (``probe``) pairs y' = prox(y + K x(y) / L) with
    z' = L (y - y') + K x(y): y' is in the subdifferential of g at z' exactly, and the
    iterations' state does not move."""
    rows, cols = 9, 11
    noisy = np.random.default_rng(3).standard_normal((rows, cols))
    X = cp.Variable((rows, cols))
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(X - noisy) + 0.3 * cp.tv(X)))
    steps = _iterations(_program(prob), fuse=False)
    assert isinstance(steps, DualIterations)
    K = steps.K
    steps.run(25)
    y, L = steps.y.copy(), steps.L
    y_probe, z_probe, Kty_probe = steps.probe()
    assert np.array_equal(steps.y, y)
    x = -(steps.q + K.rmatvec(y)) / steps.H
    z = L * (y - y_probe) + K.matvec(x) - K.b
    np.testing.assert_allclose(z_probe, z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Kty_probe, K.rmatvec(y_probe), rtol=1e-12, atol=1e-12)
    # y' along z' on the groups where the disc is active (||y'_g|| = 0.3 there).
    pairs, z_pairs = y_probe.reshape(-1, 2), z_probe.reshape(-1, 2)
    active = np.linalg.norm(z_pairs, axis=1) > 1e-9
    assert active.any()
    np.testing.assert_allclose(np.linalg.norm(pairs[active], axis=1), 0.3, rtol=1e-12)
    cosine = np.sum(pairs[active] * z_pairs[active], axis=1) / (
        0.3 * np.linalg.norm(z_pairs[active], axis=1)
    )
    np.testing.assert_allclose(cosine, 1.0, rtol=1e-10)
    assert np.all(np.linalg.norm(pairs[~active], axis=1) <= 0.3 + 1e-12)
