"""The f_i of a Program: functions with a cheap proximal operator (``prox.py``) and cones,
whose prox is their projection (``cones.py``)."""
