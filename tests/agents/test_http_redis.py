"""Gateways sharing one Redis: each delivers the others' messages, in one order."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from gateway.agents.messages import Position
from tests.support.server import gateway_process, running_gateway, write_config


def config_for(redis_url: str) -> str:
    return f"""
default_provider: echo
providers:
  echo: {{preset: echo}}
agents:
  backend: {redis_url}
  channels:
    review: {{members: [planner, coder, reviewer]}}
"""


async def post(http: httpx.AsyncClient, sender: str, recipient: str, content: Any) -> str:
    response = await http.post(
        "/v1/agents/messages",
        json={"sender": sender, "recipient": recipient, "content": content},
    )
    assert response.status_code == 201, response.text
    message_id: str = response.json()["id"]
    return message_id


async def test_two_gateways_deliver_each_others_messages_and_wake_each_others_polls(
    redis_url: str,
) -> None:
    config = config_for(redis_url)
    with running_gateway(config) as url_a, running_gateway(config) as url_b:
        async with (
            httpx.AsyncClient(base_url=url_a, timeout=10) as a,
            httpx.AsyncClient(base_url=url_b, timeout=10) as b,
        ):

            async def send_through_a_later() -> str:
                await asyncio.sleep(0.3)
                return await post(a, "planner", "review", "from a")

            started = time.monotonic()
            sending = asyncio.create_task(send_through_a_later())
            polled = (await b.get("/v1/agents/coder/messages", params={"wait": 10})).json()
            woke_after = time.monotonic() - started
            sent_id = await sending

            ids: list[str] = []
            for i in range(20):
                ids.append(await post(a if i % 2 else b, "reviewer", "coder", f"m{i}"))
            seen_by_a = (await a.get("/v1/agents/coder/messages")).json()
            seen_by_b = (await b.get("/v1/agents/coder/messages")).json()

    assert [m["id"] for m in polled["data"]] == [sent_id]
    assert woke_after < 2
    assert [m["id"] for m in seen_by_a["data"]] == [sent_id, *ids]
    assert seen_by_b["data"] == seen_by_a["data"]


async def test_sse_on_one_gateway_pushes_messages_sent_through_another(redis_url: str) -> None:
    config = config_for(redis_url)
    with running_gateway(config) as url_a, running_gateway(config) as url_b:
        async with (
            httpx.AsyncClient(base_url=url_a, timeout=10) as a,
            httpx.AsyncClient(base_url=url_b, timeout=10) as b,
        ):

            async def send_through_a() -> list[str]:
                await asyncio.sleep(0.2)
                return [await post(a, "planner", "reviewer", f"s{i}") for i in range(3)]

            received: list[str] = []
            async with b.stream(
                "GET", "/v1/agents/reviewer/messages/stream", params={"timeout": 5}
            ) as stream:
                sending = asyncio.create_task(send_through_a())

                async def collect() -> None:
                    async for line in stream.aiter_lines():
                        if line.startswith("id: "):
                            received.append(line.removeprefix("id: "))
                            if len(received) == 3:
                                return

                await asyncio.wait_for(collect(), 4)
            sent = await sending

    assert received == sent


async def test_messages_survive_a_restart_of_every_gateway(redis_url: str) -> None:
    config = config_for(redis_url)
    with running_gateway(config) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            before = [await post(http, "planner", "review", f"b{i}") for i in range(5)]

    with running_gateway(config) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            kept = (await http.get("/v1/agents/reviewer/messages")).json()
            after = await post(http, "planner", "review", "after restart")

    assert [m["id"] for m in kept["data"]] == before
    assert Position.from_message_id(after) > Position.from_message_id(before[-1])


async def test_two_gateway_processes_share_one_redis(redis_url: str) -> None:
    path = write_config(config_for(redis_url))
    with gateway_process(path) as url_a, gateway_process(path) as url_b:
        async with (
            httpx.AsyncClient(base_url=url_a, timeout=10) as a,
            httpx.AsyncClient(base_url=url_b, timeout=10) as b,
        ):
            before = [await post(a, "planner", "review", f"b{i}") for i in range(5)]
            kept = (await b.get("/v1/agents/reviewer/messages")).json()

            async def send_through_a_later() -> str:
                await asyncio.sleep(0.3)
                return await post(a, "coder", "reviewer", "across processes")

            sending = asyncio.create_task(send_through_a_later())
            started = time.monotonic()
            polled = (
                await b.get(
                    "/v1/agents/reviewer/messages",
                    params={"after": kept["next_cursor"], "wait": 10},
                )
            ).json()
            woke_after = time.monotonic() - started
            across = await sending

    assert [m["id"] for m in kept["data"]] == before
    assert [m["id"] for m in polled["data"]] == [across]
    assert woke_after < 2
