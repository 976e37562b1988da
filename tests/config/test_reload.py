"""Hot reload end to end: real files on disk, the real watcher, a real server on loopback.

Every test edits ``gateway.yaml`` the way operators and platforms do (in place, rename-save,
delete and recreate, a Kubernetes ConfigMap symlink swap, polling for bind mounts) and checks
what clients and ``/healthz`` see within a bounded time.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import pytest
from openai import OpenAI

from gateway.config.build import load_runtime
from gateway.config.store import RuntimeStore, describe_changes
from gateway.config.watcher import ConfigReloader
from tests.support.server import serve_app_in_thread, write_config

T = TypeVar("T")

DEADLINE = 3.0  # seconds within which a change must be served (debounce is 50 ms here)

BASE = """\
server: {reload_debounce: 0.05}
providers:
  echo: {preset: echo}
models:
  first: echo:echo
"""


def eventually(probe: Callable[[], T | None], timeout: float = DEADLINE) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


def health(base_url: str) -> dict[str, Any]:
    payload: dict[str, Any] = httpx.get(f"{base_url}/healthz", timeout=5).json()
    return payload


def client(base_url: str) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)


def serves(base_url: str, model: str) -> bool:
    with client(base_url) as sdk:
        try:
            response = sdk.responses.create(model=model, input="ping pong")
        except openai.NotFoundError:
            return False
    assert response.output_text == "ping pong"
    return True


def with_alias(name: str, text: str = BASE) -> str:
    return text + f"  {name}: echo:echo\n"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(BASE, tmp_path)


@pytest.fixture
def gateway(config: Path) -> Iterator[str]:
    with serve_app_in_thread(config, watch=True) as base_url:
        yield base_url


def test_an_edit_is_served_within_a_bounded_time(config: Path, gateway: str) -> None:
    before = health(gateway)
    assert before["reloads"]["watching"] == "events"
    assert not serves(gateway, "second")

    started = time.monotonic()
    config.write_text(with_alias("second"))
    eventually(lambda: serves(gateway, "second"))
    assert time.monotonic() - started < DEADLINE

    after = health(gateway)
    assert serves(gateway, "first")
    assert after["version"] != before["version"]
    assert after["version"] == load_runtime(config).version  # content → version, deterministic
    assert after["loaded_at"] > before["loaded_at"]
    assert after["last_error"] is None
    assert after["reloads"]["ok"] == 1


def test_a_broken_edit_keeps_the_old_config_and_says_where(config: Path, gateway: str) -> None:
    version = health(gateway)["version"]
    config.write_text(with_alias("second") + "  third: nowhere:model\n")

    error = eventually(lambda: health(gateway)["last_error"])
    [message] = error["errors"]
    assert message.startswith(f"{config}:7:3: models.third: alias target 'nowhere:model'")
    assert health(gateway)["version"] == version
    assert serves(gateway, "first")
    assert not serves(gateway, "second")  # all or nothing: the valid part is not half-applied

    config.write_text(BASE + "  first_again: [\n")  # a YAML syntax error, reported likewise
    eventually(lambda: "invalid YAML" in " ".join(health(gateway)["last_error"]["errors"]))
    assert f"{config}:7:" in health(gateway)["last_error"]["errors"][0]

    config.write_text(with_alias("second"))
    eventually(lambda: serves(gateway, "second"))
    state = health(gateway)
    assert state["last_error"] is None
    assert state["reloads"] == {"ok": 1, "failed": 2, "watching": "events"}


def test_an_editor_rename_save_is_seen(config: Path, gateway: str) -> None:
    temporary = config.with_name(".gateway.yaml.swp")
    temporary.write_text(with_alias("renamed"))
    os.replace(temporary, config)
    eventually(lambda: serves(gateway, "renamed"))


def test_a_deleted_and_recreated_file_is_seen(config: Path, gateway: str) -> None:
    config.unlink()
    eventually(lambda: health(gateway)["last_error"])  # missing: reported, old config kept
    assert serves(gateway, "first")
    config.write_text(with_alias("recreated"))
    eventually(lambda: serves(gateway, "recreated"))
    assert health(gateway)["last_error"] is None


def _configmap_update(mount: Path, text: str, stamp: str) -> None:
    """What the kubelet does: a new timestamped dir, then an atomic rename of ``..data``."""
    data = mount / f"..{stamp}"
    data.mkdir()
    (data / "gateway.yaml").write_text(text)
    old = os.readlink(mount / "..data") if (mount / "..data").is_symlink() else None
    (mount / "..data_tmp").symlink_to(data.name)
    os.replace(mount / "..data_tmp", mount / "..data")
    if old is not None:
        for child in (mount / old).iterdir():
            child.unlink()
        (mount / old).rmdir()


def test_a_kubernetes_configmap_symlink_swap_is_seen(tmp_path: Path) -> None:
    mount = tmp_path / "config"
    mount.mkdir()
    _configmap_update(mount, BASE, "2025_01_01_00_00_00.000000001")
    (mount / "gateway.yaml").symlink_to("..data/gateway.yaml")

    with serve_app_in_thread(mount / "gateway.yaml", watch=True) as base_url:
        _configmap_update(mount, with_alias("second"), "2025_01_01_00_01_00.000000002")
        eventually(lambda: serves(base_url, "second"))
        # The watch follows the new target: a second swap is seen as well.
        _configmap_update(mount, with_alias("third"), "2025_01_01_00_02_00.000000003")
        eventually(lambda: serves(base_url, "third"))
        assert not serves(base_url, "second")
        assert health(base_url)["reloads"]["ok"] == 2


def test_a_config_symlinked_from_another_directory_follows_edits_there(tmp_path: Path) -> None:
    (tmp_path / "source").mkdir()
    source = write_config(BASE, tmp_path / "source")
    link_dir = tmp_path / "etc"
    link_dir.mkdir()
    (link_dir / "gateway.yaml").symlink_to(source)
    with serve_app_in_thread(link_dir / "gateway.yaml", watch=True) as base_url:
        source.write_text(with_alias("linked"))
        eventually(lambda: serves(base_url, "linked"))


def test_polling_mode_reloads_without_events(tmp_path: Path) -> None:
    config = write_config(
        BASE.replace(
            "{reload_debounce: 0.05}", "{reload_debounce: 0.05, reload_poll_interval: 0.1}"
        ),
        tmp_path,
    )
    with serve_app_in_thread(config, watch=True) as base_url:
        assert health(base_url)["reloads"]["watching"] == "polling"
        # Same size, same second: only the content tells this edit apart.
        config.write_text(config.read_text().replace("first:", "fir5t:"))
        eventually(lambda: serves(base_url, "fir5t"))
        assert not serves(base_url, "first")


def test_polling_mode_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_RELOAD_POLL", "0.1")
    config = write_config(BASE, tmp_path)
    with serve_app_in_thread(config, watch=True) as base_url:
        assert health(base_url)["reloads"]["watching"] == "polling"
        config.write_text(with_alias("polled"))
        eventually(lambda: serves(base_url, "polled"))


def test_hot_reload_false_turns_watching_off(tmp_path: Path) -> None:
    config = write_config(BASE.replace("reload_debounce: 0.05", "hot_reload: false"), tmp_path)
    with serve_app_in_thread(config, watch=True) as base_url:
        assert health(base_url)["reloads"]["watching"] == "off"
        config.write_text(with_alias("ignored", config.read_text()))
        time.sleep(0.4)
        assert not serves(base_url, "ignored")
        assert health(base_url)["reloads"] == {"ok": 0, "failed": 0, "watching": "off"}


def test_the_watch_flag_turns_watching_off(config: Path) -> None:
    with serve_app_in_thread(config, watch=False) as base_url:
        config.write_text(with_alias("ignored"))
        time.sleep(0.4)
        assert not serves(base_url, "ignored")
        assert health(base_url)["reloads"]["watching"] == "off"


def test_an_env_file_beside_the_config_is_watched_too(tmp_path: Path) -> None:
    config = write_config(BASE + '  dotenv: "echo:${DOTENV_MODEL:-from-default}"\n', tmp_path)

    def upstream_model(base_url: str) -> str:
        response = httpx.post(
            f"{base_url}/v1/responses", json={"model": "dotenv", "input": "hi"}, timeout=5
        )
        return response.headers["x-gateway-upstream-model"]

    with serve_app_in_thread(config, watch=True) as base_url:
        assert upstream_model(base_url) == "from-default"
        (tmp_path / ".env").write_text("DOTENV_MODEL=from-dotenv\n")
        eventually(lambda: upstream_model(base_url) == "from-dotenv")


def test_an_unchanged_content_does_not_count_as_a_reload(config: Path, gateway: str) -> None:
    os.utime(config, (time.time() + 5, time.time() + 5))  # a touch: an event, same content
    config.write_text(config.read_text())
    config.write_text(with_alias("second"))
    eventually(lambda: serves(gateway, "second"))
    assert health(gateway)["reloads"]["ok"] == 1


async def _until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        await asyncio.sleep(0.02)


async def test_a_forced_reload_that_turns_hot_reload_on_starts_watching(tmp_path: Path) -> None:
    config = write_config(BASE.replace("reload_debounce: 0.05", "hot_reload: false"), tmp_path)
    store = RuntimeStore.from_file(str(config))
    reloader = ConfigReloader(store)
    await reloader.start()
    try:
        assert store.watching == "off"
        config.write_text(BASE)  # hot_reload is on again (the default)
        assert await reloader.reload(force=True) is True  # what SIGHUP does
        await _until(lambda: store.watching == "events")
        config.write_text(with_alias("later"))
        await _until(lambda: "later" in store.current.aliases)
        config.write_text(BASE.replace("reload_debounce: 0.05", "hot_reload: false"))
        await _until(lambda: store.watching == "off")
        config.write_text(with_alias("ignored"))
        await asyncio.sleep(0.3)
        assert "ignored" not in store.current.aliases
    finally:
        await reloader.stop()
    assert store.watching == "off"


def test_the_reload_line_says_what_changed(tmp_path: Path) -> None:
    before = load_runtime(write_config(BASE + "  gone: echo:echo\n", tmp_path))
    after = load_runtime(
        write_config(
            BASE.replace("reload_debounce: 0.05", "reload_debounce: 0.1")
            .replace("{preset: echo}", "{preset: echo, timeouts: {connect: 3}}")
            .replace("first: echo:echo", "first: echo:other")
            + "  added: echo:echo\n",
            tmp_path,
        )
    )
    assert describe_changes(before, after) == [
        "+model added",
        "~model first",
        "-model gone",
        "~provider echo",
        "~server",
    ]
    assert describe_changes(after, after) == []
