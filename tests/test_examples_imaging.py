"""The imaging examples (examples/tv_denoising.py, deconvolution.py, inpainting.py, mri.py).

At small sizes NABLAPROX must reach Clarabel's optimal value (tight tolerances) to 1e-3
relative, each data generator must produce what its docstring states, and each script's
``main`` must run end to end and write its PNG.
"""

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import cvxpy as cp
import numpy as np
import pytest

import cvxprox  # noqa: F401

_EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, _EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


_load("imaging")  # first: the scripts import it as ``imaging``
tv = _load("tv_denoising")
deconv = _load("deconvolution")
inpaint = _load("inpainting")
mri = _load("mri")

CLARABEL_TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
EPS_1E5 = {"eps_abs": 1e-5, "eps_rel": 1e-5}


@pytest.mark.parametrize(
    ("make_data", "build_problem", "size", "options"),
    [
        (tv.make_data, tv.build_problem, 24, EPS_1E5),
        (deconv.make_data, deconv.build_problem, 200, {}),
        (deconv.make_data_2d, deconv.build_problem_2d, 32, {}),
        (inpaint.make_data, inpaint.build_problem, 24, EPS_1E5),
        (mri.make_data, mri.build_problem, 16, EPS_1E5),
    ],
    ids=["tv_denoising", "deconvolution_1d", "deconvolution_2d", "inpainting", "mri"],
)
def test_nablaprox_matches_clarabel(
    make_data: Callable[..., tuple[np.ndarray, ...]],
    build_problem: Callable[..., cp.Problem],
    size: int,
    options: dict,
) -> None:
    """With the options each script uses by default (deconvolution: NABLAPROX's own).

    ``build_problem`` takes what ``make_data`` returns after the ground truth.
    """
    _, *data = make_data(size, seed=1)
    problem = build_problem(*data)
    problem.solve(solver="CLARABEL", **CLARABEL_TIGHT)
    assert problem.status == cp.OPTIMAL
    reference = problem.value
    problem.solve(solver="NABLAPROX", **options)
    assert problem.status == cp.OPTIMAL
    assert abs(problem.value - reference) <= 1e-3 * abs(reference)


def test_tv_data() -> None:
    truth, noisy = tv.make_data(40, seed=3)
    assert truth.shape == noisy.shape == (40, 40)
    assert truth.min() >= 0 and truth.max() <= 1
    assert len(np.unique(truth)) >= 5  # piecewise constant with several levels
    np.testing.assert_array_equal(noisy, tv.make_data(40, seed=3)[1])
    assert 0.09 < np.std(noisy - truth) < 0.11


def test_deconvolution_data() -> None:
    truth, kernel, observed = deconv.make_data(300, seed=2)
    assert truth.shape == (300,) and observed.shape == (300 + kernel.size - 1,)
    assert kernel.sum() == pytest.approx(1.0)
    assert np.std(observed - np.convolve(kernel, truth)) == pytest.approx(0.02, rel=0.2)
    truth2, kernel2, observed2 = deconv.make_data_2d(30, seed=2)
    assert truth2.shape == observed2.shape == (30, 30) and kernel2.shape == (9, 9)
    blurred = deconv.conv2d(kernel2, truth2, mode="same").value
    assert np.std(observed2 - blurred) == pytest.approx(0.01, rel=0.2)


def test_inpainting_data() -> None:
    truth, mask, observed = inpaint.make_data(50, seed=4)
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert 0.5 <= 1 - mask.mean() <= 0.7
    np.testing.assert_array_equal(observed, mask * truth)
    problem = inpaint.build_problem(mask, observed)
    problem.variables()[0].value = truth
    assert all(c.violation().max() <= 1e-12 for c in problem.constraints)


def test_mri_mask_and_zero_filled_image() -> None:
    truth, mask, data = mri.make_data(64, seed=0)
    assert truth.min() >= 0 and truth.max() <= 1
    assert 0.25 <= mask.mean() <= 0.35
    assert mask[0, 0] and mask[1, 1] and mask[-1, -1] and mask[-2, 1] and mask[3, -3]
    expected = np.fft.fft2(truth, norm="ortho")[mask]
    k = mask.sum()
    assert np.std(data[:k] - expected.real) == pytest.approx(0.01, rel=0.2)
    full = np.ones((12, 12), dtype=bool)
    image = np.random.default_rng(0).random((12, 12))
    exact = mri.fourier_sample(image, full).value
    np.testing.assert_allclose(mri.zero_filled(full, exact), image, atol=1e-12)
    assert mri.psnr(mri.zero_filled(mask, data), truth) < 25.0


@pytest.mark.parametrize(
    ("module", "argv", "png"),
    [
        (tv, ["--size", "16"], "tv_denoising.png"),
        (deconv, ["--n", "120"], "deconvolution.png"),
        (deconv, ["--2d", "--size", "32"], "deconvolution_2d.png"),
        (inpaint, ["--size", "16"], "inpainting.png"),
        (mri, ["--size", "16"], "mri.png"),
    ],
    ids=["tv_denoising", "deconvolution_1d", "deconvolution_2d", "inpainting", "mri"],
)
def test_main_writes_png(module, argv: list[str], png: str, tmp_path: Path, capsys) -> None:
    solves = module.main([*argv, "--out", str(tmp_path)])
    assert [s.status for s in solves] == [cp.OPTIMAL, cp.OPTIMAL]
    assert (tmp_path / png).stat().st_size > 1000
    out = capsys.readouterr().out
    assert "NABLAPROX" in out and "PSNR" in out
