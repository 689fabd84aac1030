"""Maros-Meszaros QPs: an alias of ``python -m compare --suite maros-meszaros``.

Usage (from the repository root): ``python compare/maros_meszaros.py [options]``, with
the options of ``python -m compare`` (see ``--help``).
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the `compare` package
    from compare.cli import main

    main(["--suite", "maros-meszaros", *sys.argv[1:]])
