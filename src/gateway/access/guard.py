"""What the request path calls: authorize the resolved route, check limits, charge usage.

``admit`` runs after routing and before the upstream call: a 403 for a model or provider the
key may not use, a 429 (with ``Retry-After`` and ``x-ratelimit-*``) when a limit is reached. It
returns a ``Grant`` whose headers go on the answer and whose ``settle`` charges the tokens the
answer really used (for a stream, once it has ended).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from starlette.types import Scope

from gateway.access.keys import AccessConfig, ModelRate, Principal
from gateway.access.limits import (
    Bucket,
    BucketState,
    RateLimiter,
    duration,
    rate_headers,
    refusal_headers,
    settle_later,
)
from gateway.access.policy import authorize, principal_of
from gateway.errors import GatewayError
from gateway.routing import Route

if TYPE_CHECKING:
    from gateway.config.build import Runtime


class Grant:
    """An admitted request: headers for the answer, and the tokens buckets to charge.

    Built per request: a plain class (README, "The hot path, compiled").
    """

    def __init__(
        self,
        headers: dict[str, str] | None = None,
        limiter: RateLimiter | None = None,
        token_buckets: tuple[Bucket, ...] = (),
    ) -> None:
        self.headers: dict[str, str] = {} if headers is None else headers
        self.limiter = limiter
        self.token_buckets = token_buckets

    async def settle(self, usage: Mapping[str, Any] | None) -> None:
        units = used_tokens(usage)
        if units and self.limiter is not None and self.token_buckets:
            await self.limiter.charge(self.token_buckets, units)

    def settle_soon(self, usage: Mapping[str, Any] | None) -> None:
        """``settle`` from a stream's ``finally``, which may run while being cancelled."""
        units = used_tokens(usage)
        if units and self.limiter is not None and self.token_buckets:
            settle_later(self.limiter, self.token_buckets, units)


UNLIMITED: Final = Grant()


def used_tokens(usage: Mapping[str, Any] | None) -> int:
    """Input + output tokens of a Responses ``usage`` object (0 when the upstream gave none)."""
    if not usage:
        return 0
    total = usage.get("total_tokens")
    if isinstance(total, int) and total > 0:
        return total
    return sum(
        value
        for key in ("input_tokens", "output_tokens")
        if isinstance(value := usage.get(key), int)
    )


async def admit(scope: Scope, limiter: RateLimiter, runtime: Runtime, route: Route) -> Grant:
    """Authorize ``route`` for the request's principal and take its requests-per-minute."""
    principal = principal_of(scope)
    authorize(principal, route)
    access: AccessConfig = runtime.access
    if not access.limited:
        return UNLIMITED
    buckets = buckets_for(principal, access, route)
    if not buckets:
        return UNLIMITED
    states = await limiter.acquire(buckets)
    headers = rate_headers(states)
    refused = [state for state in states if not state.allowed]
    if refused:
        raise _rate_limited(refused, headers)
    return Grant(headers, limiter, tuple(bucket for bucket in buckets if bucket.kind == "tokens"))


def model_names(route: Route) -> tuple[str, ...]:
    """The names a model limit may be written against: as asked, the alias, the first target."""
    names = [route.requested]
    if route.alias is not None and route.alias != route.requested:
        names.append(route.alias)
    if route.targets:
        first = route.targets[0]
        names.append(f"{first.provider}:{first.model}")
    return tuple(names)


def buckets_for(principal: Principal, access: AccessConfig, route: Route) -> list[Bucket]:
    owner = f"key:{principal.name}" if principal.authenticated else "anonymous"
    who = f"key '{principal.name}'" if principal.authenticated else "this gateway"
    buckets: list[Bucket] = []

    def add(scope: str, label: str, rpm: int | None, tpm: int | None) -> None:
        if rpm is not None:
            buckets.append(Bucket(f"{scope}:rpm", "requests", rpm, label))
        if tpm is not None:
            buckets.append(Bucket(f"{scope}:tpm", "tokens", tpm, label))

    add(owner, who, principal.rate.rpm, principal.rate.tpm)
    names = model_names(route)
    for rate in _matching(principal.model_rates, names):
        add(
            f"{owner}:model:{rate.pattern}",
            f"{who} on model '{rate.pattern}'",
            rate.rate.rpm,
            rate.rate.tpm,
        )
    for rate in _matching(access.model_rates, names):
        add(f"model:{rate.pattern}", f"model '{rate.pattern}'", rate.rate.rpm, rate.rate.tpm)
    return buckets


def _matching(rates: tuple[ModelRate, ...], names: tuple[str, ...]) -> list[ModelRate]:
    return [rate for rate in rates if any(rate.matches(name) for name in names)]


def _rate_limited(refused: list[BucketState], headers: dict[str, str]) -> GatewayError:
    worst = max(refused, key=lambda state: state.retry_after)
    bucket = worst.bucket
    unit = "requests per min (RPM)" if bucket.kind == "requests" else "tokens per min (TPM)"
    return GatewayError(
        429,
        f"Rate limit reached for {bucket.label} on {unit}: Limit {bucket.limit}. "
        f"Please try again in {duration(worst.retry_after)}.",
        type=bucket.kind,
        code="rate_limit_exceeded",
        headers={**headers, **refusal_headers(refused)},
    )
