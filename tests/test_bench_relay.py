"""The benchmark's relay is the ceiling on the gateway's server stack, so it gets the gateway's
server-level set-up: its protocol (``bench.relay.main``) and its garbage-collector settling.

Without the latter, the relay's full collections (100 ms and more with 1,000 streams open)
made its slow-streams tail look far worse than the gateway's, a flattering comparison.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from bench.relay import create_relay
from starlette.testclient import TestClient


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_the_relay_settles_its_collector_once_started() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    with TestClient(create_relay("http://127.0.0.1:9")):
        assert gc.get_threshold()[2] >= 1 << 30  # no allocation-driven full collection
        assert gc.get_freeze_count() > 0  # what it loaded is out of the collector's sight
