"""An open gateway says so at startup, loudly when it listens beyond loopback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.access.notices import is_loopback
from tests.access.conftest import ADMIN_KEY, ADMIN_SHA256, KEYS_ENV
from tests.support.server import free_port, serve_app_in_thread, wait_until_healthy, write_config

OPEN = "providers:\n  echo: {preset: echo}\n"
CLOSED = OPEN + f'keys:\n  - {{name: ops, key_sha256: "{ADMIN_SHA256}", admin: true}}\n'


def notices(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "gateway.access"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        (None, True),
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("gateway.internal", False),
    ],
)
def test_what_counts_as_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_open_on_loopback_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_HOST", "127.0.0.1")
    caplog.set_level(logging.INFO, logger="gateway.access")
    with serve_app_in_thread(write_config(OPEN, tmp_path)):
        pass
    assert notices(caplog) == [
        (
            logging.WARNING,
            "no gateway keys configured: the gateway is open to anyone who can reach 127.0.0.1",
        )
    ]


def test_open_beyond_loopback_is_loud(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_HOST", "0.0.0.0")
    with serve_app_in_thread(write_config(OPEN, tmp_path)):
        pass
    [(level, message)] = notices(caplog)
    assert level == logging.CRITICAL
    assert "NO GATEWAY KEYS CONFIGURED and the gateway listens on 0.0.0.0" in message


def test_keys_silence_it_and_unusable_keys_are_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_HOST", "0.0.0.0")
    monkeypatch.delenv("ACCESS_TEST_KEY_UNSET", raising=False)
    config = CLOSED + '  - {name: team-x, key: "${ACCESS_TEST_KEY_UNSET}"}\n'
    with serve_app_in_thread(write_config(config, tmp_path)):
        pass
    assert notices(caplog) == [
        (logging.WARNING, "gateway key 'team-x' is disabled: ACCESS_TEST_KEY_UNSET is not set")
    ]


def test_a_reload_that_removes_every_key_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_HOST", "0.0.0.0")
    path = write_config(CLOSED, tmp_path)
    with serve_app_in_thread(path) as base_url:
        assert notices(caplog) == []
        path.write_text(OPEN)
        reloaded = httpx.post(
            f"{base_url}/admin/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"}
        )
        assert reloaded.json()["status"] == "reloaded"
    assert [level for level, _ in notices(caplog)] == [logging.CRITICAL]


def test_gateway_serve_on_all_interfaces_prints_the_banner(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(write_config(OPEN, tmp_path)),
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-reload-config",
        ],
        env={**os.environ, **KEYS_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process=process)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert b"NO GATEWAY KEYS CONFIGURED and the gateway listens on 0.0.0.0" in output
