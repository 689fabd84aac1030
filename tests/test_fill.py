"""The predicted fill of an LDL' factorization against qdldl's and against exact counts."""

import numpy as np
import pytest
import qdldl
import scipy.sparse as sp

from cvxprox.backend.jit.fill import DENSE_MAX, predict_fill


def _kkt(A: sp.sparray, P: sp.sparray | None = None) -> sp.csc_array:
    m, n = A.shape
    top = sp.eye_array(n) if P is None else P + sp.eye_array(n)
    return sp.csc_array(sp.block_array([[top, A.T], [A, -sp.eye_array(m)]]))


def _sparse_columns(m: int, n: int, per_column: int, seed: int) -> sp.csr_array:
    """A random m x n matrix with ``per_column`` nonzeros in each column: an expander
    whose KKT factor fills in, as Netlib's QAPs do."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, m, size=(n, per_column)).ravel()
    cols = np.repeat(np.arange(n), per_column)
    A = sp.csr_array((rng.standard_normal(rows.size), (rows, cols)), shape=(m, n))
    A.sum_duplicates()
    return A


def _qdldl_nnz(K: sp.csc_array) -> int:
    return qdldl.Solver(sp.triu(K, format="csc"), upper=True).factors()[0].nnz


@pytest.mark.parametrize(
    "K",
    [
        _kkt(_sparse_columns(300, 400, 3, 0)),
        _kkt(_sparse_columns(1000, 1500, 3, 1)),
        _kkt(sp.random_array((60, 90), density=0.05, rng=np.random.default_rng(2))),
        _kkt(
            sp.random_array((40, 50), density=0.1, rng=np.random.default_rng(3)),
            sp.random_array((50, 50), density=0.05, rng=np.random.default_rng(4)),
        ),
    ],
)
def test_predicted_fill_is_close_to_qdldls(K: sp.csc_array) -> None:
    estimate = predict_fill(K, 10**9)
    assert estimate.complete and not estimate.capped
    assert 0.8 <= estimate.nnz / _qdldl_nnz(K) <= 1.25


def test_fill_of_patterns_with_known_factors() -> None:
    """A path has no fill (N - 1 nonzeros, one each column); a clique fills completely
    (N (N - 1) / 2, flops sum k^2); a star's dense centre is ordered last (N - 1)."""
    N = 400
    path = sp.diags_array([np.ones(N - 1), np.ones(N - 1)], offsets=[-1, 1])
    estimate = predict_fill(path, 10**6)
    assert (estimate.nnz, estimate.flops, estimate.complete) == (N - 1, N - 1, True)
    k = 30
    clique = np.ones((k, k))
    estimate = predict_fill(sp.csr_array(clique), 10**6)
    assert estimate.nnz == k * (k - 1) // 2
    assert estimate.flops == sum(j * j for j in range(k))
    star = sp.lil_array((N, N))
    star[0, 1:] = 1.0
    estimate = predict_fill(sp.csr_array(star), 10**6)  # the upper triangle only
    assert estimate.nnz == N - 1 and estimate.complete


def test_more_dense_rows_than_tracked_still_count() -> None:
    """Past DENSE_MAX dense rows the rest stay in the elimination: an arrowhead with
    DENSE_MAX + 5 dense rows still counts its dense block."""
    N, d = 2000, DENSE_MAX + 5
    M = sp.lil_array((N, N))
    M[:d, d:] = 1.0
    estimate = predict_fill(sp.csr_array(M), 10**9)
    assert estimate.complete
    assert estimate.nnz == (N - d) * d + d * (d - 1) // 2


def test_the_elimination_stops_at_its_caps_and_gives_up_at_its_work_limit() -> None:
    clique = sp.csr_array(np.ones((50, 50)))
    capped = predict_fill(clique, 100)
    assert capped.capped and not capped.complete and capped.nnz > 100
    assert predict_fill(clique, 10**6, max_flops=1000.0).capped
    full = predict_fill(clique, 1225)
    assert full.complete and not full.capped and full.work > 0
    gave_up = predict_fill(clique, 1225, max_work=full.work / 2)
    assert not gave_up.complete and not gave_up.capped and gave_up.nnz < 1225


def test_bad_patterns_and_caps_are_refused() -> None:
    with pytest.raises(ValueError, match="square"):
        predict_fill(sp.csr_array((3, 4)), 10)
    with pytest.raises(ValueError, match="nonnegative"):
        predict_fill(sp.eye_array(3), -1)
    with pytest.raises(ValueError, match="nonnegative"):
        predict_fill(sp.eye_array(3), 10, max_flops=float("nan"))
