"""How CVXPY sees cvxprox: the solver NABLAPROX, its chain and registration (``solver.py``),
its options (``options.py``) and ``cvxprox.compile`` (``inspect.py``)."""
