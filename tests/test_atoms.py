"""The imaging atoms conv2d and fourier_sample against SciPy, NumPy and other CVXPY solvers."""

import cvxpy as cp
import numpy as np
import pytest
import scipy.optimize
import scipy.signal

from cvxprox.atoms import conv2d, fourier_sample
from cvxprox.atoms.conv2d import conv2d_matrix
from cvxprox.atoms.fourier import fourier_sample_matrix

MODES = ["full", "same", "circular"]
KERNEL_SHAPES = [(1, 1), (3, 3), (4, 2), (2, 5), (8, 7)]
IMAGE_SHAPES = [(7, 5), (6, 8)]
BACKENDS = ["CPP", "SCIPY", "COO"]
SOLVERS = {
    "CLARABEL": {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10},
    "SCS": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 100_000},
}


def circular_reference(kernel: np.ndarray, image: np.ndarray) -> np.ndarray:
    """sum_{a,b} K[a,b] X[(i - a + p//2) mod m, (j - b + q//2) mod n], by shifted copies."""
    p, q = kernel.shape
    out = np.zeros(image.shape)
    for a in range(p):
        for b in range(q):
            out += kernel[a, b] * np.roll(image, (a - p // 2, b - q // 2), axis=(0, 1))
    return out


def conv_reference(kernel: np.ndarray, image: np.ndarray, mode: str) -> np.ndarray:
    if mode == "circular":
        return circular_reference(kernel, image)
    return scipy.signal.convolve2d(image, kernel, mode)


def fourier_reference(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    spectrum = np.fft.fft2(image, norm="ortho")
    r, c = np.nonzero(mask)
    return np.concatenate([spectrum[r, c].real, spectrum[r, c].imag])


def reference_matrix(linear_map, shape: tuple[int, int]) -> np.ndarray:
    """The matrix of an image -> array map on column-major vectors, one basis image at a time."""
    size = shape[0] * shape[1]
    columns = [
        np.ravel(linear_map(np.eye(size)[:, k].reshape(shape, order="F")), order="F")
        for k in range(size)
    ]
    return np.column_stack(columns)


def canonical_matrix(expr: cp.Expression, backend: str) -> np.ndarray:
    """The coefficient matrix CVXPY assembles for ``expr == 0`` (one variable, no offset)."""
    problem = cp.Problem(cp.Minimize(0), [expr == 0])
    data = problem.get_problem_data(cp.CLARABEL, canon_backend=backend)[0]
    np.testing.assert_array_equal(data["b"], 0.0)
    return data["A"].toarray()


def random_mask(rng: np.random.Generator, shape: tuple[int, int], rate: float) -> np.ndarray:
    mask = rng.random(shape) < rate
    mask[0, 0] = True
    return mask


@pytest.mark.parametrize("image_shape", IMAGE_SHAPES)
@pytest.mark.parametrize("kernel_shape", KERNEL_SHAPES)
@pytest.mark.parametrize("mode", MODES)
def test_conv2d_value_and_matrix(
    mode: str, kernel_shape: tuple[int, int], image_shape: tuple[int, int]
) -> None:
    seed = (MODES.index(mode), KERNEL_SHAPES.index(kernel_shape), IMAGE_SHAPES.index(image_shape))
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal(kernel_shape)
    image = rng.standard_normal(image_shape)
    expected = conv_reference(kernel, image, mode)
    X = cp.Variable(image_shape)
    X.value = image
    expr = conv2d(kernel, X, mode)
    assert expr.shape == expected.shape
    np.testing.assert_allclose(expr.value, expected, atol=1e-12)
    np.testing.assert_allclose(conv2d(kernel, image, mode).value, expected, atol=1e-12)

    matrix = conv2d_matrix(kernel, image_shape, mode).toarray()
    exact = reference_matrix(lambda img: conv_reference(kernel, img, mode), image_shape)
    np.testing.assert_allclose(matrix, exact, atol=1e-13)
    np.testing.assert_allclose(expr._grad([kernel, image])[1].toarray().T, exact, atol=1e-13)
    if kernel_shape == (3, 3):
        for backend in BACKENDS:
            np.testing.assert_allclose(canonical_matrix(expr, backend), exact, atol=1e-13)


def test_conv2d_even_kernel_origins() -> None:
    """Even kernels: "same" crops "full" at ((p-1)//2, (q-1)//2), "circular" centers at p//2."""
    kernel = np.zeros((4, 2))
    kernel[0, 0] = 1.0
    image = np.arange(30.0).reshape(6, 5)
    same = conv2d(kernel, image, "same").value
    np.testing.assert_array_equal(same[:-1, :], image[1:, :])
    np.testing.assert_array_equal(same[-1, :], 0.0)
    np.testing.assert_allclose(
        conv2d(kernel, image, "circular").value, np.roll(image, (-2, -1), axis=(0, 1)), atol=1e-12
    )


@pytest.mark.parametrize("shape", [(6, 8), (5, 7), (4, 4), (1, 6)])
def test_fourier_sample_value_and_matrix(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 10 + shape[1])
    mask = random_mask(rng, shape, 0.4)
    image = rng.standard_normal(shape)
    X = cp.Variable(shape)
    X.value = image
    expr = fourier_sample(X, mask)
    assert expr.shape == (2 * mask.sum(),)
    np.testing.assert_allclose(expr.value, fourier_reference(image, mask), atol=1e-12)

    exact = reference_matrix(lambda img: fourier_reference(img, mask), shape)
    np.testing.assert_allclose(fourier_sample_matrix(mask), exact, atol=1e-13)
    np.testing.assert_allclose(expr._grad([image])[0].toarray().T, exact, atol=1e-13)
    for backend in BACKENDS:
        np.testing.assert_allclose(canonical_matrix(expr, backend), exact, atol=1e-13)


def test_fourier_sample_accepts_zero_one_masks_and_copies() -> None:
    mask = np.zeros((3, 4))
    mask[0, 1] = mask[2, 3] = 1.0
    X = cp.Variable((3, 4))
    expr = fourier_sample(X, mask)
    assert expr.mask.dtype == bool and expr.shape == (4,)
    mask[1, 1] = 1.0
    assert expr.shape == (4,) and not expr.mask.flags.writeable
    clone = expr.copy()
    assert clone is not expr and np.array_equal(clone.mask, expr.mask)
    assert "mask 3x4 with 2 samples" in str(expr)
    assert conv2d(np.ones((2, 2)), X, "circular").copy().mode == "circular"


def test_dcp_properties() -> None:
    X = cp.Variable((5, 6))
    nonneg_X = cp.Variable((5, 6), nonneg=True)
    blur = np.full((3, 3), 1 / 9)
    edge = np.array([[1.0, -1.0]])
    expr = conv2d(blur, X, "same")
    assert expr.is_affine() and expr.is_dcp()
    assert conv2d(blur, nonneg_X).is_nonneg()
    assert conv2d(-blur, nonneg_X).is_nonpos()
    assert not conv2d(edge, nonneg_X).is_nonneg() and not conv2d(edge, nonneg_X).is_nonpos()
    assert conv2d(blur, cp.square(X)).is_convex()
    assert conv2d(-blur, cp.square(X)).is_concave()
    assert not conv2d(edge, cp.square(X)).is_dcp()
    assert not conv2d(np.eye(3), cp.Variable((4, 4), PSD=True), "same").is_psd()

    mask = np.eye(5, 6, dtype=bool)
    sample = fourier_sample(X, mask)
    assert sample.is_affine() and cp.sum_squares(sample).is_convex()
    assert not sample.is_nonneg() and not sample.is_nonpos()
    assert not fourier_sample(nonneg_X, mask).is_nonneg()
    assert not fourier_sample(cp.square(X), mask).is_dcp()


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_deblurring_recovers_the_image(solver: str) -> None:
    rng = np.random.default_rng(1)
    kernel = np.array([[1.0, 0.3, 0.1], [0.2, 0.1, 0.0]])
    truth = rng.standard_normal((6, 7))
    observed = scipy.signal.convolve2d(truth, kernel, "full")
    X = cp.Variable(truth.shape)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(conv2d(kernel, X) - observed)))
    problem.solve(solver=solver, **SOLVERS[solver])
    assert problem.status == cp.OPTIMAL
    np.testing.assert_allclose(X.value, truth, atol=1e-4)


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize(("mode", "kernel_shape"), [("same", (4, 3)), ("circular", (2, 4))])
def test_ridge_deconvolution_matches_numpy(
    solver: str, mode: str, kernel_shape: tuple[int, int]
) -> None:
    rng = np.random.default_rng(2)
    shape = (5, 6)
    kernel = rng.random(kernel_shape)
    observed = rng.standard_normal(shape)
    ridge = 0.1
    X = cp.Variable(shape)
    objective = cp.sum_squares(conv2d(kernel, X, mode) - observed) + ridge * cp.sum_squares(X)
    problem = cp.Problem(cp.Minimize(objective))
    problem.solve(solver=solver, **SOLVERS[solver])

    A = reference_matrix(lambda img: conv_reference(kernel, img, mode), shape)
    stacked = np.vstack([A, np.sqrt(ridge) * np.eye(A.shape[1])])
    rhs = np.concatenate([observed.ravel(order="F"), np.zeros(A.shape[1])])
    solution, *_ = np.linalg.lstsq(stacked, rhs, rcond=None)
    assert problem.status == cp.OPTIMAL
    np.testing.assert_allclose(X.value.ravel(order="F"), solution, atol=1e-5)
    assert problem.value == pytest.approx(np.sum((stacked @ solution - rhs) ** 2), rel=1e-6)


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_fourier_least_squares_matches_numpy(solver: str) -> None:
    rng = np.random.default_rng(3)
    shape = (6, 5)
    mask = random_mask(rng, shape, 0.5)
    truth = rng.standard_normal(shape)
    data = fourier_reference(truth, mask) + 0.01 * rng.standard_normal(2 * mask.sum())
    ridge = 1e-2
    X = cp.Variable(shape)
    objective = cp.sum_squares(fourier_sample(X, mask) - data) + ridge * cp.sum_squares(X)
    problem = cp.Problem(cp.Minimize(objective))
    problem.solve(solver=solver, **SOLVERS[solver])

    A = reference_matrix(lambda img: fourier_reference(img, mask), shape)
    stacked = np.vstack([A, np.sqrt(ridge) * np.eye(A.shape[1])])
    rhs = np.concatenate([data, np.zeros(A.shape[1])])
    solution, *_ = np.linalg.lstsq(stacked, rhs, rcond=None)
    assert problem.status == cp.OPTIMAL
    np.testing.assert_allclose(X.value.ravel(order="F"), solution, atol=1e-5)


def test_composition_sum_indexing_and_constraints() -> None:
    rng = np.random.default_rng(4)
    shape = (5, 6)
    kernel = rng.random((3, 3))
    offset = rng.standard_normal(shape)
    X = cp.Variable(shape)
    X.value = rng.standard_normal(shape)
    summed = conv2d(kernel, 2 * X + offset, "same")
    np.testing.assert_allclose(
        summed.value, conv_reference(kernel, 2 * X.value + offset, "same"), atol=1e-12
    )
    np.testing.assert_allclose(summed[1:3, 2].value, summed.value[1:3, 2], atol=0)
    mask = np.eye(*shape, dtype=bool)
    chained = fourier_sample(conv2d(kernel, X, "circular"), mask)
    np.testing.assert_allclose(
        chained.value, fourier_reference(circular_reference(kernel, X.value), mask), atol=1e-12
    )

    # min sum(X) s.t. conv2d(K, X, "same")[1:-1, 1:-1] >= 1, X >= 0, solved again by linprog.
    interior = (slice(1, -1), slice(1, -1))
    problem = cp.Problem(cp.Minimize(cp.sum(X)), [conv2d(kernel, X, "same")[interior] >= 1, X >= 0])
    problem.solve(solver="CLARABEL")
    assert problem.status == cp.OPTIMAL
    A = reference_matrix(lambda img: conv_reference(kernel, img, "same"), shape)
    rows = np.zeros(shape, dtype=bool)
    rows[interior] = True
    lp = scipy.optimize.linprog(
        np.ones(A.shape[1]), A_ub=-A[rows.ravel(order="F")], b_ub=-np.ones(rows.sum())
    )
    assert problem.value == pytest.approx(lp.fun, rel=1e-6)
    assert np.all(conv_reference(kernel, X.value, "same")[interior] >= 1 - 1e-6)


def test_parametrized_data_resolves() -> None:
    """DPP problems with Parameter data around the atoms re-solve with the new data."""
    rng = np.random.default_rng(5)
    kernel = np.array([[1.0, 0.3], [0.2, 0.1]])
    mask = random_mask(rng, (4, 5), 0.5)
    X = cp.Variable((4, 5))
    blurred = cp.Parameter((5, 6))
    samples = cp.Parameter(2 * mask.sum())
    problem = cp.Problem(
        cp.Minimize(
            cp.sum_squares(conv2d(kernel, X) - blurred)
            + cp.sum_squares(fourier_sample(X, mask) - samples)
        )
    )
    assert problem.is_dpp()
    for _ in range(2):
        truth = rng.standard_normal((4, 5))
        blurred.value = scipy.signal.convolve2d(truth, kernel)
        samples.value = fourier_reference(truth, mask)
        problem.solve(solver="CLARABEL")
        np.testing.assert_allclose(X.value, truth, atol=1e-6)


def _bad_inputs() -> list:
    X = cp.Variable((5, 6))
    blur = np.ones((3, 3))
    nan_kernel = blur.copy()
    nan_kernel[1, 1] = np.nan
    return [
        (lambda: conv2d(np.ones(3), X), "kernel must be 2-D"),
        (lambda: conv2d(np.ones((2, 2, 2)), X), "kernel must be 2-D"),
        (lambda: conv2d(nan_kernel, X), "finite"),
        (lambda: conv2d(np.full((2, 2), np.inf), X), "finite"),
        (lambda: conv2d(1j * blur, X), "kernel must be real"),
        (lambda: conv2d(cp.Parameter((3, 3), name="blur"), X), "Parameter blur"),
        (lambda: conv2d(2 * cp.Parameter((3, 3), name="psf"), X), "Parameter psf"),
        (lambda: conv2d(cp.Variable((3, 3)), X), "kernel must be a constant"),
        (lambda: conv2d(blur, X, "valid"), "unknown mode 'valid'"),
        (lambda: conv2d(blur, cp.Variable(6)), "X must be 2-D"),
        (lambda: conv2d(blur, cp.Variable((5, 6), complex=True)), "X must be real"),
        (lambda: fourier_sample(X, np.ones((6, 5), dtype=bool)), "does not match"),
        (lambda: fourier_sample(X, np.zeros((5, 6), dtype=bool)), "at least one"),
        (lambda: fourier_sample(X, np.full((5, 6), 2.0)), "boolean"),
        (lambda: fourier_sample(X, np.ones(30, dtype=bool)), "mask must be 2-D"),
        (lambda: fourier_sample(X, cp.Parameter((5, 6), name="k")), "Parameter k"),
        (lambda: fourier_sample(cp.Variable(30), np.ones((5, 6))), "X must be 2-D"),
        (lambda: fourier_sample(cp.Variable((5, 6), complex=True), np.ones((5, 6))), "real"),
    ]


@pytest.mark.parametrize(("build", "message"), _bad_inputs())
def test_bad_inputs_raise_value_error(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()
