"""Type-II Anderson acceleration of a fixed-point iteration w <- T(w).

With residuals g_k = T(w_k) - w_k and the last M differences
S = [w_{i+1} - w_i], Y = [g_{i+1} - g_i] (columns), the accelerated point is

    gamma   = argmin ||g_k - Y gamma||_2        (regularized normal equations)
    w_{k+1} = T(w_k) - (S + Y) gamma.

The Gram matrix Y'Y is updated one column at a time, so a step costs O(dim M); the
small system is solved after scaling Y's columns to unit norm, with a tiny ridge.
The caller safeguards: an extrapolated point whose residual grows is rejected and the
memory is reset (as SCS does).
"""

from __future__ import annotations

import numpy as np

_REGULARIZATION = 1e-10


class AndersonAcceleration:
    """Type-II Anderson acceleration with memory ``memory`` on vectors of length ``dim``."""

    def __init__(self, dim: int, memory: int) -> None:
        self._S = np.zeros((dim, memory))
        self._Y = np.zeros((dim, memory))
        self._gram = np.zeros((memory, memory))
        self._memory = memory
        self._count = 0
        self._head = 0
        self._w_prev: np.ndarray | None = None
        self._g_prev: np.ndarray | None = None
        self.extrapolated = False

    def reset(self) -> None:
        """Forget the stored differences."""
        self._count = 0
        self._head = 0
        self._w_prev = None
        self._g_prev = None
        self.extrapolated = False

    def extrapolate(self, w: np.ndarray, f: np.ndarray) -> np.ndarray:
        """The next point from the current point w and its image f = T(w) (a new array)."""
        g = f - w
        if self._w_prev is not None:
            j = self._head
            self._S[:, j] = w - self._w_prev
            self._Y[:, j] = g - self._g_prev
            self._count = min(self._count + 1, self._memory)
            row = self._Y[:, : self._count].T @ self._Y[:, j]
            self._gram[j, : self._count] = row
            self._gram[: self._count, j] = row
            self._head = (j + 1) % self._memory
        self._w_prev, self._g_prev = w, g
        self.extrapolated = False
        if self._count == 0:
            return f.copy()
        S, Y = self._S[:, : self._count], self._Y[:, : self._count]
        # Normalize the columns before regularizing: recent differences are orders of
        # magnitude smaller than old ones, and a regularization relative to the whole
        # Gram matrix would erase exactly the directions that matter near convergence.
        count = self._count
        gram = self._gram[:count, :count]
        scale = np.sqrt(gram.diagonal())
        if not scale.min() > 0:
            return f.copy()
        normalized = gram / (scale[:, None] * scale[None, :])
        normalized.flat[:: count + 1] += _REGULARIZATION
        try:
            gamma = np.linalg.solve(normalized, (Y.T @ g) / scale) / scale
        except np.linalg.LinAlgError:
            return f.copy()
        if not np.all(np.isfinite(gamma)):
            return f.copy()
        self.extrapolated = True
        return f - S @ gamma - Y @ gamma
