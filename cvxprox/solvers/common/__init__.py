"""What every method shares: equilibration (``scaling.py``, ``column_scaling.py``), the
termination test (``termination.py``) on an assembled view (``kkt_checks.py``) or on a
Program's terms (``term_checks.py``, ``terms.py``), statuses and results (``result.py``),
the iteration log (``log.py``), polishing (``polish.py``), Anderson acceleration
(``anderson.py``) and the ``Algorithm`` base (``algorithm.py``)."""
