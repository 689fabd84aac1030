"""Linear combinations of vectors in one pass: out = sum_i a_i v_i for two or three
vectors (``NumPyBackend.combine``).

NumPy evaluates a v + b w + c u as five passes over memory and four temporaries; on
the vectors of a first-order iteration (10^4 to 10^6 entries) that is most of the
cost of the combination. These loops read each vector once and write the result once.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def combine2(a: float, v: np.ndarray, b: float, w: np.ndarray) -> np.ndarray:
    """a v + b w (a new array of v's dtype)."""
    out = np.empty_like(v)
    for i in range(v.shape[0]):
        out[i] = a * v[i] + b * w[i]
    return out


@njit(cache=True)
def combine3(
    a: float, v: np.ndarray, b: float, w: np.ndarray, c: float, u: np.ndarray
) -> np.ndarray:
    """a v + b w + c u (a new array of v's dtype)."""
    out = np.empty_like(v)
    for i in range(v.shape[0]):
        out[i] = (a * v[i] + b * w[i]) + c * u[i]
    return out
