"""Block-coordinate rounds on windows of a TV image (``cvxprox/solvers/dual_windows.py``):
the windows' rows and pixels against the whole image's operator, the boxes, a round's
descent, and solves that take rounds against Clarabel."""

from __future__ import annotations

import math

import cvxpy as cp
import numba
import numpy as np
import pytest
import scipy.ndimage as ndi

from cvxprox.backend.jit import dual_tv
from cvxprox.backend.jit.dual_tv import FusedTVIterations, TVGrid
from cvxprox.solvers import dual_fista, dual_windows
from cvxprox.solvers.common.term_checks import StructuredChecker
from cvxprox.solvers.dual_windows import WindowRefinement, merge_boxes, window, window_boxes

FORMS = {
    "isotropic": (True, (0, 0)),
    "anisotropic": (False, (0, 1)),
    "anisotropic_swapped": (False, (1, 0)),
}


def _grid(form: str, rows: int, cols: int, weights: bool = False) -> TVGrid:
    """A TVGrid of an image; ``weights``: a different weight on every row."""
    iso, order = FORMS[form]
    rng = np.random.default_rng(3)
    if iso:
        w = rng.uniform(0.5, 1.5, (rows - 1) * (cols - 1)) if weights else np.array([0.2])
        return TVGrid(rows, cols, True, np.zeros(2, dtype=np.int64), w, w)
    vertical, horizontal = (rows - 1) * cols, rows * (cols - 1)
    offsets = np.array([0, vertical] if order == (0, 1) else [horizontal, 0], dtype=np.int64)
    w0 = rng.uniform(0.5, 1.5, vertical) if weights else np.array([0.2])
    w1 = rng.uniform(0.5, 1.5, horizontal) if weights else np.array([0.3])
    return TVGrid(rows, cols, False, offsets, w0, w1)


def _rows(grid: TVGrid) -> int:
    """The number of rows of TV on ``grid``'s image."""
    r, c = grid.rows, grid.cols
    return 2 * (r - 1) * (c - 1) if grid.iso else (r - 1) * c + r * (c - 1)


def _K(grid: TVGrid) -> np.ndarray:
    """K (kernel layout) as a dense matrix, row by row: row i is K'e_i (``rmatvec``)."""
    m = _rows(grid)
    eye = np.eye(m)
    return np.stack(
        [dual_tv.rmatvec(grid.rows, grid.cols, grid.iso, grid.offsets, eye[i]) for i in range(m)]
    )


@pytest.mark.parametrize("form", list(FORMS))
def test_every_row_of_K_is_a_difference_of_two_pixels(form: str) -> None:
    K = _K(_grid(form, 7, 9))
    assert np.all(np.sort(K, axis=1)[:, [0, -1]] == [-1.0, 1.0])
    assert np.all(np.count_nonzero(K, axis=1) == 2)


def _term_rows(grid: TVGrid) -> list[np.ndarray]:
    """The kernel-layout rows of ``term_sums``' two rows: the isotropic term (and none),
    or the vertical and the horizontal rows."""
    m = _rows(grid)
    if grid.iso:
        return [np.arange(m), np.arange(0)]
    vertical = (grid.rows - 1) * grid.cols
    start = grid.offsets[0]
    v = np.arange(start, start + vertical)
    return [v, np.setdiff1d(np.arange(m), v)]


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("weights", [False, True], ids=["one_weight", "weights"])
def test_term_sums_against_the_dense_operator(form: str, weights: bool) -> None:
    """max |K x - z|, max(|K x|, |z|), g(K x), g(z) and y'z per term, K x formed on the
    fly, against the dense K and the terms' functions."""
    g = _grid(form, 7, 9, weights)
    K = _K(g)
    rng = np.random.default_rng(2)
    x, y, z = rng.standard_normal(K.shape[1]), *rng.standard_normal((2, K.shape[0]))
    table = dual_tv.term_sums(g.rows, g.cols, g.iso, g.offsets, g.w0, g.w1, x, y, z)
    Kx = K @ x
    if g.iso:
        groups = K.shape[0] // 2
        weight = np.tile(np.broadcast_to(g.w0, (groups,)), 2)
    else:
        vertical, horizontal = (g.rows - 1) * g.cols, g.rows * (g.cols - 1)
        parts = [np.broadcast_to(g.w0, (vertical,)), np.broadcast_to(g.w1, (horizontal,))]
        weight = np.concatenate(parts if g.offsets[0] == 0 else parts[::-1])
    for t, rows in enumerate(_term_rows(g)):
        if rows.shape[0] == 0:
            assert np.all(table[t] == 0.0)
            continue
        a, b, w = Kx[rows], z[rows], weight[rows]
        if g.iso:  # the planar layout: group gr's rows gr and G + gr
            half = rows.shape[0] // 2
            w, norm_a, norm_b = w[:half], np.hypot(a[:half], a[half:]), np.hypot(b[:half], b[half:])
        else:
            norm_a, norm_b = np.abs(a), np.abs(b)
        expected = [
            np.max(np.abs(a - b)),
            max(np.max(np.abs(a)), np.max(np.abs(b))),
            w @ norm_a,
            w @ norm_b,
            y[rows] @ b,
        ]
        np.testing.assert_allclose(table[t], expected, rtol=1e-13)


@pytest.mark.parametrize("form", list(FORMS))
def test_failing_pixels_are_where_the_failing_rows_start(form: str) -> None:
    g = _grid(form, 6, 8)
    K = _K(g)
    rng = np.random.default_rng(4)
    x, z = rng.standard_normal(K.shape[1]), rng.standard_normal(K.shape[0])
    tol = np.array([1.5, 0.7])
    residual = np.abs(K @ x - z)
    expected = np.zeros(g.rows * g.cols, dtype=bool)
    for t, rows in enumerate(_term_rows(g)):
        failing = rows[residual[rows] > tol[t]]
        expected[np.argmin(K[failing], axis=1)] = True  # the pixel p of x_a - x_p
    mask = dual_tv.failing_pixels(g.rows, g.cols, g.iso, g.offsets, x, z, tol).T
    assert 0 < mask.sum() < mask.size
    assert np.array_equal(mask, expected.reshape((g.rows, g.cols), order="F"))


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("box", [(2, 5, 3, 7), (0, 6, 0, 8), (4, 6, 0, 2)])
def test_a_window_is_the_rows_whose_pixels_lie_in_it(
    form: str, box: tuple[int, int, int, int]
) -> None:
    """The window's rows are exactly the rows of K supported on its rectangle, in the
    sub-grid's order: K_W x_P = (K x)[rows], with the weights that go with them."""
    g = _grid(form, 7, 9, weights=True)
    K = _K(g)
    i0, i1, j0, j1 = box
    w = window(g, i0, i1, j0, j1)
    inside = np.zeros((g.rows, g.cols), dtype=bool)
    inside[i0 : i1 + 1, j0 : j1 + 1] = True
    inside = inside.ravel(order="F")
    supported = np.all((K == 0) | inside[None, :], axis=1)
    if g.iso:  # a group's two rows go together (the prox couples them)
        groups = supported.shape[0] // 2
        supported = np.tile(supported[:groups] & supported[groups:], 2)
    supported = np.flatnonzero(supported)
    assert np.array_equal(np.sort(w.rows), supported)
    assert np.array_equal(w.pixels, np.flatnonzero(inside))
    x = np.random.default_rng(1).standard_normal(K.shape[1])
    sub = w.grid
    assert np.allclose(_K(sub) @ x[w.pixels], (K @ x)[w.rows])
    # The weights follow the rows: the global weight of each row, in the sub-grid's order.
    weights = np.concatenate([g.w0, g.w0] if g.iso else _stacked_weights(g))
    sub_weights = np.concatenate([sub.w0, sub.w0] if sub.iso else _stacked_weights(sub))
    assert np.array_equal(sub_weights, weights[w.rows])


def _stacked_weights(g: TVGrid) -> list[np.ndarray]:
    """An anisotropic grid's weights per row of its kernel layout."""
    return [g.w0, g.w1] if g.offsets[0] == 0 else [g.w1, g.w0]


def test_window_boxes_cover_the_dilated_pixels_without_overlap() -> None:
    failing = np.zeros((40, 60), dtype=bool)
    failing[5, 5] = failing[6, 9] = True  # one part once dilated
    failing[39, 59] = True  # at the image's corner
    failing[5:16, 25] = failing[15, 25:36] = True  # an L whose box holds another part
    failing[7, 33] = True
    failing[30, 10] = failing[30, 16] = True  # two parts whose boxes touch
    boxes = window_boxes(failing, 2)
    cover = np.zeros(failing.shape, dtype=int)
    for i0, i1, j0, j1 in boxes:
        assert 0 <= i0 < i1 <= 39 and 0 <= j0 < j1 <= 59
        cover[i0 : i1 + 1, j0 : j1 + 1] += 1
    assert cover.max() == 1
    dilated = np.zeros_like(failing)
    for i, j in zip(*np.nonzero(failing), strict=True):
        dilated[max(i - 2, 0) : i + 3, max(j - 2, 0) : j + 3] = True
    assert np.all(cover[dilated] == 1)
    assert sorted(boxes) == [
        (3, 9, 3, 12),  # the first part's box, one more row and column
        (3, 18, 23, 38),  # the L's box took the part inside it
        (28, 33, 8, 19),  # the two boxes that touch, merged
        (37, 39, 57, 59),  # clipped to the image
    ]


def _merged_on_the_image(boxes: list[tuple[int, int, int, int]], shape: tuple[int, int]) -> list:
    """``merge_boxes`` by labelling the union of the boxes on the image, again until no
    two parts merge: the reference."""
    while True:
        union = np.zeros(shape, dtype=bool)
        for i0, i1, j0, j1 in boxes:
            union[i0 : i1 + 1, j0 : j1 + 1] = True
        merged = [
            (part[0].start, part[0].stop - 1, part[1].start, part[1].stop - 1)
            for part in ndi.find_objects(ndi.label(union)[0])
        ]
        if len(merged) == len(boxes):
            return merged
        boxes = merged


def test_merge_boxes_matches_labelling_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """On random rectangles (overlapping, touching along an edge, touching at a corner
    only, nested), the list merge gives the labelling's boxes in the same order, with
    the links formed a few rectangles at a time."""
    monkeypatch.setattr(dual_windows, "_LINK_BLOCK", 3)
    rng = np.random.default_rng(3)
    shape = (60, 70)
    for trial in range(200):
        count = int(rng.integers(1, 25))
        i0 = rng.integers(0, shape[0] - 1, count)
        j0 = rng.integers(0, shape[1] - 1, count)
        i1 = np.minimum(i0 + rng.integers(1, 8, count), shape[0] - 1)
        j1 = np.minimum(j0 + rng.integers(1, 8, count), shape[1] - 1)
        boxes = [tuple(int(v) for v in b) for b in zip(i0, i1, j0, j1, strict=True)]
        assert merge_boxes(boxes) == _merged_on_the_image(boxes, shape), trial
    failing = np.zeros(shape, dtype=bool)
    failing[10, 10] = failing[40, 50] = True
    assert len(window_boxes(failing, 2)) == 2
    assert window_boxes(failing, 2, most=2 * 25 - 1) is None
    assert len(window_boxes(failing, 2, most=2 * 25)) == 2
    corner = [(0, 1, 0, 1), (2, 3, 2, 3)]
    assert merge_boxes(corner) == corner
    assert merge_boxes([(0, 1, 0, 1), (2, 3, 1, 3)]) == [(0, 3, 0, 3)]
    assert merge_boxes([]) == []


def _denoising_iterations(
    form: str, rows: int, cols: int, bounded: bool, single: bool = False
) -> FusedTVIterations:
    g = _grid(form, rows, cols, weights=True)
    rng = np.random.default_rng(5)
    image = np.zeros((rows, cols))
    image[rows // 4 : 3 * rows // 4, cols // 3 :] = 1.0
    noisy = (image + 0.3 * rng.standard_normal((rows, cols))).ravel(order="F")
    H = np.linspace(0.5, 2.0, rows * cols)
    bounds = (np.zeros(rows * cols), np.ones(rows * cols)) if bounded else None
    m = (_K(g)).shape[0]
    rule = (dual_fista._DECREASE, dual_fista._BACKTRACK, dual_fista._MAX_BACKTRACKS)
    return FusedTVIterations(
        g, -H * noisy, H, bounds, np.zeros(m), 8.0 / 0.5, 1e-9, rule, single=single
    )


def _dual_objective(steps: FusedTVIterations) -> float:
    """psi(y) = 1/2 ||q + K'y||^2_{H^-1} + g*(y) (with bounds, the value of the smooth
    part at the clipped x); g* is 0 on the dual's feasible set (every y of the
    iterations lies in it)."""
    g = steps.grid
    y = steps.Y[steps.slots[0]]
    w = -(steps.q + dual_tv.rmatvec(g.rows, g.cols, g.iso, g.offsets, y))
    v = w / steps.H
    x = steps.clip(v)
    # -phi(y) = -(F(x(y)) + y'K x(y)) with F = 1/2 x'Hx + q'x: max over the box of w'x - F.
    return float(w @ x - 0.5 * x @ (steps.H * x))


@pytest.mark.parametrize("single", [False, True], ids=["double", "single"])
@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("bounded", [False, True], ids=["free", "box"])
def test_a_round_lowers_the_dual_and_meets_its_target_in_the_windows(
    form: str, bounded: bool, single: bool
) -> None:
    """Also on single-precision iterations: the windows start from the rounded y and
    their y is rounded back, the slots staying in single precision."""
    steps = _denoising_iterations(form, 30, 36, bounded, single)
    steps.run(100)
    before = _dual_objective(steps)
    windows = WindowRefinement(steps)
    boxes = [(2, 12, 3, 14), (20, 29, 20, 35)]
    tol = 1e-5
    assert _worst_inside(steps, boxes) > tol
    # As after 5000 iterations: each window may take BUDGET * 5000 * n / covered.
    passes = windows.round(boxes, tol, deadline=np.inf, iteration=5000)
    assert _dual_objective(steps) < before
    assert windows.rounds == 1 and passes == windows.work > 0
    assert passes <= dual_windows.BUDGET * 5000 and windows.last == 5000 + passes
    # The momentum restarted: the previous iterate is the current one.
    assert np.array_equal(steps.Y[steps.slots[0]], steps.Y[steps.slots[1]])
    assert steps.state[0] == 1.0
    # The windows met TARGET * tol at their own candidate (their own step constant);
    # the run's candidate, at the run's constant, meets the test.
    assert _worst_inside(steps, boxes) <= tol
    assert steps.single == single


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="one thread only")
def test_a_round_is_the_same_on_any_number_of_threads() -> None:
    """The windows run on a pool of threads; what a round writes does not depend on it."""
    boxes = [(2, 12, 3, 14), (20, 29, 20, 35), (0, 8, 20, 33)]
    results = []
    threads = numba.get_num_threads()
    try:
        for count in (1, 2):
            numba.set_num_threads(count)
            steps = _denoising_iterations("isotropic", 30, 36, True)
            steps.run(100)
            passes = WindowRefinement(steps).round(boxes, 1e-6, deadline=np.inf, iteration=5000)
            results.append((passes, steps.Y[steps.slots[0]].copy()))
    finally:
        numba.set_num_threads(threads)
    assert results[0][0] == results[1][0] > 0
    assert np.array_equal(results[0][1], results[1][1])


def _worst_inside(steps: FusedTVIterations, boxes: list[tuple[int, int, int, int]]) -> float:
    """The worst residual |K x - z'| at the candidate the checks test, over the rows of
    the windows whose pixels are not on a window's edge (the candidate's step moves the
    rows outside, which share the edge pixels)."""
    _, _, Kty = steps.probe()
    z = steps.candidate[1]  # the kernel's layout, as K's rows
    g = steps.grid
    x = steps.clip(-(steps.q + Kty) / steps.H)
    K = _K(g)
    residual = np.abs(K @ x - z)
    inner = np.zeros((g.rows, g.cols), dtype=bool)
    for i0, i1, j0, j1 in boxes:
        inner[i0 + 1 : i1 - 1, j0 + 1 : j1 - 1] = True
    starts = np.argmin(K, axis=1)  # the pixel p of each row x_a - x_p
    return float(residual[inner.ravel(order="F")[starts]].max())


def test_no_round_when_the_failing_rows_cover_too_much() -> None:
    steps = _denoising_iterations("isotropic", 30, 36, False)
    windows = WindowRefinement(steps)
    failing = np.zeros((30, 36), dtype=bool)
    assert windows.boxes(failing) is None
    assert windows.boxes(~failing) is None
    failing[0, 0] = True
    edge = dual_windows.MARGIN + 1
    assert windows.boxes(failing) == [(0, edge, 0, edge)]


def _denoising(rows: int, cols: int, bounded: bool) -> tuple[cp.Problem, cp.Variable]:
    rng = np.random.default_rng(11)
    image = np.zeros((rows, cols))
    image[rows // 5 : 3 * rows // 5, cols // 4 : 3 * cols // 4] = 1.0
    image[2 * rows // 3 :, : cols // 2] = 0.5
    noisy = image + 0.1 * rng.standard_normal((rows, cols))
    X = cp.Variable((rows, cols))
    objective = cp.Minimize(0.5 * cp.sum_squares(X - noisy) + 0.1 * cp.tv(X))
    return cp.Problem(objective, [X >= 0, X <= 1] if bounded else []), X


@pytest.mark.parametrize("bounded", [False, True], ids=["free", "box"])
def test_solves_with_rounds_match_clarabel(bounded: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """TV denoising at eps 1e-7 takes rounds (fused iterations forced on a small image)
    and ends optimal at Clarabel's point, in fewer iterations than without them."""
    monkeypatch.setattr(dual_fista, "FUSED_FROM", 1)
    prob, X = _denoising(64, 80, bounded)
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    reference, value = X.value.copy(), prob.value
    options = {"solver": "NABLAPROX", "eps_abs": 1e-7, "eps_rel": 1e-7, "algorithm": "dual_fista"}
    prob.solve(**options)
    stats = prob.solver_stats.extra_stats
    assert prob.status == "optimal"
    assert stats["window_rounds"] >= 1 and stats["window_passes"] > 0
    assert abs(prob.value - value) <= 1e-6 * abs(value)
    assert np.max(np.abs(X.value - reference)) <= 1e-4
    with_rounds = prob.solver_stats.num_iters
    monkeypatch.setattr(dual_windows, "SHARE", 0.0)
    prob = _denoising(64, 80, bounded)[0]  # no warm start from the solve before
    prob.solve(**options)
    assert prob.status == "optimal" and prob.solver_stats.extra_stats["window_rounds"] == 0
    assert with_rounds < prob.solver_stats.num_iters


def test_windows_over_the_share_are_no_round() -> None:
    """Three failing pixels far apart: their windows cover more than ``SHARE`` of a small
    image although the failing pixels do not."""
    steps = _denoising_iterations("isotropic", 30, 36, False)
    windows = WindowRefinement(steps)
    failing = np.zeros((30, 36), dtype=bool)
    failing[0, 0] = failing[14, 17] = failing[27, 34] = True
    assert windows.boxes(failing) is None


def test_a_round_without_a_window_at_its_target_holds_the_next_back() -> None:
    steps = _denoising_iterations("isotropic", 30, 36, False)
    steps.run(100)
    windows = WindowRefinement(steps)
    assert windows.due(0)
    # An unreachable target: every window stops at its budget.
    windows.round([(2, 12, 3, 14)], 0.0, deadline=np.inf, iteration=1000)
    assert windows.wait == 2000.0
    last = math.ceil(windows.last)
    assert not windows.due(last + 1998) and windows.due(last + 2000)
    windows.round([(2, 12, 3, 14)], 1.0, deadline=np.inf, iteration=4000)
    assert windows.wait == 0.0


def _record_events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The run's iterations, checks and rounds, in order, with the iterations they add."""
    events: list[tuple[str, int]] = []
    run, candidate = FusedTVIterations.run, FusedTVIterations.step_candidate
    round_ = WindowRefinement.round

    def record_run(self: FusedTVIterations, count: int) -> None:
        if self.grid.rows * self.grid.cols > 1000:  # the run's, not a window's
            events.append(("run", count))
        run(self, count)

    def record_check(self: FusedTVIterations) -> np.ndarray:
        # Every check of the run starts from its candidate (the TV rows' test first).
        if self.grid.rows * self.grid.cols > 1000:
            events.append(("check", 0))
        return candidate(self)

    def record_round(self: WindowRefinement, *args: object, **kwargs: object) -> float:
        passes = round_(self, *args, **kwargs)
        events.append(("round", passes))
        return passes

    monkeypatch.setattr(FusedTVIterations, "run", record_run)
    monkeypatch.setattr(FusedTVIterations, "step_candidate", record_check)
    monkeypatch.setattr(WindowRefinement, "round", record_round)
    return events


def test_a_round_is_checked_at_once_and_within_max_iters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a round the next check comes with no iterations between (and no round at
    it); a round near the end of ``max_iters`` takes no more than the run has left, so
    the iterations counted never pass it."""
    monkeypatch.setattr(dual_fista, "FUSED_FROM", 1)
    events = _record_events(monkeypatch)
    options = {"solver": "NABLAPROX", "eps_abs": 1e-7, "eps_rel": 1e-7, "algorithm": "dual_fista"}
    prob = _denoising(64, 80, False)[0]
    prob.solve(**options)
    rounds = [k for k, (kind, passes) in enumerate(events) if kind == "round" and passes > 0]
    assert rounds
    for k in rounds:
        assert events[k + 1][0] == "check"
        assert events[k + 2][0] == "run"  # no second round at the retest
    # A run cut by max_iters just after its first round's check.
    first = sum(count for kind, count in events[: rounds[0]] if kind == "run")
    events.clear()
    prob = _denoising(64, 80, False)[0]
    prob.solve(**options, max_iters=first + 5)
    assert prob.solver_stats.num_iters <= first + 5
    k = next(k for k, (kind, passes) in enumerate(events) if kind == "round" and passes > 0)
    assert events[k + 1][0] == "check"
    assert sum(count for kind, count in events if kind != "check") <= first + 5


@pytest.mark.parametrize("max_iters", [40, 150, 400])
def test_the_tv_rows_screen_is_a_lower_bound_of_the_full_check(
    max_iters: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check whose TV rows fail stops there (no point formed, no full test); a run
    stopped by ``max_iters`` ends at a full one. There, the TV rows' ratio the screen
    takes from ``term_sums`` is at most the full check's worst ratio, so a check the
    screen stops could not have passed; and the run returns that full check's point."""
    monkeypatch.setattr(dual_fista, "FUSED_FROM", 1)
    tables: list[np.ndarray] = []
    errors: list[object] = []
    term_sums, evaluate = FusedTVIterations.term_sums, StructuredChecker.evaluate

    def record_sums(self: FusedTVIterations, x: np.ndarray) -> np.ndarray:
        table = term_sums(self, x)
        if self.grid.rows * self.grid.cols > 1000:
            tables.append(table)
        return table

    def record_check(self: StructuredChecker, *args: object, **kwargs: object) -> object:
        errors.append(err := evaluate(self, *args, **kwargs))
        return err

    monkeypatch.setattr(FusedTVIterations, "term_sums", record_sums)
    monkeypatch.setattr(StructuredChecker, "evaluate", record_check)
    eps = 1e-7
    prob, X = _denoising(64, 80, False)
    prob.solve(solver="NABLAPROX", eps_abs=eps, eps_rel=eps, max_iters=max_iters)
    assert len(errors) == 1 and len(tables) > 1
    screen = float(np.max(tables[-1][:1, 0] / (eps + eps * tables[-1][:1, 1])))
    assert screen <= errors[0].normalized * (1 + 1e-12)
    assert prob.status in ("user_limit", "optimal_inaccurate") and X.value is not None
    assert prob.solver_stats.extra_stats["primal_residual"] == pytest.approx(errors[0].primal)
