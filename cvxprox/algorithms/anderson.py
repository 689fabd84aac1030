"""Type-II Anderson acceleration of a fixed-point iteration w <- T(w).

The step itself is the compiled ``cvxprox.jit.anderson.anderson_step`` (see there for
the math); this class owns its memory, so that Python code and the compiled solver
loops share one implementation. The caller safeguards: an extrapolated point whose
residual grows is rejected and the memory is reset (as SCS does).
"""

from __future__ import annotations

import numpy as np

from cvxprox.jit.anderson import EXTRAPOLATED, ISTATE, anderson_reset, anderson_step


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
