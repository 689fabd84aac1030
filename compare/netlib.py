"""Netlib LPs: an alias of ``python -m compare --suite netlib``.

Usage (from the repository root): ``python compare/netlib.py [options]``, with the options
of ``python -m compare`` (see ``--help``).
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the `compare` package
    from compare.cli import main

    main(["--suite", "netlib", *sys.argv[1:]])
