"""The torch backend: torch tensors on the CPU or a CUDA device, CSR tensors for A."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from cvxprox.backend import Array, Backend

try:
    import torch
except ImportError as exc:
    raise ValueError("backend='torch' needs PyTorch (pip install cvxprox[torch])") from exc


class TorchBackend(Backend):
    """torch tensors of ``dtype`` on ``device`` ("cpu" or "cuda").

    Sparse matrices are ``torch.sparse_csr_tensor``s (32-bit indices when they fit);
    ``A @ x`` is torch's CSR matrix-vector product on the tensor's device.
    """

    name = "torch"

    def __init__(self, device: str = "cpu", dtype: str = "float64") -> None:
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device='cuda' with backend='torch' needs a CUDA build of torch and a GPU; "
                f"torch {torch.__version__} finds none (or use CuPy: pip install cvxprox[gpu])"
            )
        import array_api_compat.torch as xp_torch  # noqa: PLC0415

        self.xp = xp_torch
        self.dtype = getattr(torch, dtype)
        self.device = torch.device(device)

    def asarray(self, a: np.ndarray) -> torch.Tensor:
        return torch.tensor(np.asarray(a), dtype=self.dtype, device=self.device)

    def to_host(self, a: Array) -> np.ndarray:
        return a.detach().to(device="cpu", dtype=torch.float64).numpy()

    def csr(self, a: sp.sparray | sp.spmatrix) -> Any:
        a = sp.csr_array(a, copy=True)
        a.sum_duplicates()
        index = np.int32 if a.nnz < 2**31 and max(a.shape) < 2**31 else np.int64
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(
                torch.as_tensor(a.indptr.astype(index), device=self.device),
                torch.as_tensor(a.indices.astype(index), device=self.device),
                torch.as_tensor(a.data, dtype=self.dtype, device=self.device),
                size=a.shape,
                check_invariants=False,
            )

    def cho_solver(self, L: np.ndarray) -> Callable[[Array], Array]:
        factor = self.asarray(np.tril(L))
        return lambda rhs: torch.cholesky_solve(rhs[:, None], factor)[:, 0]

    def lu_solver(self, K: np.ndarray) -> Callable[[Array], Array]:
        lu, pivots = torch.linalg.lu_factor(self.asarray(K))
        return lambda rhs: torch.linalg.lu_solve(lu, pivots, rhs[:, None])[:, 0]

    @contextlib.contextmanager
    def cpu_threads(self, count: int | None) -> Iterator[None]:
        """torch's intra-op threads limited to ``count`` (None: one) on the CPU."""
        if self.device.type != "cpu":
            yield
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(min(count or 1, threads))
        try:
            yield
        finally:
            torch.set_num_threads(threads)
