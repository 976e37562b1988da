"""The agent bus over HTTP, end to end: a real gateway (uvicorn, memory backend) on loopback.

One gateway serves the module; each test starts reading after the current end of the
inboxes it uses (``tail``), as a consumer resuming from its cursor would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.support.server import running_gateway

CONFIG = """
default_provider: echo
providers:
  echo: {preset: echo}
agents:
  max_message_bytes: 2048
  channels:
    review:
      members: [planner, coder, reviewer]
    pair:
      members: [planner, coder]
    tiny:
      members: [planner, coder]
      retention: {max_messages: 3, max_age_seconds: 3600}
    solo:
      members: [loner]
"""


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    with running_gateway(CONFIG) as base_url:
        yield base_url


@pytest.fixture
async def http(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as client:
        yield client


async def send(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await http.post("/v1/agents/messages", json={"content": "hi", **body})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def inbox(
    http: httpx.AsyncClient, agent: str, after: str | None, **params: Any
) -> dict[str, Any]:
    query = {**params, **({"after": after} if after else {})}
    response = await http.get(f"/v1/agents/{agent}/messages", params=query)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def tail(http: httpx.AsyncClient, agent: str) -> str | None:
    """The cursor after everything already in ``agent``'s inbox."""
    cursor = None
    while True:
        page = await inbox(http, agent, cursor, limit=1000)
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return cursor


def contents(page: dict[str, Any]) -> list[Any]:
    return [message["content"] for message in page["data"]]


async def test_a_direct_message_is_stored_and_delivered(http: httpx.AsyncClient) -> None:
    cursor = await tail(http, "coder")

    sent = await send(
        http,
        sender="planner",
        recipient="coder",
        content={"task": "write tests"},
        kind="handoff",
        thread_id="t-1",
        reply_to="amsg_1_1",
        metadata={"priority": "high"},
    )
    page = await inbox(http, "coder", cursor)

    assert sent["object"] == "agent.message"
    assert sent["id"].startswith("amsg_")
    assert isinstance(sent["sequence"], int)
    assert abs(sent["created_at"] - time.time()) < 5
    assert {k: sent[k] for k in sent if k not in ("id", "sequence", "created_at")} == {
        "object": "agent.message",
        "sender": "planner",
        "recipient": "coder",
        "channel": None,
        "content": {"task": "write tests"},
        "kind": "handoff",
        "thread_id": "t-1",
        "reply_to": "amsg_1_1",
        "metadata": {"priority": "high"},
    }
    assert page["object"] == "list"
    assert page["data"] == [sent]
    assert page["first_id"] == page["last_id"] == page["next_cursor"] == sent["id"]
    assert page["has_more"] is False


async def test_a_channel_message_reaches_every_member_but_the_sender(
    http: httpx.AsyncClient,
) -> None:
    cursors = {agent: await tail(http, agent) for agent in ("planner", "coder", "reviewer")}

    by_recipient = await send(http, sender="planner", recipient="review", content="by name")
    by_channel = await send(http, sender="planner", channel="review", content="by field")

    assert by_recipient["channel"] == by_recipient["recipient"] == "review"
    assert by_channel["channel"] == by_channel["recipient"] == "review"
    for agent in ("coder", "reviewer"):
        page = await inbox(http, agent, cursors[agent])
        assert [m["id"] for m in page["data"]] == [by_recipient["id"], by_channel["id"]]
    assert (await inbox(http, "planner", cursors["planner"]))["data"] == []


async def test_inbox_order_and_cursor_pagination(http: httpx.AsyncClient) -> None:
    cursor = await tail(http, "coder")
    sent = []
    for i in range(7):
        where = ("coder", "review", "pair")[i % 3]
        sent.append(await send(http, sender="planner", recipient=where, content=f"m{i}"))

    seen: list[str] = []
    pages = 0
    while True:
        page = await inbox(http, "coder", cursor, limit=3)
        pages += 1
        seen += [m["id"] for m in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break

    assert seen == [m["id"] for m in sent]
    assert [m["sequence"] for m in sent] == sorted(m["sequence"] for m in sent)
    assert pages == 3
    assert (await inbox(http, "coder", cursor))["data"] == []


async def test_long_poll_wakes_when_a_message_arrives(http: httpx.AsyncClient) -> None:
    cursor = await tail(http, "reviewer")

    async def send_later() -> dict[str, Any]:
        await asyncio.sleep(0.3)
        return await send(http, sender="coder", recipient="reviewer", content="ready")

    started = time.monotonic()
    sending = asyncio.create_task(send_later())
    page = await inbox(http, "reviewer", cursor, wait=10)
    elapsed = time.monotonic() - started
    sent = await sending

    assert [m["id"] for m in page["data"]] == [sent["id"]]
    assert 0.25 < elapsed < 2


async def test_long_poll_times_out_with_an_empty_page_keeping_the_cursor(
    http: httpx.AsyncClient,
) -> None:
    cursor = await tail(http, "reviewer")
    await send(http, sender="planner", recipient="pair", content="not for reviewer")

    started = time.monotonic()
    page = await inbox(http, "reviewer", cursor, wait=0.4)

    assert time.monotonic() - started >= 0.35
    assert page["data"] == []
    assert page["next_cursor"] == cursor
    assert page["has_more"] is False


async def read_sse(response: httpx.Response, count: int) -> list[dict[str, str]]:
    """The first ``count`` events with data, as {field: value}."""
    events: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                events.append(fields)
                if len(events) == count:
                    return events
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    return events


async def test_sse_pushes_messages_as_they_arrive(http: httpx.AsyncClient) -> None:
    cursor = await tail(http, "coder")
    sent: list[dict[str, Any]] = []

    async def send_some() -> None:
        await asyncio.sleep(0.2)
        for i in range(3):
            sent.append(await send(http, sender="reviewer", recipient="coder", content=f"s{i}"))
            await asyncio.sleep(0.05)

    async with http.stream(
        "GET", "/v1/agents/coder/messages/stream", params={"after": cursor, "timeout": 5}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        sending = asyncio.create_task(send_some())
        events = await asyncio.wait_for(read_sse(response, 3), 4)
    await sending

    assert [event["event"] for event in events] == ["agent.message"] * 3
    assert [event["id"] for event in events] == [m["id"] for m in sent]
    assert [httpx.Response(200, content=e["data"]).json() for e in events] == sent


async def test_sse_by_accept_header_resumes_from_last_event_id(http: httpx.AsyncClient) -> None:
    cursor = await tail(http, "coder")
    first = await send(http, sender="planner", recipient="coder", content="first")
    second = await send(http, sender="planner", recipient="coder", content="second")

    async with http.stream(
        "GET",
        "/v1/agents/coder/messages",
        params={"timeout": 5},
        headers={"Accept": "text/event-stream", "Last-Event-ID": first["id"]},
    ) as response:
        events = await asyncio.wait_for(read_sse(response, 1), 4)

    assert cursor != first["id"]
    assert [event["id"] for event in events] == [second["id"]]


async def test_sse_stream_ends_after_its_timeout(http: httpx.AsyncClient) -> None:
    cursor = await tail(http, "reviewer")
    started = time.monotonic()

    async with http.stream(
        "GET", "/v1/agents/reviewer/messages/stream", params={"after": cursor, "timeout": 0.5}
    ) as response:
        body = await asyncio.wait_for(response.aread(), 4)

    assert 0.4 < time.monotonic() - started < 3
    assert b"agent.message" not in body


async def test_retention_keeps_the_newest_messages_of_a_channel(
    http: httpx.AsyncClient,
) -> None:
    cursor = await tail(http, "coder")
    for i in range(5):
        await send(http, sender="planner", recipient="tiny", content=f"t{i}")

    page = await inbox(http, "coder", cursor)

    assert [c for c in contents(page) if str(c).startswith("t")] == ["t2", "t3", "t4"]


async def test_a_burst_from_many_concurrent_senders_is_delivered_whole_and_in_order(
    http: httpx.AsyncClient,
) -> None:
    cursors = {agent: await tail(http, agent) for agent in ("planner", "coder", "reviewer")}
    senders, per_sender = ("planner", "coder", "reviewer"), 30

    async def burst(sender: str) -> list[dict[str, Any]]:
        return [
            await send(http, sender=sender, recipient="review", content=f"{sender}:{i}")
            for i in range(per_sender)
        ]

    results = await asyncio.gather(*(burst(sender) for sender in senders))

    for agent in senders:
        page = await inbox(http, agent, cursors[agent], limit=1000)
        expected = sorted(
            (m for result in results for m in result if m["sender"] != agent),
            key=lambda m: m["sequence"],
        )
        assert [m["id"] for m in page["data"]] == [m["id"] for m in expected]
        assert len(page["data"]) == per_sender * (len(senders) - 1)


async def test_a_slow_consumer_paging_through_a_fast_producer_misses_nothing(
    http: httpx.AsyncClient,
) -> None:
    cursor = await tail(http, "reviewer")
    total = 60

    async def produce() -> None:
        for i in range(total):
            await send(http, sender="planner", recipient="reviewer", content=f"m{i}")

    producing = asyncio.create_task(produce())
    received: list[Any] = []
    deadline = time.monotonic() + 10
    while len(received) < total and time.monotonic() < deadline:
        page = await inbox(http, "reviewer", cursor, limit=4, wait=2)
        received += contents(page)
        cursor = page["next_cursor"]
        await asyncio.sleep(0.01)
    await producing

    assert received == [f"m{i}" for i in range(total)]


async def test_a_sender_alone_on_its_channel_is_accepted_with_no_recipients(
    http: httpx.AsyncClient,
) -> None:
    sent = await send(http, sender="loner", recipient="solo", content="anyone?")

    assert sent["channel"] == "solo"
    assert (await inbox(http, "loner", None))["data"] == []


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize(
    ("body", "status", "type_", "param", "code"),
    [
        (
            {"sender": "planner", "channel": "nope"},
            404,
            "invalid_request_error",
            "channel",
            "channel_not_found",
        ),
        (
            {"sender": "planner", "recipient": "nobody"},
            404,
            "invalid_request_error",
            "recipient",
            "recipient_not_found",
        ),
        (
            {"sender": "reviewer", "recipient": "pair"},
            403,
            "permission_error",
            "sender",
            "not_a_member",
        ),
        (
            {"sender": "stranger", "recipient": "coder"},
            403,
            "permission_error",
            "sender",
            "not_a_member",
        ),
        (
            {"recipient": "coder"},
            400,
            "invalid_request_error",
            "sender",
            "missing_required_parameter",
        ),
        (
            {"sender": "planner"},
            400,
            "invalid_request_error",
            "recipient",
            "missing_required_parameter",
        ),
        (
            {"sender": "planner", "recipient": "coder", "content": None},
            400,
            "invalid_request_error",
            "content",
            "missing_required_parameter",
        ),
        (
            {"sender": "planner", "recipient": "coder", "content": [1, 2]},
            400,
            "invalid_request_error",
            "content",
            "invalid_type",
        ),
        (
            {"sender": "planner", "recipient": "coder", "kind": "shout"},
            400,
            "invalid_request_error",
            "kind",
            "invalid_value",
        ),
        (
            {"sender": "planner", "recipient": "coder", "colour": "red"},
            400,
            "invalid_request_error",
            "colour",
            "unknown_parameter",
        ),
        (
            {"sender": "plan ner", "recipient": "coder"},
            400,
            "invalid_request_error",
            "sender",
            "invalid_value",
        ),
        (
            {"sender": "planner", "recipient": "coder", "channel": "review"},
            400,
            "invalid_request_error",
            "channel",
            "invalid_value",
        ),
        (
            {"sender": "planner", "recipient": "coder", "metadata": "x"},
            400,
            "invalid_request_error",
            "metadata",
            "invalid_type",
        ),
        (
            {"sender": "planner", "recipient": "coder", "thread_id": 7},
            400,
            "invalid_request_error",
            "thread_id",
            "invalid_type",
        ),
    ],
)
async def test_a_bad_message_gets_an_openai_shaped_error(
    http: httpx.AsyncClient,
    body: dict[str, Any],
    status: int,
    type_: str,
    param: str,
    code: str,
) -> None:
    response = await http.post("/v1/agents/messages", json={"content": "hi", **body})

    assert response.status_code == status
    assert error_of(response) | {"message": ""} == {
        "message": "",
        "type": type_,
        "param": param,
        "code": code,
    }


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"{not json", "invalid_json"), (b'["a list"]', "invalid_type"), (b"", "invalid_json")],
)
async def test_a_body_that_is_not_a_json_object_is_a_400(
    http: httpx.AsyncClient, content: bytes, code: str
) -> None:
    response = await http.post("/v1/agents/messages", content=content)

    assert response.status_code == 400
    assert error_of(response)["code"] == code


async def test_an_oversized_message_is_a_400(http: httpx.AsyncClient) -> None:
    body = {"sender": "planner", "recipient": "coder", "content": "x" * 4096}

    response = await http.post("/v1/agents/messages", json=body)

    assert response.status_code == 400
    assert error_of(response)["code"] == "message_too_large"


async def test_an_oversized_chunked_body_is_a_400(http: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"sender": "planner", "recipient": "coder", "content": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}'

    response = await http.post("/v1/agents/messages", content=chunks())

    assert response.status_code == 400
    assert error_of(response)["code"] == "message_too_large"


@pytest.mark.parametrize(
    ("path", "params", "param", "code"),
    [
        ("/v1/agents/coder/messages", {"after": "bogus"}, "after", "invalid_cursor"),
        ("/v1/agents/coder/messages", {"limit": "0"}, "limit", "invalid_value"),
        ("/v1/agents/coder/messages", {"limit": "many"}, "limit", "invalid_value"),
        ("/v1/agents/coder/messages", {"wait": "-1"}, "wait", "invalid_value"),
        ("/v1/agents/coder/messages", {"wait": "nan"}, "wait", "invalid_value"),
        ("/v1/agents/co:der/messages", {}, "agent_id", "invalid_value"),
        ("/v1/agents/coder/messages/stream", {"timeout": "0"}, "timeout", "invalid_value"),
        ("/v1/agents/coder/messages/stream", {"after": "amsg_x"}, "after", "invalid_cursor"),
    ],
)
async def test_bad_read_parameters_are_a_400(
    http: httpx.AsyncClient, path: str, params: dict[str, str], param: str, code: str
) -> None:
    response = await http.get(path, params=params)

    assert response.status_code == 400
    error = error_of(response)
    assert (error["param"], error["code"]) == (param, code)


async def test_an_agent_outside_every_channel_reads_an_empty_inbox(
    http: httpx.AsyncClient,
) -> None:
    page = await inbox(http, "newcomer", None)

    assert page == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "next_cursor": None,
        "has_more": False,
    }


KEYED_CONFIG = """
default_provider: echo
providers:
  echo: {preset: echo}
keys:
  - {name: planner-key, key: "${PLANNER_KEY}", agents: [planner]}
  - {name: coder-key, key: "${CODER_KEY}", agents: [coder]}
  - {name: ops-key, key: "${OPS_KEY}"}
agents:
  channels:
    review: {members: [planner, coder]}
"""


async def test_a_key_bound_to_agents_reads_and_sends_only_as_them() -> None:
    env = {"PLANNER_KEY": "sk-planner", "CODER_KEY": "sk-coder", "OPS_KEY": "sk-ops"}
    with running_gateway(KEYED_CONFIG, env=env) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:

            def auth(key: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {key}"}

            as_planner = {"sender": "planner", "recipient": "review", "content": "go"}
            sent = await http.post(
                "/v1/agents/messages", json=as_planner, headers=auth("sk-planner")
            )
            forged = await http.post(
                "/v1/agents/messages", json=as_planner, headers=auth("sk-coder")
            )
            own = await http.get("/v1/agents/coder/messages", headers=auth("sk-coder"))
            other = await http.get("/v1/agents/planner/messages", headers=auth("sk-coder"))
            ops = await http.get("/v1/agents/coder/messages", headers=auth("sk-ops"))
            anonymous = await http.get("/v1/agents/coder/messages")

    assert sent.status_code == 201
    assert forged.status_code == 403
    assert error_of(forged)["code"] == "agent_not_allowed"
    assert [m["id"] for m in own.json()["data"]] == [sent.json()["id"]]
    assert other.status_code == 403
    assert error_of(other)["param"] == "agent_id"
    assert ops.status_code == 200
    assert anonymous.status_code == 401
