"""Real servers for end-to-end tests: the gateway on uvicorn over loopback.

``running_gateway`` runs uvicorn in a thread of the test process (fast to start, shares
nothing with the test's event loop); ``gateway_process`` runs ``python -m gateway serve`` as a
separate process, for tests that need two gateways or a restart.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn

from gateway.api.protocol import GatewayHttpProtocol
from gateway.app import create_app


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_REFUSING: list[socket.socket] = []  # held open to the end of the test run


def refused_port() -> int:
    """A loopback port that refuses connections for the rest of the test run.

    Bound but never listening: a closed port taken from ``free_port`` could be handed to the
    next server a test starts, which would then answer in its place.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    _REFUSING.append(sock)
    port: int = sock.getsockname()[1]
    return port


def wait_until_healthy(
    base_url: str, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"gateway process exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"gateway at {base_url} did not become healthy")


def write_config(text: str, directory: Path | None = None) -> Path:
    folder = directory or Path(tempfile.mkdtemp(prefix="gateway-test-"))
    path = folder / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def serve_app_in_thread(config_path: Path, *, watch: bool = False) -> Iterator[str]:
    """uvicorn in a background thread; yields the base URL (``http://127.0.0.1:PORT``)."""
    port = free_port()
    app = create_app(str(config_path), watch=watch, tune_gc=False)  # the test's own process
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        loop="asyncio",
        http=GatewayHttpProtocol,  # as `gateway serve` runs it
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def running_gateway(
    config_yaml: str, *, env: dict[str, str] | None = None, watch: bool = False
) -> Iterator[str]:
    """A real gateway serving ``config_yaml``; ``env`` is applied for the server's lifetime."""
    path = write_config(config_yaml)
    saved = {name: os.environ.get(name) for name in (env or {})}
    os.environ.update(env or {})
    try:
        with serve_app_in_thread(path, watch=watch) as base_url:
            yield base_url
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def gateway_process(
    config_path: Path,
    *,
    env: dict[str, str] | None = None,
    port: int | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[str]:
    """``python -m gateway serve`` as a child process; yields its base URL."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(config_path),
            "--port",
            str(port),
            "--log-level",
            "warning",
            *extra_args,
        ],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url, process=process)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
