"""Median iteration ratio of one solver to an anchor over the cases both solved.

    python -m compare.anchor_ratio ours.csv anchor.csv

Both files are ``compare`` result CSVs (columns case, solver, status, success,
iterations). A case counts when ours succeeded (its ``success``: the suite's own check)
and the anchor reported ``optimal`` by its own criterion; with ``--strict`` the anchor must
pass the suite's check too. Prints each case's ratio and their median.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {row["case"]: row for row in csv.DictReader(f)}


def _solved(row: dict[str, str], strict: bool) -> bool:
    if strict:
        return row.get("success") == "True"
    return row.get("status") == "optimal"


def ratios(ours: Path, anchor: Path, strict: bool = False) -> dict[str, float]:
    """{case: ours' iterations / the anchor's} over the cases both solved."""
    mine, theirs = _rows(ours), _rows(anchor)
    out = {}
    for case, row in mine.items():
        other = theirs.get(case)
        if other is None or row.get("success") != "True" or not _solved(other, strict):
            continue
        out[case] = float(row["iterations"]) / max(float(other["iterations"]), 1.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ours", type=Path)
    parser.add_argument("anchor", type=Path)
    parser.add_argument("--strict", action="store_true", help="the anchor passes the check too")
    args = parser.parse_args()
    found = ratios(args.ours, args.anchor, args.strict)
    for case, ratio in sorted(found.items(), key=lambda item: item[1]):
        print(f"{case:12s} {ratio:8.3f}")
    if found:
        print(f"median over {len(found)} cases: {statistics.median(found.values()):.3f}")
    else:
        print("no case solved by both")


if __name__ == "__main__":
    main()
