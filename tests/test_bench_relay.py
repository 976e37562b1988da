"""The benchmark's relay is the ceiling on the gateway's server stack, so it gets the gateway's
server-level set-up: its protocol (``bench.relay.main``) and its garbage-collector settling.

Without the latter, the relay's full collections (100 ms and more with 1,000 streams open)
made its slow-streams tail look far worse than the gateway's, a flattering comparison.
"""

from __future__ import annotations

import gc

import pytest
from bench.relay import create_relay
from starlette.testclient import TestClient


@pytest.mark.usefixtures("restored_gc")
def test_the_relay_settles_its_collector_once_started() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    with TestClient(create_relay("http://127.0.0.1:9")):
        assert gc.get_threshold()[2] >= 1 << 30  # no allocation-driven full collection
        assert gc.get_freeze_count() > 0  # what it loaded is out of the collector's sight
