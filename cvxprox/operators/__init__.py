"""The A_i of a Program: linear operators with ``matvec``, ``rmatvec``, norm bounds and Gram
structure, matrix-free where the structure allows (``linops.py``)."""
