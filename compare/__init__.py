"""Benchmark scripts comparing NABLAPROX with other CVXPY solvers."""
