"""Hot reload in real ``gateway serve`` processes: SIGHUP, and several workers converging."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from gateway.config.build import load_runtime
from tests.config.test_reload import BASE, eventually, serves, with_alias
from tests.support.server import free_port, wait_until_healthy, write_config


@contextlib.contextmanager
def serve(config: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m gateway serve`` in a child process; yields its URL and the process."""
    port = free_port()
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url, timeout=60, process=process)  # workers start slowly
        yield base_url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_sighup_forces_a_reload_even_when_watching_is_off(tmp_path: Path) -> None:
    config = write_config(BASE, tmp_path)
    with serve(config, "--no-reload-config") as (base_url, process):
        assert httpx.get(f"{base_url}/healthz").json()["reloads"]["watching"] == "off"
        config.write_text(with_alias("hupped"))
        time.sleep(0.3)
        assert not serves(base_url, "hupped")  # no watcher: the edit waits for the signal

        process.send_signal(signal.SIGHUP)
        eventually(lambda: serves(base_url, "hupped"))
        assert process.poll() is None  # SIGHUP's default action would have ended the process
        state = httpx.get(f"{base_url}/healthz").json()
        assert state["reloads"]["ok"] == 1
        assert state["version"] == load_runtime(config).version


def test_every_worker_ends_on_the_same_version(tmp_path: Path) -> None:
    config = write_config(BASE, tmp_path)
    with serve(config, "--workers", "2") as (base_url, _process):
        config.write_text(with_alias("second"))
        expected = load_runtime(config).version
        seen: dict[int, str] = {}

        def converged() -> bool:
            # A new connection per request, so the kernel spreads them over both workers.
            state = httpx.get(f"{base_url}/healthz", headers={"connection": "close"}).json()
            seen[state["pid"]] = state["version"]
            return len(seen) == 2 and set(seen.values()) == {expected}

        eventually(converged, timeout=10)
        assert os.getpid() not in seen
        for _ in range(10):
            assert serves(base_url, "second")
