"""Tests of cvxprox.operators.linops: products, adjoints, assembled matrices, norm bounds and
Grams."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft as sfft
import scipy.signal as signal
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from cvxprox.operators.linops import (
    BlockDiagonal,
    Compose,
    Conv2D,
    Convolve1D,
    CosineGram,
    Diagonal,
    DiagonalGram,
    FiniteDiff,
    FourierGram,
    FourierSample,
    Gather,
    Gram,
    Identity,
    LinOp,
    MatrixOp,
    ScalarMultiple,
    Sum,
    TVDifferences,
    VStack,
    estimate_norm,
    tv_matrix,
)

RNG = np.random.default_rng(20240611)


def _random(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


def _mask(shape: tuple[int, ...], fraction: float) -> np.ndarray:
    mask = RNG.random(shape) < fraction
    mask.flat[0] = True
    return mask


def _cases() -> list[tuple[str, LinOp, bool]]:
    """(name, operator, whether norm_bound is a closed form within a factor 1.5)."""
    perm = RNG.permutation(30)
    cases = [
        ("identity", Identity(7), True),
        ("diagonal", Diagonal(_random(9)), True),
        ("scalar_multiple", ScalarMultiple(-2.5, FiniteDiff((6, 5), 1)), True),
        ("gather_repeats", Gather(np.array([3, 0, 3, 3, 5, 1]), 7), True),
        ("gather_empty", Gather(np.array([], dtype=np.int64), 4), True),
        ("matrix_dense", MatrixOp(_random(8, 6)), True),
        ("matrix_sparse", MatrixOp(sp.random(9, 12, density=0.3, random_state=1)), True),
        (
            "compose_permuted",
            Compose(Conv2D(_random(3, 3), (6, 5), "same"), Gather(perm, 30)),
            False,
        ),
        ("compose_diagonal_inner", Compose(FiniteDiff((6, 5), 0), Diagonal(_random(30))), False),
        (
            "compose_unique_gather",
            Compose(Conv2D(_random(2, 3), (4, 5), "full"), Gather(RNG.permutation(40)[:20], 40)),
            False,
        ),
        (
            "compose_identity",
            Compose(Conv2D(_random(3, 3), (6, 5), "circular"), Identity(30)),
            True,
        ),
        (
            "compose_scaled",
            Compose(ScalarMultiple(2.0, Gather(RNG.permutation(24), 24)), FiniteDiff((6, 5), 1)),
            True,
        ),
        ("compose_diagonals", Compose(Diagonal(_random(6)), Diagonal(_random(6))), True),
        (
            "sum_diagonal",
            Sum([Identity(6), Diagonal(_random(6)), ScalarMultiple(-0.5, Identity(6))]),
            True,
        ),
        ("sum_general", Sum([MatrixOp(_random(25, 30)), FiniteDiff((6, 5), 0)]), False),
        ("vstack_gradient", VStack([FiniteDiff((6, 5), 0), FiniteDiff((6, 5), 1)]), True),
        (
            "vstack_mixed",
            VStack(
                [Identity(30), FiniteDiff((6, 5), 1), Conv2D(_random(3, 3), (6, 5), "circular")]
            ),
            False,
        ),
        (
            "vstack_fourier",
            VStack([FourierSample(_mask((6, 5), 0.4)), ScalarMultiple(0.3, Identity(30))]),
            True,
        ),
        ("conv1d_10_3", Convolve1D(_random(3), 10), True),
        ("conv1d_40_4", Convolve1D(_random(4), 40), True),
        ("conv1d_3_6", Convolve1D(_random(6), 3), False),
        ("fourier_8x6", FourierSample(_mask((8, 6), 0.4)), True),
        ("fourier_7x5", FourierSample(_mask((7, 5), 0.5)), True),
        ("fourier_1d_9", FourierSample(_mask((9,), 0.5)), True),
        ("fourier_full", FourierSample(np.ones((4, 6), dtype=bool)), True),
        ("fourier_empty", FourierSample(np.zeros((4, 3), dtype=bool)), True),
        ("diff_9_k1", FiniteDiff((9,), 0, 1), True),
        ("diff_9_k3", FiniteDiff(9, 0, 3), True),
        ("diff_6x5_axis0", FiniteDiff((6, 5), 0), True),
        ("diff_6x5_axis1", FiniteDiff((6, 5), 1), True),
        ("diff_6x5_axis1_k2", FiniteDiff((6, 5), 1, 2), True),
        ("diff_6x5_axis0_k4", FiniteDiff((6, 5), 0, 4), True),
        ("diff_4x7_axis_neg1", FiniteDiff((4, 7), -1, 2), True),
        ("tv_2x2", TVDifferences(2, 2), True),
        ("tv_6x5", TVDifferences(6, 5), True),
        ("tv_30x25", TVDifferences(30, 25), True),
        (
            "blockdiag_dense_3x(4x5)",
            BlockDiagonal([MatrixOp(_random(4, 5)) for _ in range(3)]),
            True,
        ),
        (
            "blockdiag_mixed",
            BlockDiagonal([Identity(3), Diagonal(_random(2)), FiniteDiff((6,), 0, 1)]),
            True,
        ),
    ]
    for image, kernel in [((7, 6), (3, 3)), ((8, 5), (4, 2)), ((11, 9), (5, 5)), ((3, 4), (6, 7))]:
        K = _random(*kernel)
        tight = image[0] >= kernel[0] and image[1] >= kernel[1]
        for mode in ("full", "same", "circular"):
            name = f"conv2d_{mode}_{image[0]}x{image[1]}_{kernel[0]}x{kernel[1]}"
            cases.append((name, Conv2D(K, image, mode), tight or mode == "circular"))
    return cases


CASES = _cases()
IDS = [name for name, _, _ in CASES]
OPS = [op for _, op, _ in CASES]


def _dense(op: LinOp) -> np.ndarray:
    A = op.to_sparse()
    assert isinstance(A, sp.csr_array)
    assert A.shape == op.shape
    return A.toarray()


def _spectral_norm(A: np.ndarray) -> float:
    return float(np.linalg.norm(A, 2)) if A.size else 0.0


# --------------------------------------------------------------------------------------------
# Every operator
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_adjoint_dot_product(op: LinOp) -> None:
    m, n = op.shape
    for _ in range(3):
        x, y = _random(n), _random(m)
        Ax, Aty = op.matvec(x), op.rmatvec(y)
        assert Ax.shape == (m,) and Aty.shape == (n,)
        scale = np.linalg.norm(Ax) * np.linalg.norm(y) + np.linalg.norm(x) * np.linalg.norm(Aty)
        assert abs(Ax @ y - x @ Aty) <= 1e-12 * max(scale, 1e-300)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_products_match_assembled_matrix(op: LinOp) -> None:
    A = _dense(op)
    x, y = _random(op.shape[1]), _random(op.shape[0])
    scale = max(1.0, np.abs(A).max(initial=0.0))
    np.testing.assert_allclose(op.matvec(x), A @ x, rtol=0, atol=1e-12 * scale * op.shape[1])
    np.testing.assert_allclose(op.rmatvec(y), A.T @ y, rtol=0, atol=1e-12 * scale * op.shape[0])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_norm_bound(case: tuple[str, LinOp, bool]) -> None:
    _, op, tight = case
    true = _spectral_norm(_dense(op))
    bound = op.norm_bound()
    assert bound >= true * (1 - 1e-12)
    if tight:
        assert bound <= 1.5 * true + 1e-12
    assert op.norm_bound() == bound


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_gram(op: LinOp) -> None:
    gram = op.gram()
    if gram is None:
        return
    A = _dense(op)
    AtA = A.T @ A
    assert isinstance(gram, Gram) and gram.n == op.shape[1]
    for _ in range(2):
        x = _random(op.shape[1])
        np.testing.assert_allclose(
            gram.matvec(x), AtA @ x, rtol=0, atol=1e-11 * (1 + np.abs(AtA).max())
        )
    np.testing.assert_allclose(
        gram.diagonal(), np.diag(AtA), rtol=0, atol=1e-12 * (1 + np.abs(AtA).max())
    )
    assert gram.max_eigenvalue() == pytest.approx(_spectral_norm(A) ** 2, rel=1e-10, abs=1e-12)
    shifted = gram + DiagonalGram(0.7, gram.n)
    assert type(shifted) is type(gram)
    x = _random(op.shape[1])
    np.testing.assert_allclose(shifted.solve(shifted.matvec(x)), x, rtol=0, atol=1e-11)
    np.testing.assert_allclose(shifted.matvec(x), AtA @ x + 0.7 * x, rtol=0, atol=1e-10)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_gram_diagonal(op: LinOp) -> None:
    diag = op.gram_diagonal()
    if diag is None:
        return
    A = _dense(op)
    expected = np.sum(A * A, axis=0)
    assert diag.shape == (op.shape[1],)
    np.testing.assert_allclose(diag, expected, rtol=0, atol=1e-12 * (1 + expected.max(initial=0)))


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_bad_shapes_raise(op: LinOp) -> None:
    m, n = op.shape
    for bad in (np.zeros(n + 1), np.zeros((n, 1)), np.zeros((1, n))):
        with pytest.raises(ValueError, match="expected a vector"):
            op.matvec(bad)
    with pytest.raises(ValueError, match="expected a vector"):
        op.rmatvec(np.zeros(m + 1))
    with pytest.raises(ValueError, match="real"):
        op.matvec(np.zeros(n, dtype=complex))


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_products_leave_input_alone(op: LinOp) -> None:
    x = _random(op.shape[1])
    x0 = x.copy()
    out = op.matvec(x)
    assert np.array_equal(x, x0)
    out[...] = 0.0
    assert np.array_equal(x, x0)
    assert isinstance(op.describe(), str) and op.describe() in repr(op)


# --------------------------------------------------------------------------------------------
# Agreement with NumPy / SciPy references
# --------------------------------------------------------------------------------------------


def _circular_reference(X: np.ndarray, K: np.ndarray) -> np.ndarray:
    p, q = K.shape
    Y = np.zeros_like(X)
    for a in range(p):
        for b in range(q):
            Y += K[a, b] * np.roll(X, (a - p // 2, b - q // 2), axis=(0, 1))
    return Y


@pytest.mark.parametrize(
    ("image", "kernel"),
    [((7, 6), (3, 3)), ((8, 5), (4, 2)), ((5, 9), (2, 5)), ((3, 4), (6, 7)), ((1, 1), (4, 3))],
)
@pytest.mark.parametrize("mode", ["full", "same", "circular"])
def test_conv2d_matches_scipy(image: tuple[int, int], kernel: tuple[int, int], mode: str) -> None:
    K, X = _random(*kernel), _random(*image)
    op = Conv2D(K, image, mode)
    if mode == "circular":
        expected = _circular_reference(X, K)
    else:
        expected = signal.convolve2d(X, K, mode)
    assert op.output_shape == expected.shape
    np.testing.assert_allclose(op.matvec(X.ravel(order="F")), expected.ravel(order="F"), atol=1e-12)


def test_conv2d_circular_agrees_with_same_inside() -> None:
    K, X = _random(5, 3), _random(12, 10)
    circular = Conv2D(K, X.shape, "circular").matvec(X.ravel(order="F")).reshape(X.shape, order="F")
    same = signal.convolve2d(X, K, "same")
    np.testing.assert_allclose(circular[2:-2, 1:-1], same[2:-2, 1:-1], atol=1e-12)


@pytest.mark.parametrize(("n", "p"), [(10, 3), (1, 4), (3, 6), (50, 7)])
def test_convolve1d_matches_numpy(n: int, p: int) -> None:
    k, x = _random(p), _random(n)
    op = Convolve1D(k, n)
    assert op.shape == (n + p - 1, n)
    np.testing.assert_allclose(op.matvec(x), np.convolve(k, x), atol=1e-12)


@pytest.mark.parametrize(("n", "p"), [(10, 3), (1, 4), (3, 6), (50, 7), (257, 31)])
def test_gram_matvec(n: int, p: int) -> None:
    """Convolve1D's A'A x in one FFT pair is the two products'; other operators take the
    two products (a sparse matrix here)."""
    op = Convolve1D(_random(p), n)
    x = _random(n)
    A = op.to_sparse()
    assert op.fast_gram
    np.testing.assert_allclose(op.gram_matvec(x), A.T @ (A @ x), rtol=1e-10, atol=1e-12)
    other = FiniteDiff((n + 1,), 0, 1)
    y = _random(n + 1)
    assert not other.fast_gram
    np.testing.assert_allclose(other.gram_matvec(y), other.rmatvec(other.matvec(y)))


@pytest.mark.parametrize(
    ("shape", "axis", "k"),
    [((9,), 0, 1), ((9,), 0, 4), ((6, 5), 0, 1), ((6, 5), 1, 1), ((6, 5), 0, 2), ((4, 7), 1, 3)],
)
def test_finite_diff_matches_numpy(shape: tuple[int, ...], axis: int, k: int) -> None:
    X = _random(*shape)
    op = FiniteDiff(shape, axis, k)
    expected = np.diff(X, n=k, axis=axis)
    np.testing.assert_allclose(op.matvec(X.ravel(order="F")), expected.ravel(order="F"), atol=1e-12)


@pytest.mark.parametrize("shape", [(8, 6), (7, 5), (6, 7), (1, 6), (5, 1), (9,), (10,)])
def test_fourier_sample_matches_numpy(shape: tuple[int, ...]) -> None:
    mask = _mask(shape, 0.5)
    X = _random(*shape)
    op = FourierSample(mask)
    F = np.fft.fftn(X, norm="ortho")[np.nonzero(mask)]
    np.testing.assert_allclose(
        op.matvec(X.ravel(order="F")), np.concatenate([F.real, F.imag]), atol=1e-12
    )
    k = F.size
    p, q = _random(k), _random(k)
    S = np.zeros(shape, dtype=complex)
    S[np.nonzero(mask)] = p + 1j * q
    expected = np.fft.ifftn(S, norm="ortho").real
    np.testing.assert_allclose(
        op.rmatvec(np.concatenate([p, q])), expected.ravel(order="F"), atol=1e-12
    )


def test_fourier_sample_gram_eigenvalues() -> None:
    mask = _mask((6, 5), 0.4)
    M = mask.astype(float)
    flipped = M[(-np.arange(6)) % 6][:, (-np.arange(5)) % 5]
    gram = FourierSample(mask).gram()
    assert isinstance(gram, FourierGram)
    np.testing.assert_array_equal(gram.eigenvalues(), (M + flipped) / 2)


def test_finite_diff_gram_is_neumann_laplacian() -> None:
    gram = FiniteDiff((5, 4), axis=1).gram()
    assert isinstance(gram, CosineGram)
    np.testing.assert_allclose(gram.eigenvalues()[0], 2 - 2 * np.cos(np.pi * np.arange(4) / 4))
    assert FiniteDiff((5, 4), axis=1, k=2).gram() is None


def test_large_operators() -> None:
    X = _random(512, 384)
    K = _random(7, 7)
    op = Conv2D(K, X.shape, "same")
    Y = op.matvec(X.ravel(order="F")).reshape(X.shape, order="F")
    np.testing.assert_allclose(
        Y[200:210, 100:110], signal.convolve2d(X, K, "same")[200:210, 100:110]
    )
    mask = _mask(X.shape, 0.2)
    F = np.fft.fft2(X, norm="ortho")[np.nonzero(mask)]
    out = FourierSample(mask).matvec(X.ravel(order="F"))
    np.testing.assert_allclose(out, np.concatenate([F.real, F.imag]), atol=1e-12)


def test_describe() -> None:
    assert (
        Conv2D(np.ones((5, 5)), (192, 192), "circular").describe()
        == "conv2d(5x5, 192x192, circular)"
    )
    assert FiniteDiff((4, 3), 1).describe() == "diff(4x3, axis=1, k=1)"
    assert Compose(Identity(3), Gather([0, 1, 2], 3)).describe() == "identity(3) o gather(3 of 3)"


# --------------------------------------------------------------------------------------------
# Gram rules of composite operators
# --------------------------------------------------------------------------------------------


def test_compose_gram_rules() -> None:
    D = FiniteDiff((6, 5), 0)
    conv = Conv2D(_random(3, 3), (6, 5), "circular")
    assert Compose(conv, Identity(30)).gram() is conv.gram()
    scaled = Compose(ScalarMultiple(2.0, Identity(25)), D).gram()
    assert isinstance(scaled, CosineGram)
    np.testing.assert_allclose(scaled.eigenvalues(), 4 * D.gram().eigenvalues())
    constant = Compose(Diagonal(np.full(25, -3.0)), D).gram()
    np.testing.assert_allclose(constant.eigenvalues(), 9 * D.gram().eigenvalues())
    d1, d2 = _random(6), _random(6)
    product = Compose(Diagonal(d1), Diagonal(d2)).gram()
    assert isinstance(product, DiagonalGram)
    np.testing.assert_allclose(product.d, (d1 * d2) ** 2)
    varying = Compose(Diagonal(_random(25)), D)
    assert varying.gram() is None and varying.gram_diagonal() is None
    assert Compose(MatrixOp(_random(4, 25)), D).gram() is None


def test_sum_and_vstack_gram_rules() -> None:
    d = _random(6)
    gram = Sum([Identity(6), Diagonal(d)]).gram()
    assert isinstance(gram, DiagonalGram)
    np.testing.assert_allclose(gram.d, (1 + d) ** 2)
    assert Sum([FiniteDiff((6, 5), 0), MatrixOp(_random(25, 30))]).gram() is None
    gradient = VStack([FiniteDiff((6, 5), 0), FiniteDiff((6, 5), 1)])
    assert isinstance(gradient.gram(), CosineGram)
    assert gradient.norm_bound() <= np.sqrt(8)
    assert isinstance(VStack([Identity(30), FiniteDiff((6, 5), 1)]).gram(), CosineGram)
    circular = Conv2D(_random(3, 3), (6, 5), "circular")
    assert VStack([FiniteDiff((6, 5), 1), circular]).gram() is None
    assert isinstance(VStack([Identity(30), circular]).gram(), FourierGram)


# --------------------------------------------------------------------------------------------
# Gram structures
# --------------------------------------------------------------------------------------------


def _dft(n: int) -> np.ndarray:
    return np.fft.fft(np.eye(n), norm="ortho", axis=0)


def _dct(n: int) -> np.ndarray:
    return sfft.dct(np.eye(n), norm="ortho", axis=0)


def _symmetric_eig(shape: tuple[int, ...]) -> np.ndarray:
    return np.abs(np.fft.fftn(_random(*shape))) ** 2 + 0.1


@pytest.mark.parametrize("shape", [(6, 5), (4, 7), (8,)])
def test_fourier_gram_dense(shape: tuple[int, ...]) -> None:
    eig = _symmetric_eig(shape)
    Q = _dft(shape[0]) if len(shape) == 1 else np.kron(_dft(shape[1]), _dft(shape[0]))
    H = (Q.conj().T @ np.diag(eig.ravel(order="F")) @ Q).real
    gram = FourierGram(eig, shape)
    x = _random(gram.n)
    np.testing.assert_allclose(gram.matvec(x), H @ x, atol=1e-10 * eig.max())
    np.testing.assert_allclose(gram.solve(x), np.linalg.solve(H, x), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gram.diagonal(), np.diag(H), rtol=1e-12)


@pytest.mark.parametrize("shape", [(6, 5), (4, 7), (8,), (1, 5)])
def test_cosine_gram_dense(shape: tuple[int, ...]) -> None:
    eig = RNG.random(shape) + 0.1
    Q = _dct(shape[0]) if len(shape) == 1 else np.kron(_dct(shape[1]), _dct(shape[0]))
    H = Q.T @ np.diag(eig.ravel(order="F")) @ Q
    gram = CosineGram(eig, shape)
    x = _random(gram.n)
    np.testing.assert_allclose(gram.matvec(x), H @ x, atol=1e-12)
    np.testing.assert_allclose(gram.solve(x), np.linalg.solve(H, x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gram.diagonal(), np.diag(H), rtol=1e-12)
    np.testing.assert_allclose(gram.scaled(2.5).matvec(x), 2.5 * (H @ x), atol=1e-12)


def test_diagonal_gram() -> None:
    d = RNG.random(5) + 0.5
    gram = DiagonalGram(d)
    x = _random(5)
    np.testing.assert_allclose(gram.matvec(x), d * x)
    np.testing.assert_allclose(gram.solve(x), x / d)
    np.testing.assert_allclose(gram.scaled(3.0).diagonal(), 3 * d)
    assert np.array_equal(DiagonalGram(2.0, 4).diagonal(), np.full(4, 2.0))
    assert gram.max_eigenvalue() == d.max()


def test_gram_addition_rules() -> None:
    d = RNG.random(30)
    fourier = FourierGram(_symmetric_eig((6, 5)), (6, 5))
    cosine = CosineGram(RNG.random((6, 5)), (6, 5))
    total = DiagonalGram(d) + DiagonalGram(1.0, 30)
    assert isinstance(total, DiagonalGram)
    np.testing.assert_allclose(total.d, d + 1)
    for spectral in (fourier, cosine):
        for shifted in (spectral + DiagonalGram(0.5, 30), DiagonalGram(0.5, 30) + spectral):
            assert type(shifted) is type(spectral)
            np.testing.assert_allclose(shifted.eig, spectral.eig + 0.5)
        doubled = spectral + spectral
        assert type(doubled) is type(spectral)
        np.testing.assert_allclose(doubled.eig, 2 * spectral.eig)
        assert spectral + DiagonalGram(d) is None
    assert fourier + cosine is None
    assert cosine + fourier is None
    assert fourier + FourierGram(_symmetric_eig((5, 6)), (5, 6)) is None
    assert cosine + CosineGram(RNG.random((10, 3)), (10, 3)) is None
    with pytest.raises(ValueError, match="sizes"):
        fourier + DiagonalGram(1.0, 29)
    with pytest.raises(TypeError):
        fourier + 1.0


def test_gram_errors() -> None:
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        FiniteDiff(6).gram().solve(np.ones(6))
    with pytest.raises(np.linalg.LinAlgError):
        DiagonalGram(np.array([1.0, 0.0])).solve(np.ones(2))
    with pytest.raises(ValueError, match="eig\\[k\\] = eig\\[-k\\]"):
        FourierGram(np.arange(6.0).reshape(3, 2), (3, 2))
    with pytest.raises(ValueError, match="negative"):
        CosineGram(-np.ones((2, 2)), (2, 2))
    with pytest.raises(ValueError, match="shape"):
        CosineGram(np.ones((2, 2)), (2, 3))
    with pytest.raises(ValueError, match="needs the size"):
        DiagonalGram(1.0)
    with pytest.raises(ValueError, match="a >= 0"):
        DiagonalGram(np.ones(3)).scaled(-1.0)
    with pytest.raises(ValueError, match="expected a vector"):
        DiagonalGram(np.ones(3)).matvec(np.ones(4))
    with pytest.raises(ValueError, match="expected a vector"):
        CosineGram(np.ones((2, 2)), (2, 2)).solve(np.ones(3))


# --------------------------------------------------------------------------------------------
# Norm estimation
# --------------------------------------------------------------------------------------------


def test_estimate_norm() -> None:
    for shape in [(50, 30), (30, 50), (1, 7)]:
        A = _random(*shape)
        true = np.linalg.norm(A, 2)
        estimate = estimate_norm(MatrixOp(A))
        assert true <= estimate <= 1.02 * true
    assert estimate_norm(MatrixOp(np.zeros((3, 4)))) == 0.0
    assert estimate_norm(Gather(np.array([], dtype=np.int64), 3)) == 0.0


def test_large_matrix_norm_bound() -> None:
    M = sp.random(700, 600, density=0.02, random_state=3)
    op = MatrixOp(M)
    true = spla.svds(M, k=1, return_singular_vectors=False, tol=1e-14)[0]
    absolute = abs(M)
    guaranteed = np.sqrt(absolute.sum(axis=0).max() * absolute.sum(axis=1).max())
    assert true <= op.norm_bound() <= min(1.02 * true, guaranteed)


# --------------------------------------------------------------------------------------------
# Constructor validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Identity(0), "positive integer"),
        (lambda: Diagonal(np.ones((2, 2))), "1-D"),
        (lambda: Diagonal(np.array([1.0, np.nan])), "NaN"),
        (lambda: ScalarMultiple(np.inf, Identity(2)), "finite"),
        (lambda: Gather(np.array([0, 3]), 3), r"\[0, 3\)"),
        (lambda: Gather(np.array([-1]), 3), r"\[0, 3\)"),
        (lambda: Gather(np.array([0.5]), 3), "integers"),
        (lambda: Gather(np.zeros((2, 2), dtype=int), 3), "1-D"),
        (lambda: MatrixOp(np.ones(3)), "2-D"),
        (lambda: MatrixOp(np.array([[np.inf]])), "NaN or inf"),
        (lambda: Compose(Identity(3), Identity(4)), "takes 3"),
        (lambda: Sum([Identity(3), Identity(4)]), "different shapes"),
        (lambda: Sum([]), "at least one"),
        (lambda: VStack([Identity(3), Identity(4)]), "column counts"),
        (lambda: Convolve1D(np.ones((2, 2)), 5), "1-D"),
        (lambda: Convolve1D(np.ones(2), 0), "positive integer"),
        (lambda: Conv2D(np.ones(3), (4, 4)), "2-D"),
        (lambda: Conv2D(np.ones((3, 3)), (4, 4, 4)), r"\(m, n\)"),
        (lambda: Conv2D(np.ones((3, 3)), (4, 0)), "positive integer"),
        (lambda: Conv2D(np.ones((3, 3)), (4, 4), "valid"), "mode"),
        (lambda: Conv2D(np.zeros((0, 3)), (4, 4)), "empty"),
        (lambda: FourierSample(np.ones((2, 2, 2), dtype=bool)), "1-D or 2-D"),
        (lambda: FourierSample(np.full((2, 2), 0.5)), "boolean"),
        (lambda: FiniteDiff((3, 4, 5), 0), "1-D or 2-D"),
        (lambda: FiniteDiff((3, 4), 2), "out of range"),
        (lambda: FiniteDiff((3, 4), 0, 3), "less than"),
        (lambda: FiniteDiff((3, 4), 0, 0), "positive integer"),
    ],
)
def test_constructors_validate(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_compose_rejects_non_operators() -> None:
    with pytest.raises(TypeError, match="LinOp"):
        Compose(np.eye(3), Identity(3))


@pytest.mark.parametrize(("rows", "cols"), [(2, 2), (3, 5), (9, 4), (40, 31)])
def test_tv_differences_are_cp_tv_matrix(rows: int, cols: int) -> None:
    """``TVDifferences`` is ``tv_matrix`` as an operator: the same products (matvec
    exactly), column norms and norm bound as the matrix's ``MatrixOp``."""
    op, matrix = TVDifferences(rows, cols), MatrixOp(tv_matrix(rows, cols))
    assert (op.to_sparse() != matrix.matrix).nnz == 0 and op.shape == matrix.shape
    x, y = _random(op.shape[1]), _random(op.shape[0])
    assert np.array_equal(op.matvec(x), matrix.matvec(x))
    assert np.allclose(op.rmatvec(y), matrix.rmatvec(y), rtol=0, atol=1e-13)
    assert np.array_equal(op.gram_diagonal(), matrix.gram_diagonal())
    assert op.norm_bound() == pytest.approx(matrix.norm_bound(), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 x 2"):
        TVDifferences(1, cols)
