"""The compiled Ruiz passes (``cvxprox.backend.jit.equilibrate``) against a NumPy reference
written from their definition (the module docstring): dense arrays, one pass at a time."""

import numpy as np
import pytest
import scipy.sparse as sp

from cvxprox.backend.jit import csc_arrays
from cvxprox.backend.jit.equilibrate import BOUND_RATIO, MAX_SCALE, MIN_SCALE, ruiz_passes


def _inverse_sqrt(norms: np.ndarray) -> np.ndarray:
    """1 / sqrt(clip(norm)), 1 for an empty row or column."""
    clipped = np.clip(norms, MIN_SCALE, MAX_SCALE)
    return np.where(norms == 0.0, 1.0, 1.0 / np.sqrt(clipped))


def _reference(
    A: np.ndarray, P: np.ndarray | None, blocks: np.ndarray, iters: int
) -> tuple[np.ndarray, np.ndarray]:
    """D (n,), E (m,) after ``iters`` passes on dense A (m, n) and P (n, n)."""
    m, n = A.shape
    A = A.copy()
    P = None if P is None else P.copy()
    starts = np.concatenate(([0], np.cumsum(blocks)[:-1]))
    singleton = (np.count_nonzero(A, axis=1) == 1) & (np.repeat(blocks, blocks) == 1)
    D, E = np.ones(n), np.ones(m)
    for _ in range(iters):
        absA = np.abs(A)
        bound = np.max(np.where(singleton[:, None], absA, 0.0), axis=0, initial=0.0)
        other = np.max(np.where(singleton[:, None], 0.0, absA), axis=0, initial=0.0)
        if P is not None:
            other = np.maximum(other, np.max(np.abs(P), axis=0, initial=0.0))
        col = np.where((other > 0) & (other < BOUND_RATIO * bound), other, np.maximum(other, bound))
        row = np.max(absA, axis=1, initial=0.0)
        row = np.repeat(np.maximum.reduceat(row, starts), blocks) if m else row
        d, e = _inverse_sqrt(col), _inverse_sqrt(row)
        A = e[:, None] * A * d[None, :]
        if P is not None:
            P = d[:, None] * P * d[None, :]
        D, E = D * d, E * e
    return D, E


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("iters", [1, 3, 15])
def test_ruiz_passes_match_the_reference(seed: int, iters: int) -> None:
    """Badly scaled rows and columns, a second-order-cone block, bound rows (one
    nonzero) with tiny other entries in their column, an empty row and column, and P."""
    rng = np.random.default_rng(seed)
    m, n = 12, 8
    A = rng.standard_normal((m, n)) * (rng.random((m, n)) < 0.5)
    A *= np.logspace(-6, 6, m)[:, None] * np.logspace(4, -4, n)[None, :]
    A[9:, :] = 0.0
    A[9, 2], A[10, 5] = 1.0, -3.0  # bound rows x_2 >= ..., x_5 <= ...
    A[:9, 5] *= 1e-9  # column 5: tiny entries besides its bound row
    A[11, :] = 0.0  # empty row
    A[:, 7] = 0.0  # empty column
    blocks = np.array([1, 1, 3, 1, 1, 1, 1, 1, 1, 1], dtype=np.int64)  # rows 2-4: one SOC
    M = rng.standard_normal((n, n))
    P = M @ M.T * 1e3
    P[5, :] = P[:, 5] = 0.0  # column 5 of the KKT matrix: only its bound row is large
    D, E = np.ones(n), np.ones(m)
    Ac, Pc = sp.csc_array(A), sp.csc_array(P)
    singleton = (np.bincount(Ac.indices, minlength=m) == 1) & (np.repeat(blocks, blocks) == 1)
    ruiz_passes(csc_arrays(Ac), csc_arrays(Pc), blocks, iters, D, E, singleton)
    D_ref, E_ref = _reference(A, P, blocks, iters)
    np.testing.assert_allclose(D, D_ref, rtol=1e-12)
    np.testing.assert_allclose(E, E_ref, rtol=1e-12)
    # The kernel scaled its matrices in place: diag(E) A diag(D) and diag(D) P diag(D).
    np.testing.assert_allclose(Ac.toarray(), E[:, None] * A * D[None, :], rtol=1e-12, atol=0)
    np.testing.assert_allclose(Pc.toarray(), D[:, None] * P * D[None, :], rtol=1e-12, atol=0)
