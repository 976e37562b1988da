"""Editing the channels of a running gateway loses no accepted message."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.support.server import serve_app_in_thread, write_config

BEFORE = """
default_provider: echo
providers:
  echo: {preset: echo}
agents:
  channels:
    review: {members: [planner, coder]}
    pair: {members: [coder, reviewer]}
    legacy: {members: [planner, coder]}
"""

# coder leaves review, reviewer joins it, legacy is removed, a new channel appears.
AFTER = """
default_provider: echo
providers:
  echo: {preset: echo}
agents:
  channels:
    review: {members: [planner, reviewer]}
    pair: {members: [coder, reviewer]}
    fresh: {members: [planner, coder]}
"""


async def wait_for_new_version(http: httpx.AsyncClient, old: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (await http.get("/healthz")).json()["version"] != old:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the gateway did not reload its config")


async def test_channel_edits_hot_reload_without_losing_messages() -> None:
    path = write_config(BEFORE)
    with serve_app_in_thread(path, watch=True) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            version = (await http.get("/healthz")).json()["version"]
            accepted = []
            for channel in ("review", "legacy", "review"):
                response = await http.post(
                    "/v1/agents/messages",
                    json={"sender": "planner", "recipient": channel, "content": channel},
                )
                assert response.status_code == 201
                accepted.append(response.json()["id"])

            path.write_text(AFTER, encoding="utf-8")
            await wait_for_new_version(http, version)

            coder = (await http.get("/v1/agents/coder/messages")).json()
            after_reload = await http.post(
                "/v1/agents/messages",
                json={"sender": "planner", "recipient": "review", "content": "after"},
            )
            removed = await http.post(
                "/v1/agents/messages",
                json={"sender": "planner", "recipient": "legacy", "content": "gone"},
            )
            fresh = await http.post(
                "/v1/agents/messages",
                json={"sender": "planner", "recipient": "fresh", "content": "new channel"},
            )
            reviewer = (await http.get("/v1/agents/reviewer/messages")).json()
            coder_after = (
                await http.get("/v1/agents/coder/messages", params={"after": coder["next_cursor"]})
            ).json()

    assert [m["id"] for m in coder["data"]] == accepted
    assert after_reload.status_code == 201
    assert [m["content"] for m in reviewer["data"]] == ["after"]
    assert removed.status_code == 404
    assert fresh.status_code == 201
    assert [m["content"] for m in coder_after["data"]] == ["new channel"]
