"""Type-II Anderson acceleration of a fixed-point iteration w <- T(w).

The step on NumPy is the compiled ``cvxprox.backend.jit.anderson.anderson_step`` (see there for
the math); ``AndersonAcceleration`` owns its memory, so that Python code and the compiled
solver loops share one implementation. ``PlainAnderson`` is the same step written against
the array namespace (the reference of the compiled step, and the step on torch and CuPy).
The caller safeguards: an extrapolated point whose residual grows is rejected and the
memory is reset (as SCS does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cvxprox.backend import Array, Backend
from cvxprox.backend.jit.anderson import (
    EXTRAPOLATED,
    ISTATE,
    REGULARIZATION,
    anderson_reset,
    anderson_step,
)


class AndersonAcceleration:
    """Type-II Anderson acceleration with memory ``memory`` on vectors of length ``dim``.

    ``arrays`` is the memory tuple the compiled step takes.
    """

    def __init__(self, dim: int, memory: int) -> None:
        self.arrays = (
            np.zeros((memory, dim)),
            np.zeros((memory, dim)),
            np.zeros((memory, memory)),
            np.zeros(dim),
            np.zeros(dim),
            np.zeros(4, dtype=np.int64),
            np.zeros((memory + 2, memory)),
        )

    @property
    def extrapolated(self) -> bool:
        """Whether the last step extrapolated (False after a reset or a plain step)."""
        return bool(self.arrays[ISTATE][EXTRAPOLATED])

    def reset(self) -> None:
        """Forget the stored differences."""
        anderson_reset(self.arrays[ISTATE])

    def extrapolate(self, w: np.ndarray, f: np.ndarray) -> np.ndarray:
        """The next point from the current point w and its image f = T(w) (a new array)."""
        out = np.empty_like(f)
        anderson_step(self.arrays, np.ascontiguousarray(w), np.ascontiguousarray(f), out)
        return out


class PlainAnderson:
    """``anderson_step`` on a backend's vectors of length ``dim``, memory ``memory``.

    S and Y are (memory, dim) device arrays used as a ring buffer, the Gram matrix Y Y'
    a (memory, memory) device array updated one row per step; the small regularized
    system is solved by ``xp.linalg.solve`` after scaling Y's rows to unit norm. Its
    validity (positive Gram diagonal, finite weights) is read back as one scalar.
    """

    def __init__(self, dim: int, memory: int, backend: Backend) -> None:
        xp, like = backend.xp, {"dtype": backend.dtype, "device": backend.device}
        self._xp, self._backend = xp, backend
        self._S = xp.zeros((memory, dim), **like)
        self._Y = xp.zeros((memory, dim), **like)
        self._gram = xp.zeros((memory, memory), **like)
        self._eye = xp.eye(memory, **like)
        self._size = memory
        self._w_prev: Any = None
        self._g_prev: Any = None
        self.reset()

    def reset(self) -> None:
        """Forget the stored differences."""
        self._count = self._head = 0
        self._w_prev = None
        self.extrapolated = False

    def step(self, w: Array, f: Array) -> Array:
        """The accelerated successor of w given f = T(w) (f itself when the step does not
        extrapolate; ``extrapolated`` says which)."""
        xp = self._xp
        g = f - w
        if self._w_prev is not None:
            j = self._head
            self._S[j, :] = w - self._w_prev
            self._Y[j, :] = g - self._g_prev
            self._count = min(self._count + 1, self._size)
            row = self._Y[: self._count] @ self._Y[j]
            self._gram[j, : self._count] = row
            self._gram[: self._count, j] = row
            self._head = (j + 1) % self._size
        self._w_prev, self._g_prev = w, g
        self.extrapolated = False
        count = self._count
        if count == 0:
            return f
        gram = self._gram[:count, :count]
        diagonal = xp.linalg.diagonal(gram)
        scale = xp.sqrt(xp.where(diagonal > 0, diagonal, 1.0))
        normalized = (
            gram / (scale[:, None] * scale[None, :]) + REGULARIZATION * self._eye[:count, :count]
        )
        rhs = (self._Y[:count] @ g) / scale
        gamma = xp.linalg.solve(normalized, rhs) / scale
        valid = xp.all(diagonal > 0) & xp.all(xp.isfinite(gamma))
        if not self._backend.scalar(valid):
            return f
        self.extrapolated = True
        return f - gamma @ self._S[:count] - gamma @ self._Y[:count]
