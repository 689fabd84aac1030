"""NABLAPROX's iterations next to its method's anchor, from two runs' result CSVs.

    python -m compare.anchor_ratio ours.csv anchor.csv

Both files are ``compare`` result CSVs: ours with NABLAPROX's records (e.g. Netlib at
``--eps 1e-4 --nablaprox-option algorithm=pdhg``), the anchor's from a run of PDLP or SCS
at the same accuracy, so that a stored anchor run need not be repeated. Prints the
report's section "Iterations next to the anchors" (``compare.report.anchor_lines``) for
the records of both.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from compare.report import anchor_lines, read_csv


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ours", type=Path)
    parser.add_argument("anchor", type=Path)
    args = parser.parse_args()
    lines = anchor_lines(read_csv(args.ours) + read_csv(args.anchor))
    print("\n".join(lines) if lines else "no case where NABLAPROX ran a method with an anchor")


if __name__ == "__main__":
    main()
