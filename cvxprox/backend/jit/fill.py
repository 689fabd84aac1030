"""The fill of a sparse LDL' factorization, predicted before factoring.

A factorization is dear when the factor fills in (Netlib's QAP15: a KKT matrix with
117225 nonzeros in A factors to nnz(L) = 1.3e7 in 32 s, where matvec-only PDHG solves
the LP in one second). ``predict_fill`` estimates nnz(L) and the factorization's flops
from the sparsity pattern alone, by the elimination that a minimum-degree ordering
performs, so that a solver can decide not to factor.

The elimination runs on the quotient graph (George & Liu 1989): eliminating the pivot p
turns it into an element whose variable list L_p is p's variable neighbours together
with the lists of the elements adjacent to p (which p absorbs); L_p is the pattern of
column p of L, so nnz(L) = sum_p |L_p| and the flops are sum_p |L_p|^2. The next pivot
is a variable of smallest approximate external degree (Amestoy, Davis & Duff 1996):

    d_i = min( d_i + |L_p \\ i|,  |A_i| + |L_p \\ i| + sum_{e in E_i, e != p} |L_e \\ L_p| ),

A_i the variables and E_i the elements adjacent to i, the same bound as AMD's, without
its supervariables and mass elimination. As in AMD, up to ``DENSE_MAX`` dense rows
(degree above max(16, 10 sqrt(N))) are taken out and ordered last: each node carries the
set of dense rows it reaches (a bit mask, joined as elements form), so column p of L has
|L_p| + |dense rows reached by p| entries, and the dense rows end in a clique.

On Netlib's KKT matrices (``cvxprox.solvers.admm.kkt``) the counts of the whole
elimination (no work limit) are 0.91 to 1.23 of qdldl's (AMD's ordering), FIT2D's 1.62
(its dense row, counted in every column that reaches it), and the flops 0.4 to 0.55 ns
each of qdldl's time on this machine (DFL001, MAROS-R7, PILOT87, QAP12: 0.35 to 2.3 s;
QAP15: 1.25e7 against 1.28e7 nonzeros, 4.0e10 flops, 32 s). An estimate, to tell a cheap
factor from one hundreds of times dearer, never to order a factorization.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numba import njit

#: The most dense rows taken out of the elimination (one bit each).
DENSE_MAX = 64
#: The entries of the quotient graph ``predict_fill`` reads, by default, per off-diagonal
#: nonzero and row of the pattern before it gives up. On Netlib's KKT matrices the dear
#: factors (QAP8/12/15, DFL001, MAROS-R7) reach their cap within 85, PILOT87's cheap one
#: completes at 118, while bgindy's and FIT2P's cheap ones would read 669 and 321 (0.2 s
#: and 0.12 s, more than factoring them).
WORK_PER_ENTRY = 200.0


@dataclass(frozen=True)
class FillEstimate:
    """Predicted nonzeros of the strictly lower factor L and flops sum_p |L_p|^2 of the
    factorization; ``complete`` when the elimination ran to its end, ``capped`` when it
    stopped at a cap (the counts are then lower bounds that exceed it; neither when it
    gave up at its work limit), and ``work``, the entries of the quotient graph read."""

    nnz: int
    flops: float
    complete: bool
    capped: bool
    work: float


def predict_fill(
    pattern: sp.sparray, cap: int, max_flops: float = math.inf, max_work: float | None = None
) -> FillEstimate:
    """The fill of an LDL' factorization of the symmetric matrix whose pattern is
    ``pattern`` (N x N; both triangles or either one, the diagonal ignored), by
    minimum-degree elimination (module docstring), stopped once nnz(L) exceeds ``cap`` or
    the flops exceed ``max_flops`` (``capped``: the factor is at least that dear), or
    given up once the entries of the quotient graph it has read exceed ``max_work``
    (neither ``complete`` nor ``capped``: the elimination of a pattern with many rows of
    a few hundred entries reads far more than it counts). By default ``max_work`` is
    ``WORK_PER_ENTRY`` times the pattern's off-diagonal nonzeros (both triangles) plus N.

    Costs O(nnz(pattern) + nnz(L)) memory and about nnz(L) times the average external
    degree in time: a few milliseconds on Netlib's KKT matrices, where factoring takes up
    to seconds.
    """
    if cap < 0 or not max_flops >= 0 or (max_work is not None and not max_work >= 0):
        raise ValueError(
            f"cap, max_flops and max_work must be nonnegative, got {cap}, {max_flops} and "
            f"{max_work}"
        )
    coo = sp.coo_array(pattern)
    if coo.shape[0] != coo.shape[1]:
        raise ValueError(f"the pattern must be square, got shape {coo.shape}")
    N = coo.shape[0]
    off = coo.row != coo.col
    rows = np.concatenate([coo.row[off], coo.col[off]])
    cols = np.concatenate([coo.col[off], coo.row[off]])
    S = sp.csr_array((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(N, N))
    S.sum_duplicates()
    if max_work is None:
        max_work = WORK_PER_ENTRY * (S.nnz + N)
    degree = np.diff(S.indptr)
    dense = np.flatnonzero(degree > max(16.0, 10.0 * np.sqrt(N)))
    dense = dense[np.argsort(-degree[dense], kind="stable")[:DENSE_MAX]]
    masks = np.zeros(N, dtype=np.uint64)
    if dense.size:
        bits = np.zeros(N, dtype=np.uint64)
        bits[dense] = np.left_shift(np.uint64(1), np.arange(dense.size, dtype=np.uint64))
        rows = np.repeat(np.arange(N), degree)
        np.bitwise_or.at(masks, rows, bits[S.indices])
        keep = np.ones(N, dtype=bool)
        keep[dense] = False
        S = S[keep][:, keep]
        masks = masks[keep]
    S.sort_indices()
    nnz, flops, state, work = _eliminate(
        S.indptr.astype(np.int64),
        S.indices.astype(np.int64),
        masks,
        np.int64(cap),
        float(min(max_flops, 1e300)),
        float(min(max_work, 1e300)),
    )
    k = dense.size
    if state == _COMPLETE:
        nnz += k * (k - 1) // 2
        flops += float(np.sum(np.arange(k, dtype=np.float64) ** 2))
        if nnz > cap or flops > max_flops:
            state = _CAPPED
    return FillEstimate(int(nnz), float(flops), state == _COMPLETE, state == _CAPPED, float(work))


_VARIABLE, _ELEMENT, _ABSORBED = 0, 1, 2
_COMPLETE, _CAPPED, _GAVE_UP = 0, 1, 2


@njit(cache=True)
def _popcount(x):  # pragma: no cover - compiled
    count = 0
    while x:
        x &= x - np.uint64(1)
        count += 1
    return count


@njit(cache=True)
def _eliminate(indptr, indices, masks, cap, max_flops, max_work):  # pragma: no cover - compiled
    N = indptr.size - 1
    masks = masks.copy()
    # Every node's list lives in ws[start[i] : start[i] + length[i]]: a variable's
    # neighbours (variables and elements), an element's variables. New elements' lists
    # are appended at the end (ws doubles when it is full); the lists of variables
    # shrink in place.
    ws = np.empty(2 * indices.size + N + 1, dtype=np.int64)
    ws[: indices.size] = indices
    end = indices.size
    start = indptr[:-1].copy()
    length = np.diff(indptr)
    kind = np.zeros(N, dtype=np.int8)
    degree = length.copy()
    # Degree buckets: doubly linked lists, head[d] the first variable of degree d.
    head = np.full(N + 1, -1, dtype=np.int64)
    nxt = np.full(N, -1, dtype=np.int64)
    prv = np.full(N, -1, dtype=np.int64)
    for i in range(N):
        d = degree[i]
        nxt[i] = head[d]
        if head[d] >= 0:
            prv[head[d]] = i
        head[d] = i
    in_lp = np.zeros(N, dtype=np.int64)
    w_stamp = np.zeros(N, dtype=np.int64)
    w = np.zeros(N, dtype=np.int64)
    min_degree = 0
    eliminated = 0
    nnz = 0
    flops = 0.0
    work = 0.0
    stamp = 0
    while eliminated < N:
        while head[min_degree] < 0:
            min_degree += 1
        p = head[min_degree]
        head[min_degree] = nxt[p]
        if nxt[p] >= 0:
            prv[nxt[p]] = -1
        stamp += 1
        in_lp[p] = stamp
        reach = 0
        for k in range(start[p], start[p] + length[p]):
            x = ws[k]
            reach += length[x] if kind[x] == _ELEMENT else 1
        if end + reach > ws.size:
            grown = np.empty(max(2 * ws.size, end + reach), dtype=np.int64)
            grown[:end] = ws[:end]
            ws = grown
        lp_start = end
        mask = masks[p]
        for k in range(start[p], start[p] + length[p]):
            x = ws[k]
            if kind[x] == _VARIABLE:
                if in_lp[x] != stamp:
                    in_lp[x] = stamp
                    ws[end] = x
                    end += 1
            elif kind[x] == _ELEMENT:
                for q in range(start[x], start[x] + length[x]):
                    v = ws[q]
                    if kind[v] == _VARIABLE and in_lp[v] != stamp:
                        in_lp[v] = stamp
                        ws[end] = v
                        end += 1
                mask |= masks[x]
                kind[x] = _ABSORBED
        size = end - lp_start
        kind[p] = _ELEMENT
        start[p] = lp_start
        length[p] = size
        masks[p] = mask
        eliminated += 1
        column = size + _popcount(mask)
        nnz += column
        flops += float(column) * float(column)
        if nnz > cap or flops > max_flops:
            return nnz, flops, _CAPPED, work
        scanned = reach
        for k in range(lp_start, end):
            scanned += 2 * length[ws[k]]
        work += scanned
        if work > max_work:
            return nnz, flops, _GAVE_UP, work
        # w[e] = |L_e \ L_p| for every element e adjacent to a variable of L_p.
        for k in range(lp_start, end):
            i = ws[k]
            for q in range(start[i], start[i] + length[i]):
                e = ws[q]
                if kind[e] == _ELEMENT and e != p:
                    if w_stamp[e] != stamp:
                        w_stamp[e] = stamp
                        w[e] = length[e]
                    w[e] -= 1
        live = N - eliminated
        for k in range(lp_start, end):
            i = ws[k]
            # Out of its bucket.
            if prv[i] >= 0:
                nxt[prv[i]] = nxt[i]
            else:
                head[degree[i]] = nxt[i]
            if nxt[i] >= 0:
                prv[nxt[i]] = prv[i]
            # Its list without p, absorbed elements and the variables of L_p (now
            # reached through p), then p: at least one entry (p itself or an absorbed
            # element) goes, so the list shrinks in place.
            kept = start[i]
            external = 0
            for q in range(start[i], start[i] + length[i]):
                x = ws[q]
                if x == p:
                    continue
                if kind[x] == _ELEMENT:
                    ws[kept] = x
                    kept += 1
                    external += w[x] if w_stamp[x] == stamp else length[x]
                elif kind[x] == _VARIABLE and in_lp[x] != stamp:
                    ws[kept] = x
                    kept += 1
                    external += 1
            ws[kept] = p
            kept += 1
            length[i] = kept - start[i]
            d = min(degree[i] + size - 1, external + size - 1, live - 1)
            d = max(d, 0)
            degree[i] = d
            prv[i] = -1
            nxt[i] = head[d]
            if head[d] >= 0:
                prv[head[d]] = i
            head[d] = i
            if d < min_degree:
                min_degree = d
    return nnz, flops, _COMPLETE, work
