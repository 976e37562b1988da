"""Fixtures shared across the suite."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway import native
from tests.support.fake_upstream import FakeUpstream, fake_upstream


def pytest_sessionstart(session: pytest.Session) -> None:
    """The suite tests the code a deployment runs: not extensions built from older sources."""
    stale = native.status().stale
    if stale:
        pytest.exit(
            f"compiled modules are older than their sources: {', '.join(stale)}; "
            "run `make install` (scripts/compile_native.py) first",
            returncode=2,
        )


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    """A scripted upstream on loopback, one per test module."""
    with fake_upstream() as fake:
        yield fake


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The test process's collector as it was, whatever the test did to it."""
    thresholds = gc.get_threshold()
    enabled = gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
