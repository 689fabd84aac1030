"""Cache of reference objective values, ``compare/results/references.json``.

Reference solves (Clarabel at 1e-10 for the zoo, HiGHS' IPM for the energy ladder) can
take longer than the benchmarked ones, so their values are kept between runs, keyed by
``suite/case/size``. Delete the file (or an entry) to recompute.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def reference_key(suite: str, case: str, size: int) -> str:
    """The cache key of one case: ``"suite/case/size"``."""
    return f"{suite}/{case}/{size}"


class ReferenceCache:
    """A JSON file mapping reference keys to ``{"objective", "solver", ...}`` entries."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] = (
            json.loads(path.read_text()) if path.exists() else {}
        )

    def get(self, key: str) -> float | None:
        """The cached objective of ``key``, or None."""
        entry = self._entries.get(key)
        return None if entry is None else float(entry["objective"])

    def put(self, key: str, objective: float, **details: Any) -> None:
        """Record ``objective`` (and details such as the solver) and save the file."""
        self._entries[key] = {"objective": objective, **details}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self._entries, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.path)
