"""The methods: ``pdhg.py``, ``admm/`` (KKT-factored and split ADMM, HQS), ``fista.py``,
``hybrid.py`` (the embedding then PDHG for LPs); ``select.py`` picks one for a Program and runs it;
``common/`` holds what they share."""
