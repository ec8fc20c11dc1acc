"""The packaging modules' shared fixture: the cached minimal Debian root."""

from __future__ import annotations

from pathlib import Path

import pytest

from .debian_root import base_root_tarball


@pytest.fixture(scope="module")
def base_root() -> Path:
    """The tarball of a minimal root of the host's Debian release (built once, cached)."""
    return base_root_tarball()
