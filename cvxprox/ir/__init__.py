"""The one IR: ``Program`` and its assembled view (``program.py``), and a batch of programs
stacked into one (``batch.py``)."""
