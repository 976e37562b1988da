"""Limits shared by replicas: two ``gateway serve`` processes and one real ``redis-server``."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.access.conftest import KEY_A, KEY_B, KEYS_ENV
from tests.support.server import free_port, wait_until_healthy, write_config

CONFIG = """
server: {{redis_url: "{redis_url}"}}
default_provider: echo
providers:
  echo: {{preset: echo}}
keys:
  - {{name: team-a, key: "${{ACCESS_TEST_KEY_A}}", limits: {{rpm: 10}}}}
  - {{name: team-b, key: "${{ACCESS_TEST_KEY_B}}", limits: {{tpm: 600}}}}
"""


@contextlib.contextmanager
def replicas(config: Path, count: int) -> Iterator[list[str]]:
    """``count`` gateway processes on one config, started together; yields their URLs."""
    ports = [free_port() for _ in range(count)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-reload-config",
            ],
            env={**os.environ, **KEYS_ENV},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url, process in zip(urls, processes, strict=True):
            wait_until_healthy(url, process=process)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def gateways(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    config = write_config(
        CONFIG.format(redis_url=redis_server), tmp_path_factory.mktemp("redis-limits")
    )
    with replicas(config, 2) as urls:
        yield urls


def ask(url: str, key: str, text: str = "hi") -> httpx.Response:
    return httpx.post(
        f"{url}/v1/responses",
        json={"model": "echo", "input": text},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_two_replicas_share_one_requests_budget(gateways: list[str], redis_server: str) -> None:
    first, second = gateways
    remaining = []
    for index in range(10):
        response = ask(gateways[index % 2], KEY_A)
        assert response.status_code == 200, response.text
        remaining.append(int(response.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]  # one budget, whichever replica answers
    for url in (first, second):
        refused = ask(url, KEY_A)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(refused.headers["retry-after"]) <= 6  # one request back every 6 s
    client = redis.Redis.from_url(redis_server)
    try:
        assert 0 < client.pttl("gateway:ratelimit:key:team-a:rpm") <= 61_000  # expires when full
    finally:
        client.close()


def test_tokens_used_on_one_replica_count_on_the_other(gateways: list[str]) -> None:
    first, second = gateways
    used = ask(first, KEY_B, " ".join(["w"] * 310))  # 620 tokens: 20 over the limit
    assert used.status_code == 200
    assert used.json()["usage"]["total_tokens"] == 620
    refused = ask(second, KEY_B)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "tokens"
