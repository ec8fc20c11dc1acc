"""Suite-wide: the longest modules are collected first.

`make test` spreads whole modules over pytest-xdist workers (``--dist loadfile``,
so a module's fixtures are built once); handing out the longest first keeps one
of them from starting last and leaving the other worker idle. The order inside a
module does not change, and a run without workers is the same suite.
"""

from __future__ import annotations

import pytest

#: Longest first (seconds of a whole-suite run on the 2-core CI machine, roughly).
LONGEST_FIRST = (
    "tests/packaging/test_system_install.py",  # ~400 s: debootstrap root, install-system twice
    "tests/packaging/test_deb.py",  # ~200 s: two package builds, dpkg in chroots
    "tests/corpus/test_corpus.py",  # ~120 s: every device profile end to end
    "tests/adapters/ieee2030_5/test_gridappsd_e2e.py",  # GridAPPS-D server
    "tests/e2e/test_revert.py",
    "tests/e2e/test_native_temporary_curve.py",  # ~60 s: four gateways, 10 s reversions
    "tests/adapters/ieee2030_5/test_registration_e2e.py",
    "tests/security/test_fuzz_flood.py",
)


def _rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: each module keeps its own order
