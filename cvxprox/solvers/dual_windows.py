"""Block-coordinate rounds of dual FISTA on windows of a 2-D TV image.

Dual FISTA on TV denoising (``cvxprox.solvers.dual_fista``, fused on NumPy by
``cvxprox.backend.jit.dual_tv``) brings most of the image's rows in long before the last
ones: on the structured suite's 1024 x 1024 phantom at eps 1e-6, after 3000 iterations
325 of the 1.05 million groups fail the per-row test, in 90 clusters of at most 36
groups, and the plain iterations take 2230 more to bring them in. A round solves the
dual on small windows around the failing rows instead, every other row held fixed.

The dual (``dual_fista``'s module docstring) is minimize_y psi(y) = 1/2 ||q + K'y||^2_{H^-1}
+ g*(y) (with bounds, psi's smooth part is Huber-like in q + K'y). Split y into a
window's rows y_W, those of TV whose pixels all lie in a rectangle P of pixels (whole
groups when isotropic), and the rest y_R: K'y = K_W'y_W + K_R'y_R, and K_W'y_W is
supported on P. With y_R fixed, psi in y_W is the same dual on the sub-image P with
q_W = (q + K'y - K_W'y_W)|_P and H, the bounds and the weights restricted to P: the
fused iterations solve it as they solve the whole image, and the sub-image's x(y) is
the whole image's on P. The windows of a round share no pixel, so each one's q comes
from K'y as the round found it and the windows are independent; a round is
block-coordinate descent on psi, and the run's own test on the whole image follows it.

Rules (measured at eps 1e-6 on the phantom, ``compare.suites.structured``'s
``build_tv_denoising``, seeds 0-2 at 512 x 512 and 0-1 at 1024 x 1024, and on the
two-level test image of ``tests/test_dual_windows.py`` at 64 x 80, 128 x 128 and 200 x
240, fused iterations forced, at eps 1e-6 and 1e-7):

- a round is due at a check whose primal test fails (the method's dual residual is zero
  by construction) when the windows cover at most ``SHARE`` of the pixels: the failing
  rows' pixels dilated by ``MARGIN`` (8-connected), the bounding box of each connected
  part with one more row and column (the far pixels of its rows), boxes that share
  pixels or touch merged into their bounding box until none do (``window_boxes``);
- each window runs from the current y until its worst residual, at its own candidate
  (``FusedTVIterations.probe``, as the run's checks), is at most ``TARGET`` times the
  test's tolerance: chunks of ``CHUNK`` iterations, doubling, within the round's budget,
  ``BUDGET`` times the iterations since the last round in image passes (and no more
  than the run has left), shared by the windows in proportion to their cost, at least
  ``CHUNK`` iterations each where the run has room (a window at a degenerate spot, a
  multiplier on its disc's edge where the image is flat, converges at the sublinear
  rate and may take thousands of iterations on a hundred pixels); the time limit is
  tested between chunks;
- after a round the momentum restarts (the previous iterate is the current one), and the
  next check comes at once (a round at the run's last iterations is tested all the
  same); it may take a second round, on the rows the first left failing at its windows'
  edges, but the check after that one takes none (``_ROUNDS_IN_A_ROW`` in
  ``dual_fista``);
- a round none of whose windows met its target holds the next one back for twice the
  iterations that preceded it (``due``).

Rows at a window's edge share pixels with rows outside it, so a round can leave rows
just outside its windows failing by a few times the tolerance; the second round at the
check that follows, or else the iterations after it, bring these in. Iterations to pass
(window work included; the step rule's decrease 0.97), against the run without rounds,
all in double precision: the phantom 512 x 512 1720, 1722, 1700 against 4620, 4330,
4050; 1024 x 1024 1731, 1721 against 6570, 6930. The test image (free, then in the box
[0, 1]), 64 x 80, 128 x 128, 200 x 240: at 1e-6 1090, 1000, 1490 against 1000, 1000,
1800, and in the box 1030, 1380, 1540 against 1140, 1450, 1980; at 1e-7 4420, 5331, 5250
against 5550, 5880, 4050, and in the box 6820, 7760, 4800 against 7300, 4920, 4330: at
1e-7 the windows can sit on degenerate spots that neither they nor the plain iterations
bring in fast, and the rounds' restarts of the momentum cost more than they bring (not
solved here). The second round: with one round at a time, the phantom gives 1700, 1711,
1681 and 1711, 1701, the test image's twelve runs 44289 passes against 43616; but with
the iterations in single precision until the first round (and in double precision
after it), 1024 x 1024 takes 2080 and 1881 iterations against 1732 and 1722 (the last check before
the first round's successor failed on a few more rows, and the round then left its
edges failing), and so does a run in double precision whose y is rounded to single
precision once at iteration 640 (2081). Variants measured and not kept (with the
decrease 0.9): margin 8 (1811 on each of four phantom runs), share 0.3
(within 10% either way, with three times the window work); windows stopped at 500
iterations (at 1e-7 every round ends at that cap on the test image: 5650, 6710, 5790
free); the momentum restarted on the windows' rows only (phantom 2171 to 3061), or only
after a round whose windows all met their target and on their rows otherwise (box at
1e-7: 8070, 7130, 5500); the next round held back after any round with a window short of
its target (phantom 1024 x 1024: 4481), or one that found no fewer failing rows than the
round before (box at 1e-7: 7550, 6720); no check at once after a round (1024 x 1024:
2200); rounds at every check that follows one, with no limit (decrease 0.97, single
precision: the phantom 512 x 512 1741, 1740, 1711 and 1024 x 1024 1752, 1742, with 6 to
12 rounds and a third more window work).

The work of a round is counted in the run's iterations as image passes: the sum over
windows of iterations times a window's cost (``_cost``: its pixels, and ``_COLUMN_COST``
more per column), over the image's. The windows of a round run on Numba's threads (a
pool of Python threads: the compiled iterations release the GIL); each reads the y and
K'y the round started from, and their results are written back in the boxes' order, so
a round's result does not depend on the threads.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp
from scipy.sparse import csgraph

from cvxprox.backend.jit.dual_tv import (
    FusedTVIterations,
    TVGrid,
    rmatvec,
)

# A round is taken when its windows cover at most this share of the image's pixels.
SHARE = 0.1
# The failing rows' pixels are dilated by this many pixels (8-connected) into windows.
MARGIN = 4
# A window runs in chunks of CHUNK iterations, doubling, until its worst residual is at
# most TARGET times the test's tolerance or the round's budget is spent: BUDGET times
# the run's iterations since the last round, in image passes.
CHUNK = 50
TARGET = 0.25
BUDGET = 0.1
# Window work is counted as if a column's loops cost as much as this many pixels more,
# so that small windows are not counted cheaper than they run. A pass of the fused
# iterations costs about 0.1 us per column and 5 ns per pixel on one thread (10 x 10 to
# 512 x 512 images, one column block: about 20 pixels a column); 70 is the cost the
# rounds' budget was measured with, when a column cost 0.35 us (at 20 the 1024 x 1024
# phantom takes 1851 iterations against 1732, the windows' larger budget spent in the
# first round).
_COLUMN_COST = 70
# ``merge_boxes`` compares this many rectangles with all the others at a time.
_LINK_BLOCK = 256


@dataclass
class Window:
    """The rectangle of pixels [i0, i1] x [j0, j1] (inclusive) of an r x c image: the
    sub-image's grid, the global indices (kernel layout) of its rows in the sub-grid's
    own layout order, and its pixels (F order)."""

    grid: TVGrid
    rows: np.ndarray
    pixels: np.ndarray


def window(grid: TVGrid, i0: int, i1: int, j0: int, j1: int) -> Window:
    """The window of the pixel rectangle [i0, i1] x [j0, j1] of ``grid``'s image: the rows
    of TV whose pixels all lie in it (``cvxprox.backend.jit.dual_tv``'s layouts, planar
    when isotropic)."""
    r = grid.rows
    rs, cs = i1 - i0 + 1, j1 - j0 + 1
    ii, jj = np.arange(i0, i1 + 1), np.arange(j0, j1 + 1)
    pixels = (ii[:, None] + r * jj[None, :]).ravel(order="F")
    if grid.iso:
        groups = (r - 1) * (grid.cols - 1)
        g = (ii[:-1, None] + (r - 1) * jj[None, :-1]).ravel(order="F")
        rows = np.concatenate([g, groups + g])
        w0 = grid.w0 if grid.w0.shape[0] == 1 else grid.w0[g]
        sub = TVGrid(rs, cs, True, np.zeros(2, dtype=np.int64), w0, w0)
        return Window(sub, rows, pixels)
    # Axis-0 (vertical) rows i + (r-1) j of every column, axis-1 rows i + r j of every
    # column but the last; the sub-grid stacks them in the image's order.
    v = (ii[:-1, None] + (r - 1) * jj[None, :]).ravel(order="F")
    h = (ii[:, None] + r * jj[None, :-1]).ravel(order="F")
    first = 0 if grid.offsets[0] == 0 else 1
    offsets = np.zeros(2, dtype=np.int64)
    offsets[1 - first] = (rs - 1) * cs if first == 0 else rs * (cs - 1)
    w0 = grid.w0 if grid.w0.shape[0] == 1 else grid.w0[v]
    w1 = grid.w1 if grid.w1.shape[0] == 1 else grid.w1[h]
    parts = [grid.offsets[0] + v, grid.offsets[1] + h]
    rows = np.concatenate(parts if first == 0 else parts[::-1])
    return Window(TVGrid(rs, cs, False, offsets, w0, w1), rows, pixels)


def window_boxes(
    failing: np.ndarray, margin: int, most: float = math.inf
) -> list[tuple[int, int, int, int]] | None:
    """Pixel rectangles (i0, i1, j0, j1), inclusive, that do not overlap and cover the
    pixels of ``failing`` (bool, r x c) dilated by ``margin`` (8-connected), each part's
    bounding box with one more row and column (the far pixels of its last rows), clipped
    to the image; rectangles that share pixels or touch (4-connected) are merged into
    their bounding box. None when the dilated pixels alone number more than ``most`` (the
    rectangles would cover more: ruled out before any is formed)."""
    eight = np.ones((3, 3), dtype=bool)
    # Dilation by the 8-connected unit disc ``margin`` times is a max filter over the
    # (2 margin + 1)^2 square (separable: two passes).
    mask = ndi.maximum_filter(failing, size=2 * margin + 1, mode="constant", cval=False)
    if np.count_nonzero(mask) > most:
        return None
    r, c = mask.shape
    boxes = []
    for part in ndi.find_objects(ndi.label(mask, structure=eight)[0]):
        i1, j1 = min(part[0].stop, r - 1), min(part[1].stop, c - 1)
        boxes.append((min(part[0].start, i1 - 1), i1, min(part[1].start, j1 - 1), j1))
    return merge_boxes(boxes)


def _links(b: np.ndarray) -> sp.coo_array:
    """Which of the rectangles b (k, 4) share a pixel or an edge (``merge_boxes``), as a
    (k, k) sparse adjacency, formed ``_LINK_BLOCK`` rectangles against all at a time
    (memory linear in k)."""
    k = b.shape[0]
    I0, I1, J0, J1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    heads, tails = [], []
    for start in range(0, k, _LINK_BLOCK):
        i0, i1, j0, j1 = (b[start : start + _LINK_BLOCK, c : c + 1] for c in range(4))
        rows_meet = (i0 <= I1) & (I0 <= i1)
        cols_meet = (j0 <= J1) & (J0 <= j1)
        rows_touch = (i0 <= I1 + 1) & (I0 <= i1 + 1)
        cols_touch = (j0 <= J1 + 1) & (J0 <= j1 + 1)
        head, tail = np.nonzero((rows_meet & cols_touch) | (rows_touch & cols_meet))
        heads.append(head + start)
        tails.append(tail)
    head, tail = np.concatenate(heads), np.concatenate(tails)
    return sp.coo_array((np.ones(head.size), (head, tail)), shape=(k, k))


def merge_boxes(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Rectangles (i0, i1, j0, j1), inclusive, merged until none share a pixel or an edge:
    the bounding boxes of the 4-connected parts of their union, again until none do, in
    the order of their first pixel (by row, then column), on the list alone (no
    image: a labelling pass over 1024 x 1024 pixels costs 5 ms). Two rectangles' union is
    4-connected when their rows overlap and their columns overlap or are adjacent, or the
    other way round."""
    if not boxes:
        return []
    b = np.array(boxes, dtype=np.int64)
    while True:
        count, part = csgraph.connected_components(_links(b), directed=False)
        merged = np.empty((count, 4), dtype=np.int64)
        merged[:, 0] = merged[:, 2] = np.iinfo(np.int64).max
        merged[:, 1] = merged[:, 3] = np.iinfo(np.int64).min
        np.minimum.at(merged[:, 0], part, b[:, 0])
        np.maximum.at(merged[:, 1], part, b[:, 1])
        np.minimum.at(merged[:, 2], part, b[:, 2])
        np.maximum.at(merged[:, 3], part, b[:, 3])
        if count == b.shape[0]:
            order = np.lexsort((merged[:, 2], merged[:, 0]))
            return [tuple(int(v) for v in box) for box in merged[order]]
        b = merged


class WindowRefinement:
    """The rounds of the module docstring on fused iterations.

    Parameters
    ----------
    steps : FusedTVIterations
        The run's iterations: their y is updated in place, their momentum restarted.
    """

    def __init__(self, steps: FusedTVIterations) -> None:
        self.steps = steps
        self.grid = steps.grid
        self.rounds = 0
        self.work = 0.0
        self.last = 0.0
        self.wait = 0.0

    def refine(
        self, x: np.ndarray, tol: np.ndarray, iteration: int, most: float, deadline: float
    ) -> int:
        """After a check whose primal test failed at the image x and the steps' last
        probe: a round when one is due and the failing pixels (each TV term's rows
        against its tolerance, ``tol`` (2,) as ``term_sums``' rows) give windows
        (``boxes``), within ``most`` image passes and until ``deadline``. Returns the
        iterations it counts (its passes, rounded up; 0 when none was taken)."""
        if not self.due(iteration):
            return 0
        boxes = self.boxes(self.steps.failing_pixels(x, tol))
        if boxes is None:
            return 0
        target = float(np.min(tol[: self.grid.terms]))
        return math.ceil(self.round(boxes, target, deadline, iteration, most))

    def boxes(self, failing: np.ndarray) -> list[tuple[int, int, int, int]] | None:
        """The windows of a round around the ``failing`` pixels (bool, rows x cols), or
        None when none fails or the windows would cover more than ``SHARE`` of the
        image's pixels."""
        count = int(np.count_nonzero(failing))
        n = self.grid.rows * self.grid.cols
        # The windows hold the failing pixels: too many of them rule a round out cheaply.
        if count == 0 or count > SHARE * n:
            return None
        boxes = window_boxes(failing, MARGIN, SHARE * n)
        if boxes is None:
            return None
        covered = sum((i1 - i0 + 1) * (j1 - j0 + 1) for i0, i1, j0, j1 in boxes)
        return boxes if covered <= SHARE * n else None

    def round(
        self,
        boxes: list[tuple[int, int, int, int]],
        tol: float,
        deadline: float,
        iteration: int,
        most: float = math.inf,
    ) -> float:
        """Solve the dual on each window (module docstring) to ``TARGET`` times the
        residual tolerance ``tol``, within the round's budget (at most ``most`` image
        passes), stopping at ``deadline`` (``time.perf_counter``, tested between chunks);
        restart the momentum. Returns the round's work in image passes (the run's
        ``iteration`` plus these is where the next round's budget starts); 0 when no
        window ran (nothing changed). On single-precision iterations the windows start
        from the rounded y and their y is rounded when written back."""
        steps, g = self.steps, self.grid
        Y = steps.Y[steps.slots[0]]
        # The windows share no pixel and K_W'y_W lives on the window's pixels: each
        # window's q comes from K'y as it is before the round.
        Kty = rmatvec(g.rows, g.cols, g.iso, g.offsets, Y)
        image = _cost(g.rows, g.cols)
        covered = sum(_cost(i1 - i0 + 1, j1 - j0 + 1) for i0, i1, j0, j1 in boxes)
        # Each window's iterations: the budget shared in proportion to the windows' cost,
        # at least a chunk where the run has room for it.
        cap = int(min(BUDGET * (iteration - self.last), most) * image / covered)
        cap = max(cap, CHUNK if math.isinf(most) else min(CHUNK, int(most * image / covered)))
        if cap <= 0:
            return 0.0
        solve = _WindowSolve(steps, Kty, cap, tol, deadline)
        threads = numba.get_num_threads()
        if threads > 1 and len(boxes) > 1:
            with ThreadPoolExecutor(threads) as pool:
                results = list(pool.map(solve, boxes))
        else:
            results = [solve(box) for box in boxes]
        work = 0.0
        any_met = False
        for result in results:
            if result is None:
                continue
            cost, met, rows, y = result
            work += cost
            Y[rows] = y
            any_met = any_met or met
        if work == 0.0:
            return 0.0
        steps.Y[steps.slots[1]] = Y
        steps.state[0] = 1.0
        self.rounds += 1
        passes = work / image
        self.work += passes
        # A round none of whose windows met its target holds the next one back for
        # twice the iterations that preceded it.
        self.wait = 0.0 if any_met else 2.0 * (iteration - self.last)
        self.last = iteration + passes
        return passes

    def due(self, iteration: int) -> bool:
        """Whether a round may come at ``iteration`` (module docstring)."""
        return iteration - self.last >= self.wait


class _WindowSolve:
    """One window of a round (``WindowRefinement.round``), a function of its box: the
    dual on the sub-image from the round's y, in chunks of ``CHUNK`` iterations, doubling,
    until its worst residual is at most ``TARGET`` tol, ``cap`` iterations are done or
    ``deadline`` passes (tested between chunks). Returns (its work in pixels, whether it
    met its target, its rows, their new y), or None when the deadline had passed before
    it started. Reads the round's y and K'y, writes nothing of the run's: the windows of
    a round run on threads of their own (the compiled iterations release the GIL), and
    their results are written back in the boxes' order."""

    def __init__(
        self, steps: FusedTVIterations, Kty: np.ndarray, cap: int, tol: float, deadline: float
    ) -> None:
        self.steps, self.Kty, self.cap, self.tol, self.deadline = steps, Kty, cap, tol, deadline

    def __call__(
        self, box: tuple[int, int, int, int]
    ) -> tuple[float, bool, np.ndarray, np.ndarray] | None:
        if time.perf_counter() > self.deadline:
            return None
        steps = self.steps
        w = window(steps.grid, *box)
        sub, p = w.grid, w.pixels
        y = steps.Y[steps.slots[0]][w.rows]
        q = steps.q[p] + self.Kty[p] - rmatvec(sub.rows, sub.cols, sub.iso, sub.offsets, y)
        bounds = None if steps.lower.shape[0] == 0 else (steps.lower[p], steps.upper[p])
        inner = FusedTVIterations(
            sub,
            q,
            steps.H[p],
            bounds,
            y.reshape(2, -1).T.ravel() if sub.iso else y,
            steps.L,
            steps.state[2],
            (steps.step_rule[0], steps.step_rule[1], steps.max_backtracks),
            blocks=1,
        )
        done, chunk, met = 0, CHUNK, False
        while done < self.cap and not met:
            count = min(chunk, self.cap - done)
            inner.run(count)
            done += count
            chunk *= 2
            met = _worst_residual(inner) <= TARGET * self.tol
            if time.perf_counter() > self.deadline:
                break
        return done * _cost(sub.rows, sub.cols), met, w.rows, inner.Y[inner.slots[0]]


def _cost(rows: int, cols: int) -> float:
    """What a pass of the fused iterations over a rows x cols image costs, in pixels:
    each column's loops cost as much as ``_COLUMN_COST`` pixels more."""
    return float((rows + _COLUMN_COST) * cols)


def _worst_residual(steps: FusedTVIterations) -> float:
    """max_i |K x - z'|_i at the candidate the checks test (``FusedTVIterations.probe``:
    z' and y' of a step from the current y, x = x(y'); ``step_candidate``, the probe
    without its copies in the terms' order)."""
    Kty = steps.step_candidate()
    x = steps.clip(-(steps.q + Kty) * steps.H_inv)
    return float(np.max(steps.term_sums(x)[:, 0]))
