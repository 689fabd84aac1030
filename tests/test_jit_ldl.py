"""The compiled LDL' solve against SciPy's sparse solver, and the KKT matrix's assembly."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from cvxprox.backend.jit.ldl import LDLFactor, kkt_upper


def _quasi_definite(n: int, m: int, seed: int) -> sp.csc_array:
    rng = np.random.default_rng(seed)
    A = sp.random_array((m, n), density=0.3, rng=rng)
    F = sp.random_array((n, n), density=0.2, rng=rng)
    P = F @ F.T + 1e-6 * sp.eye_array(n)
    rho = rng.uniform(0.01, 10.0, m)
    return sp.csc_array(sp.block_array([[P, A.T], [A, -sp.diags_array(1.0 / rho)]]))


@pytest.mark.parametrize(("n", "m"), [(1, 0), (5, 3), (40, 60), (80, 20)])
def test_solve_matches_scipy(n: int, m: int) -> None:
    K = _quasi_definite(n, m, seed=n + m)
    rhs = np.random.default_rng(1).standard_normal(n + m)
    np.testing.assert_allclose(LDLFactor(K).solve(rhs), spla.spsolve(K, rhs), rtol=1e-9, atol=1e-9)


def test_refactor_with_new_values() -> None:
    K = _quasi_definite(30, 20, seed=3)
    factor = LDLFactor(K)
    K2 = K.copy()
    K2.data *= 2.0
    factor.refactor(K2)
    rhs = np.arange(50, dtype=float)
    np.testing.assert_allclose(factor.solve(rhs), spla.spsolve(K2, rhs), rtol=1e-9, atol=1e-9)
    assert factor.nnz > 0


def _reversed_columns(M: sp.csc_array) -> sp.csc_array:
    """M with the entries of every column stored in reverse order (unsorted indices)."""
    columns = [np.arange(M.indptr[j + 1] - 1, M.indptr[j] - 1, -1) for j in range(M.shape[1])]
    order = np.concatenate([np.zeros(0, dtype=np.int64), *columns])
    return sp.csc_array((M.data[order], M.indices[order], M.indptr), shape=M.shape)


@pytest.mark.parametrize("P_form", ["none", "sorted", "unsorted"])
@pytest.mark.parametrize(("n", "m"), [(12, 9), (6, 0)])
def test_kkt_upper_is_the_upper_triangle_of_the_kkt_matrix(P_form: str, n: int, m: int) -> None:
    rng = np.random.default_rng(4)
    sigma = 1e-3
    A = sp.random_array((m, n), density=0.4, rng=rng, format="csc")
    F = sp.random_array((n, n), density=0.3, rng=rng)
    P = None if P_form == "none" else sp.csc_array(F @ F.T)
    if P_form == "unsorted":
        P = _reversed_columns(P)
        assert not P.has_sorted_indices
    rho = rng.uniform(0.1, 2.0, m)
    K, diag_pos = kkt_upper(P, _reversed_columns(sp.csc_array(A.T)), sigma, rho)
    indptr, indices, data = K.indptr, K.indices, K.data
    full = np.zeros((n + m, n + m))
    full[:n, :n] = sigma * np.eye(n) + (P.toarray() if P is not None else 0.0)
    full[:n, n:], full[n:, :n] = A.T.toarray(), A.toarray()
    full[n:, n:] = -np.diag(1.0 / rho)
    np.testing.assert_allclose(K.toarray(), np.triu(full), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(data[diag_pos], -1.0 / rho)
    for j in range(n + m):  # sorted row indices in every column, diagonal last
        column = indices[indptr[j] : indptr[j + 1]]
        assert np.all(np.diff(column) > 0) and column[-1] == j
