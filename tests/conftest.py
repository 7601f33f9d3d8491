"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import helpers
import pytest
from helpers import simulate_tiny


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory) -> Path:
    """54 maps of 18 clusters (64 px, equal class shares). Shared: copy it before editing."""
    return simulate_tiny(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory):
    """Tests never fill the user's real cache: ``COOLCORE_CACHE_DIR`` names a
    temporary folder, here and in the commands the tests run in subprocesses."""
    folder = str(tmp_path_factory.mktemp("coolcore-cache"))
    patch = pytest.MonkeyPatch()
    patch.setenv("COOLCORE_CACHE_DIR", folder)
    patch.setitem(helpers.ONE_THREAD_ENV, "COOLCORE_CACHE_DIR", folder)
    yield Path(folder)
    patch.undo()
