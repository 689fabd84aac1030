"""The benchmark suites, by the name ``python -m compare --suite`` takes.

Each suite module has a ``suite()`` factory returning a :class:`compare.harness.Suite`;
modules are imported on demand, so a suite whose data is missing does not stop others.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from compare.harness import Suite

#: Suite name -> module with its ``suite()`` factory.
SUITES = {
    "zoo": "compare.suites.zoo",
    "netlib": "compare.suites.netlib",
    "maros-meszaros": "compare.suites.maros_meszaros",
    "energy": "compare.suites.energy",
    "structured": "compare.suites.structured",
}

#: Suites whose ``suite()`` takes a list of sizes.
SIZED_SUITES = ("energy", "structured")


def make_suite(name: str, sizes: Sequence[str] | None = None) -> Suite:
    """The suite ``name``, at ``sizes`` where it has sizes; ValueError if unknown."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    module = importlib.import_module(SUITES[name])
    if name in SIZED_SUITES:
        return module.suite(sizes)
    if sizes:
        raise ValueError(f"--sizes applies to the {', '.join(SIZED_SUITES)} suite only")
    return module.suite()
