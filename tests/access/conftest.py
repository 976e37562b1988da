"""Shared material for the access-control tests: keys (random per run), clients, Redis."""

from __future__ import annotations

import hashlib
import secrets

from openai import OpenAI

from tests.support.redis import redis_server, redis_url

__all__ = ["redis_server", "redis_url"]

# Gateway keys live in the environment, never in the config file.
KEY_A = "gk-team-a-" + secrets.token_hex(16)
KEY_B = "gk-team-b-" + secrets.token_hex(16)
ADMIN_KEY = "gk-admin-" + secrets.token_hex(16)
ADMIN_SHA256 = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
KEYS_ENV = {"ACCESS_TEST_KEY_A": KEY_A, "ACCESS_TEST_KEY_B": KEY_B}


def client(base_url: str, key: str = "none", **options: object) -> OpenAI:
    """The official SDK as a client of the gateway, with a key and no automatic retries."""
    settings: dict[str, object] = {"max_retries": 0, **options}
    return OpenAI(base_url=f"{base_url}/v1", api_key=key, **settings)  # type: ignore[arg-type]
