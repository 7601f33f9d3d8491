"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import simulate_tiny


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory) -> Path:
    """54 maps of 18 clusters (64 px, equal class shares). Shared: copy it before editing."""
    return simulate_tiny(tmp_path_factory.mktemp("tiny") / "data")
