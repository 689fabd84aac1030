"""Array backends: where the iterations run.

Algorithm code is written once against an array namespace ``xp`` (NumPy on the CPU,
CuPy on a GPU). A backend knows its namespace, its dtype, and how to move dense and
sparse data to the device and back. This version ships the CPU backend; any other
device raises a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Backend:
    """An array namespace, a dtype and the transfers to and from it."""

    name: str
    xp: Any
    dtype: Any

    def asarray(self, a: np.ndarray) -> Any:
        """Dense host array -> device array of the backend's dtype."""
        return self.xp.asarray(a, dtype=self.dtype)

    def assparse(self, a: sp.sparray | sp.spmatrix) -> Any:
        """Sparse host matrix -> CSR matrix on the device (products ``A @ x``)."""
        return sp.csr_matrix(a, dtype=self.dtype)

    def to_host(self, a: Any) -> np.ndarray:
        """Device array -> float64 NumPy array."""
        return np.asarray(a, dtype=np.float64)


def get_backend(device: str = "cpu", dtype: str = "float64") -> Backend:
    """The backend for ``device`` and ``dtype`` ("float64" or "float32")."""
    if device != "cpu":
        raise ValueError(
            f"option 'device' must be 'cpu' in this version of cvxprox, got {device!r}"
        )
    return Backend("cpu", np, np.dtype(dtype))
