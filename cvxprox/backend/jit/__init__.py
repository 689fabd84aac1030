"""Numba-compiled CPU kernels for the hot loops of the solvers.

An iteration written as a chain of NumPy calls pays Python and temporary-array
overhead on every step; for small and medium problems that overhead, not arithmetic,
is the cost. The kernels here fuse whole iterations into compiled loops over plain
arrays. Each has a NumPy reference elsewhere in cvxprox (``cvxprox.functions.cones`` for the
projections) that the tests compare it against.

A kernel is compiled on its first call, for the types of its arguments, and cached on disk
(``cache=True``), so only the first solve after installation that reaches it pays the
compilation (``python -m compare.first_solve`` measures it). Compilation time grows with
the code compiled and every separately compiled function costs a fixed overhead, hence:
the cone projection is compiled per combination of the cone kinds present (a kind that is
absent is None and its code is pruned, see ``cvxprox.backend.jit.cones``); work done once per
solve (assembling the KKT matrix) is NumPy; arguments come with fixed types (int64
indices from :func:`csc_arrays`, C-contiguous float64 vectors) so that one compilation
serves every problem; and copies are loops, since a slice assignment compiles NumPy's
shape check and its error message.

Numba tells a cached kernel stale by the time stamp of its own file only, while a kernel
compiles the kernels it calls from the other files of this package into itself: after
an edit of ``cones.py`` the cached ADMM loops of ``hsde.py`` would still project with the
old code. So the package keeps its cached kernels only while all its files are as they
were (:func:`drop_stale_kernels`, on import).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

#: The file in ``__pycache__`` that holds the digest of the sources its kernels were
#: compiled from.
SOURCES_STAMP = "kernel-sources.sha256"


def drop_stale_kernels(package: Path = Path(__file__).parent) -> bool:
    """Remove the cached kernels (``__pycache__/*.nbi``, ``*.nbc``) of ``package`` unless
    its ``*.py`` files are those they were compiled from (the digest in
    ``SOURCES_STAMP``), and record the current digest. Returns whether any were removed.
    A package whose ``__pycache__`` cannot be written (a read-only installation, where
    Numba caches elsewhere and the sources do not change) is left as it is."""
    digest = hashlib.sha256()
    for source in sorted(package.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    cache = package / "__pycache__"
    stamp = cache / SOURCES_STAMP
    if stamp.is_file() and stamp.read_text() == digest.hexdigest():
        return False
    try:
        cache.mkdir(exist_ok=True)
        stale = [*cache.glob("*.nbi"), *cache.glob("*.nbc")]
        for kernel in stale:
            kernel.unlink(missing_ok=True)
        stamp.write_text(digest.hexdigest())
    except OSError:
        return False
    return bool(stale)


drop_stale_kernels()


def csc_arrays(M: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr, indices, data)`` of a CSC matrix, the form the kernels take: int64 indices
    (SciPy's int32 ones converted, so that one compiled signature serves every matrix) and
    the float64 ``data`` itself, not a copy, which kernels may scale in place.
    For ``None``, empty arrays, which the kernels read as "no matrix" (an indptr shorter
    than the number of columns plus one)."""
    if M is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    if M.data.dtype != np.float64:
        raise TypeError(f"the kernels take float64 matrices, got {M.data.dtype}")
    return M.indptr.astype(np.int64, copy=False), M.indices.astype(np.int64, copy=False), M.data
