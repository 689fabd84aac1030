"""Numba-compiled CPU kernels for the hot loops of the solvers.

An iteration written as a chain of NumPy calls pays Python and temporary-array
overhead on every step; for small and medium problems that overhead, not arithmetic,
is the cost. The kernels here fuse whole iterations into compiled loops over plain
arrays. Each has a NumPy reference elsewhere in cvxprox (``cvxprox.cones`` for the
projections) that the tests compare it against. Compiled code is cached on disk
(``cache=True``), so only the first solve after installation pays the compilation.
"""
