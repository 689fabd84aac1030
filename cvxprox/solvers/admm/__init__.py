"""ADMM: with a cached factorization of the KKT matrix on an assembled view (``kkt.py``),
and split ADMM and HQS on a Program's terms (``split.py``) with their x-update solvers
(``xupdate.py``)."""
