"""Solver options that put a test on a GPU backend, or skip it where there is none."""

from __future__ import annotations

import pytest


def cupy_options() -> dict[str, str]:
    """Options of the CuPy backend; skips the test without CuPy or a CUDA device."""
    cupy = pytest.importorskip("cupy")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        count = 0
    if count == 0:
        pytest.skip("no CUDA device")
    return {"backend": "cupy", "device": "cuda"}


def torch_cuda_options() -> dict[str, str]:
    """Options of the torch backend on CUDA; skips the test without a CUDA build of torch."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    return {"backend": "torch", "device": "cuda"}
