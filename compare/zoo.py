"""16 everyday CVXPY models: an alias of ``python -m compare --suite zoo``.

Usage (from the repository root): ``python compare/zoo.py [options]``, with the options
of ``python -m compare`` (see ``--help``).
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the `compare` package
    from compare.cli import main

    main(["--suite", "zoo", *sys.argv[1:]])
