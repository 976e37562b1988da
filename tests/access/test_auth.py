"""Gateway keys end to end: the official SDK with each key, its allowed and refused models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from gateway.app import create_app
from tests.access.conftest import ADMIN_KEY, ADMIN_SHA256, KEY_A, KEY_B, KEYS_ENV, client
from tests.support.server import running_gateway, write_config

CONFIG = f"""
default_provider: echo
providers:
  echo: {{preset: echo}}
  other: {{preset: echo}}
models:
  fast: echo:echo
  both: {{targets: [echo:echo, other:echo]}}
keys:
  - name: team-a
    key: ${{ACCESS_TEST_KEY_A}}
    models: [fast, both]
    agents: [planner]
  - name: team-b
    key: ${{ACCESS_TEST_KEY_B}}
    providers: [echo]
  - name: ops
    key_sha256: "{ADMIN_SHA256}"
    admin: true
agents:
  channels:
    review: {{members: [planner, coder]}}
"""


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_gateway(CONFIG, env=KEYS_ENV) as url:
        yield url


@pytest.fixture(scope="module")
def sdk(base_url: str) -> dict[str, OpenAI]:
    """One SDK client per key, as each team would hold (connected once, here)."""
    clients = {key: client(base_url, key) for key in (KEY_A, KEY_B, ADMIN_KEY)}
    clients[ADMIN_KEY].responses.create(model="fast", input="warm up")  # the SDK imports lazily
    return clients


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url) as raw:
        yield raw


def test_each_key_reaches_the_models_it_may_use(sdk: dict[str, OpenAI]) -> None:
    assert sdk[KEY_A].responses.create(model="fast", input="hi a").output_text == "hi a"
    assert sdk[KEY_A].responses.create(model="both", input="x").output_text == "x"
    for model in ("echo:echo", "echo", "fast", "gpt-4o"):  # team-b: any model on provider echo
        assert sdk[KEY_B].responses.create(model=model, input="b").output_text == "b"
    for model in ("fast", "both", "other:echo", "gpt-4o"):  # ops: no restriction
        assert sdk[ADMIN_KEY].responses.create(model=model, input="o").status == "completed"
    with sdk[KEY_A].responses.stream(model="fast", input="a stream") as stream:
        assert stream.get_final_response().output_text == "a stream"


@pytest.mark.parametrize(
    ("key", "model", "code"),
    [
        (KEY_A, "echo:echo", "model_not_allowed"),  # the alias's target, asked directly
        (KEY_A, "gpt-4o", "model_not_allowed"),  # a default-provider model
        (KEY_B, "other:echo", "provider_not_allowed"),
        (KEY_B, "both", "provider_not_allowed"),  # its fallback target is on 'other'
    ],
)
def test_a_refused_model_is_a_403_before_any_upstream_call(
    sdk: dict[str, OpenAI], key: str, model: str, code: str
) -> None:
    for stream in (False, True):
        with pytest.raises(openai.PermissionDeniedError) as caught:
            sdk[key].responses.create(model=model, input="hi", stream=stream)
        error = caught.value
        assert error.status_code == 403
        assert error.body == {
            "message": error.body["message"],  # type: ignore[index]
            "type": "permission_error",
            "param": "model",
            "code": code,
        }
        assert model in error.message


def test_a_missing_key_is_a_401_in_openai_shape(http: httpx.Client) -> None:
    response = http.post("/v1/responses", json={"model": "fast", "input": "hi"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["x-request-id"]
    assert response.json() == {
        "error": {
            "message": "You didn't provide an API key. Send your gateway key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


@pytest.mark.parametrize("wrong", ["gk-wrong", KEY_A[:-1], KEY_A + "0", ADMIN_SHA256])
def test_an_unknown_key_is_a_401_through_the_sdk(base_url: str, wrong: str) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(base_url, wrong).responses.create(model="fast", input="hi")
    assert caught.value.body == {
        "message": "Incorrect API key provided.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    assert wrong not in caught.value.response.text


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": f"bearer {KEY_A}"},
        {"authorization": f"Bearer   {KEY_A}"},
        {"x-api-key": KEY_A},
    ],
    ids=["lowercase-scheme", "spaces", "x-api-key"],
)
def test_keys_are_accepted_as_clients_send_them(
    http: httpx.Client, headers: dict[str, str]
) -> None:
    response = http.post("/v1/responses", json={"model": "fast", "input": "hi"}, headers=headers)
    assert response.status_code == 200, response.text


def test_another_scheme_is_not_a_key(http: httpx.Client) -> None:
    response = http.get("/v1/models", headers={"authorization": f"Basic {KEY_A}"})
    assert response.status_code == 401


def test_every_route_but_the_probes_needs_a_key(http: httpx.Client) -> None:
    assert http.get("/healthz").status_code == 200
    for method, path in [
        ("GET", "/v1/models"),
        ("GET", "/v1/nothing-here"),
        ("GET", "/v1/agents/planner/messages"),
        ("POST", "/v1/agents/messages"),
        ("POST", "/admin/reload"),
        ("GET", "/anything"),
    ]:
        assert http.request(method, path).status_code == 401, path
    keyed = {"authorization": f"Bearer {KEY_A}"}
    assert http.get("/v1/nothing-here", headers=keyed).status_code == 404


def test_models_lists_what_the_key_may_use(sdk: dict[str, OpenAI]) -> None:
    assert [model.id for model in sdk[KEY_A].models.list()] == ["both", "fast"]
    assert [model.id for model in sdk[KEY_B].models.list()] == ["fast", "echo:echo"]
    assert {model.id for model in sdk[ADMIN_KEY].models.list()} == {
        "both",
        "fast",
        "echo:echo",
        "other:echo",
    }


def test_a_key_speaks_only_for_its_agents(http: httpx.Client) -> None:
    keyed = {"authorization": f"Bearer {KEY_A}"}
    sent = http.post(
        "/v1/agents/messages",
        json={"sender": "planner", "recipient": "coder", "content": "hi"},
        headers=keyed,
    )
    assert sent.status_code == 201, sent.text
    refused = http.post(
        "/v1/agents/messages",
        json={"sender": "coder", "recipient": "planner", "content": "hi"},
        headers=keyed,
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "agent_not_allowed"
    assert http.get("/v1/agents/coder/messages", headers=keyed).status_code == 403
    assert http.get("/v1/agents/planner/messages", headers=keyed).status_code == 200
    any_agent = {"authorization": f"Bearer {KEY_B}"}  # no agents list: any agent
    assert http.get("/v1/agents/coder/messages", headers=any_agent).status_code == 200


def test_admin_reload_needs_an_admin_key(http: httpx.Client) -> None:
    response = http.post("/admin/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "config.reload"
    assert body["status"] == "unchanged"
    assert body["version"] == http.get("/healthz").json()["version"]
    refused = http.post("/admin/reload", headers={"authorization": f"Bearer {KEY_A}"})
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "message": "The API key 'team-a' is not an admin key.",
        "type": "permission_error",
        "param": None,
        "code": "admin_required",
    }


def test_an_open_gateway_serves_anyone_and_lets_loopback_reload() -> None:
    with running_gateway("providers:\n  echo: {preset: echo}\n") as url:
        assert (
            client(url, "anything").responses.create(model="echo", input="open").output_text
            == "open"
        )
        assert httpx.post(f"{url}/admin/reload").json()["status"] == "unchanged"


def test_every_admin_path_needs_an_admin_key(http: httpx.Client) -> None:
    keyed = {"authorization": f"Bearer {KEY_A}"}
    assert http.get("/admin/anything-added-later", headers=keyed).status_code == 403
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    assert http.get("/admin/anything-added-later", headers=admin).status_code == 404


async def test_an_open_gateway_refuses_admin_calls_from_other_hosts(tmp_path: Path) -> None:
    app = create_app(
        str(write_config("providers:\n  echo: {preset: echo}\n", tmp_path)), watch=False
    )
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as remote:
        refused = await remote.post("/admin/reload")
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "Admin endpoints need an admin key; this gateway has no keys configured, "
        "so only loopback clients may use them."
    )
