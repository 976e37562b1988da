"""Retries, backoff and circuit breakers: absorb what an upstream failure allows, nothing more.

Policies are data from gateway.yaml (``routing:`` defaults, per provider, per alias). The
request flow asks three questions here: may this failure be retried (and after how long), may
it fall back to the next target, and is a provider's breaker letting traffic through.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import Any, Final

from gateway.providers.adapter import RETRYABLE_CLASSES

DEFAULT_FALLBACK_CLASSES: Final = frozenset(
    {"rate_limited", "overloaded", "timeout", "server_error"}
)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 2  # tries per target, the first included
    backoff_initial: float = 0.25
    backoff_max: float = 4.0
    retry_after_max: float = 30.0  # a longer Retry-After is not waited for: fall back instead
    on: frozenset[str] = RETRYABLE_CLASSES

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any] | None, base: RetryPolicy | None = None
    ) -> RetryPolicy:
        policy = base or cls()
        if not data:
            return policy
        changes: dict[str, Any] = {}
        for name in ("attempts",):
            if name in data:
                changes[name] = int(data[name])
        for name in ("backoff_initial", "backoff_max", "retry_after_max"):
            if name in data:
                changes[name] = float(data[name])
        if "on" in data:
            # Client errors are never retried, whatever the config says.
            changes["on"] = frozenset(data["on"]) & RETRYABLE_CLASSES
        return replace(policy, **changes)

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1), or ``None``
        when the upstream asked for longer than the cap."""
        if retry_after is not None:
            return None if retry_after > self.retry_after_max else retry_after
        ceiling = min(self.backoff_max, self.backoff_initial * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), as OpenAI's SDK reads them."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 5
    window: float = 30.0
    cooldown: float = 15.0

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any] | None, base: BreakerPolicy | None = None
    ) -> BreakerPolicy:
        policy = base or cls()
        if not data:
            return policy
        return BreakerPolicy(
            failures=int(data.get("failures", policy.failures)),
            window=float(data.get("window", policy.window)),
            cooldown=float(data.get("cooldown", policy.cooldown)),
        )


class CircuitBreaker:
    """closed → (N failures within the window) → open → (cool-down) → half_open → one probe.

    A probe's success closes the breaker; its failure opens it again for another cool-down.
    """

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state = "closed"
        self._failures: deque[float] = deque()
        self._opened_at = 0.0
        self._probing = False

    def allow(self) -> bool:
        if self.state == "closed":
            return True
        now = time.monotonic()
        if self.state == "open" and now - self._opened_at >= self.policy.cooldown:
            self.state = "half_open"
            self._probing = False
        if self.state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self.state = "closed"
        self._failures.clear()
        self._probing = False

    def record_failure(self) -> None:
        now = time.monotonic()
        if self.state == "half_open":
            self._open(now)
            return
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.policy.window:
            self._failures.popleft()
        if len(self._failures) >= self.policy.failures:
            self._open(now)

    def release_probe(self) -> None:
        """A probe that ended without a verdict (cancelled, client error) frees the slot."""
        self._probing = False

    def _open(self, now: float) -> None:
        self.state = "open"
        self._opened_at = now
        self._failures.clear()
        self._probing = False

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state, "recent_failures": len(self._failures)}


class BreakerBoard:
    """One breaker per provider, created on first use with that provider's policy."""

    def __init__(self) -> None:
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, provider: str, policy: BreakerPolicy) -> CircuitBreaker:
        breaker = self._breakers.get(provider)
        # The same config passes the same policy: identity first, a dataclass ``!=`` is Python.
        if breaker is None or (breaker.policy is not policy and breaker.policy != policy):
            breaker = CircuitBreaker(policy)
            self._breakers[provider] = breaker
        return breaker

    def state(self, provider: str) -> dict[str, Any] | None:
        breaker = self._breakers.get(provider)
        return None if breaker is None else breaker.snapshot()


def class_of_stream_error(code: str | None) -> str:
    """A mid-stream error event's code → an error class (before the first byte went out)."""
    text = (code or "").lower()
    if "rate" in text or "429" in text or "exhausted" in text:
        return "rate_limited"
    if "overload" in text or "unavailable" in text or "529" in text:
        return "overloaded"
    if "timeout" in text or "deadline" in text:
        return "timeout"
    if "context" in text or "too_long" in text:
        return "context_too_long"
    if "invalid" in text or "not_found" in text or "permission" in text or "auth" in text:
        return "client_error"
    return "server_error"
