"""The operator's dry run: a Responses request through a mapping, no network.

``render_case`` runs the same stages as a live request (validate, route, normalize, the
provider's request templates) and, given a recorded upstream body, the same decoding, event
rules and emitter, so what it prints is what the gateway would send and answer. Secrets never
leave it: auth headers, key-like query parameters and every configured secret value are masked,
and a missing key is replaced by a placeholder so the shape can be checked without credentials.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from gateway.canonical import CanonicalEvent
from gateway.config.build import Runtime
from gateway.errors import GatewayError
from gateway.providers.adapter import ProviderAdapter
from gateway.providers.auth import Secret
from gateway.providers.decoding import make_decoder
from gateway.responses.emitter import ResponseEmitter, ResponsesEvent
from gateway.responses.normalize import normalize, parse_body
from gateway.responses.sse import encode_events

MASK: Final = "***"
PLACEHOLDER_KEY: Final = "gateway-render-placeholder-key"

_SECRET_HEADER: Final = re.compile(
    r"^(authorization|proxy-authorization|cookie|set-cookie)$|key|token|secret|password|signature",
    re.I,
)
_SECRET_QUERY: Final = re.compile(
    r"^(key|api[-_]?key|apikey|token|access[-_]?token|secret|sig|signature|password|auth)$", re.I
)
_GENERATED_ID: Final = re.compile(r"^(?P<prefix>[a-z]+)_[0-9a-f]{48}$")
_TIMESTAMPS: Final = frozenset({"created_at", "completed_at"})

UpstreamKind = Literal["json", "sse", "ndjson"]


@dataclass(frozen=True)
class RenderedRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: Any  # the JSON body (None for a body-less request)


@dataclass
class Rendered:
    """One request through one provider mapping, and what an upstream body becomes."""

    model: str
    provider: str
    upstream_model: str
    stream: bool
    request: RenderedRequest
    notes: list[str] = field(default_factory=list)
    canonical: list[CanonicalEvent] | None = None  # what the response/stream templates made
    events: list[ResponsesEvent] | None = None  # the Responses SSE events (streaming)
    response: dict[str, Any] | None = None  # the final Response object
    error: dict[str, Any] | None = None  # the client's error for an upstream error status

    def as_dict(self) -> dict[str, Any]:
        result = dataclasses.asdict(self)
        return {key: value for key, value in result.items() if value is not None}


def render_case(
    runtime: Runtime,
    body: Mapping[str, Any],
    *,
    model: str | None = None,
    stream: bool | None = None,
    upstream: bytes | None = None,
    upstream_kind: UpstreamKind | None = None,
    upstream_status: int = 200,
    stable: bool = False,
) -> Rendered:
    """Render ``body`` (a Responses request) as the gateway would; ``GatewayError`` if invalid.

    ``stable`` replaces generated ids and timestamps with fixed ones, for snapshots.
    """
    request = dict(body)
    if model is not None:
        request["model"] = model
    if upstream is not None and upstream_kind is None:
        upstream_kind = guess_kind(upstream)
    if stream is None and "stream" not in request and upstream is not None:
        stream = upstream_kind != "json"
    if stream is not None:
        request["stream"] = stream
    parsed = parse_body(orjson.dumps(request), runtime.limits)
    route = runtime.router.resolve(parsed.model)
    target = route.targets[0]
    notes: list[str] = []
    if len(route.targets) > 1:
        others = ", ".join(f"{t.provider}:{t.model}" for t in route.targets[1:])
        notes.append(f"rendering the first target; the others are {others}")
    adapter, note = _with_usable_key(runtime.providers[target.provider])
    if note:
        notes.append(note)
    req = normalize(parsed, target.model, dict(target.params) if target.params else None)
    secrets = _secrets(runtime, adapter)
    upstream_request = adapter.build_request(req)
    rendered = Rendered(
        model=parsed.model,
        provider=target.provider,
        upstream_model=target.model,
        stream=parsed.stream,
        request=RenderedRequest(
            method=upstream_request.method,
            url=redact_url(upstream_request.url, secrets),
            headers=redact_headers(upstream_request.headers, secrets),
            body=scrub(upstream_request.json, secrets),
        ),
        notes=notes,
    )
    if upstream is not None:
        if upstream_status >= 400:
            failure = adapter.classify_error(upstream_status, {}, upstream)
            rendered.error = {
                "status": failure.error.status,
                "class": failure.error_class,
                "body": failure.error.body(),
            }
        else:
            _answer(rendered, adapter, req, parsed.body, upstream, upstream_kind or "json")
        rendered.canonical = scrub(rendered.canonical, secrets)
        rendered.events = scrub(rendered.events, secrets)
        rendered.response = scrub(rendered.response, secrets)
        rendered.error = scrub(rendered.error, secrets)
    if stable:
        _stabilize(rendered)
    return rendered


def _answer(
    rendered: Rendered,
    adapter: ProviderAdapter,
    req: Any,
    body: dict[str, Any],
    upstream: bytes,
    kind: UpstreamKind,
) -> None:
    emitter = ResponseEmitter(
        model=rendered.model,
        body=body,
        finish_reasons=adapter.finish_reasons,
        stream=rendered.stream,
    )
    canonical: list[CanonicalEvent] = []
    if kind == "json":
        canonical = adapter.events_from_body(orjson.loads(upstream), req)
    else:
        decoder = make_decoder("ndjson" if kind == "ndjson" else adapter.stream.framing)
        for name, data in [*decoder.feed(upstream), *decoder.close()]:
            canonical.extend(adapter.events_from_chunk(name, data, req))
    events = emitter.start() if rendered.stream else []
    for event in canonical:
        events.extend(emitter.feed(event))
    if not emitter.done:
        requires_done = adapter.stream.requires_done if kind != "json" else False
        events.extend(emitter.end_of_stream(requires_done=requires_done))
    rendered.canonical = canonical
    rendered.events = events if rendered.stream else None
    rendered.response = emitter.response


def guess_kind(upstream: bytes) -> UpstreamKind:
    """A whole JSON body, an SSE stream, or NDJSON lines."""
    text = upstream.lstrip()
    if text.startswith((b"data:", b"event:", b":", b"id:")):
        return "sse"
    try:
        orjson.loads(upstream)
    except orjson.JSONDecodeError:
        return "ndjson"
    return "json"


# --------------------------------------------------------------------------- secrets


def _with_usable_key(adapter: ProviderAdapter) -> tuple[ProviderAdapter, str | None]:
    """A placeholder key when the real one is not set: the dry run needs no credentials."""
    auth = adapter.auth
    if auth.scheme == "none" or auth.key is not None:
        return adapter, None
    variable = auth.missing_variable or "its api_key"
    note = f"provider '{adapter.name}' has no API key ({variable} is not set): shown masked"
    placeholder = dataclasses.replace(auth, key=Secret(PLACEHOLDER_KEY))
    return dataclasses.replace(adapter, auth=placeholder), note


def _secrets(runtime: Runtime, adapter: ProviderAdapter) -> tuple[str, ...]:
    values = {PLACEHOLDER_KEY, *adapter.auth.secret_values()}
    for provider in runtime.providers.values():
        values.update(provider.auth.secret_values())
    return tuple(sorted((value for value in values if value), key=len, reverse=True))


def scrub_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` with every secret string masked, wherever it sits."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if isinstance(value, Mapping):
        return {key: scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item, secrets) for item in value]
    return value


def redact_headers(headers: Mapping[str, str], secrets: Iterable[str]) -> dict[str, str]:
    """Header values with secrets masked; auth-like headers masked whatever they hold."""
    result: dict[str, str] = {}
    for name, value in headers.items():
        shown = scrub_text(str(value), secrets)
        if _SECRET_HEADER.search(name) and MASK not in shown:
            scheme, _, rest = shown.partition(" ")
            shown = f"{scheme} {MASK}" if rest else MASK
        result[name.lower()] = shown
    return dict(sorted(result.items()))


def redact_url(url: str, secrets: Iterable[str]) -> str:
    """The URL with key-like query parameters and secret values masked."""
    parts = urlsplit(scrub_text(url, secrets))
    if not parts.query:
        return urlunsplit(parts)
    query = [
        (name, MASK if _SECRET_QUERY.match(name) else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


# --------------------------------------------------------------------------- output


def _stabilize(rendered: Rendered) -> None:
    """Generated ids become ``resp_1``, ``msg_1``…; timestamps become 0."""
    names: dict[str, str] = {}
    counters: dict[str, int] = {}

    def stable(value: Any, key: str | None = None) -> Any:
        if isinstance(value, str):
            match = _GENERATED_ID.match(value)
            if match is None:
                return value
            if value not in names:
                prefix = match.group("prefix")
                counters[prefix] = counters.get(prefix, 0) + 1
                names[value] = f"{prefix}_{counters[prefix]}"
            return names[value]
        if isinstance(value, int) and key in _TIMESTAMPS:
            return 0
        if isinstance(value, Mapping):
            return {name: stable(item, name) for name, item in value.items()}
        if isinstance(value, list):
            return [stable(item) for item in value]
        return value

    rendered.canonical = stable(rendered.canonical)
    rendered.events = stable(rendered.events)
    rendered.response = stable(rendered.response)


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def format_text(rendered: Rendered) -> str:
    """What ``gateway render`` prints: the HTTP request, then what an upstream body becomes."""
    mode = "streaming" if rendered.stream else "not streaming"
    lines = [
        f"# model {rendered.model!r} -> provider {rendered.provider!r}, "
        f"upstream model {rendered.upstream_model!r} ({mode})",
        *(f"# note: {note}" for note in rendered.notes),
        f"{rendered.request.method} {rendered.request.url}",
        *(f"{name}: {value}" for name, value in rendered.request.headers.items()),
        "",
    ]
    if rendered.request.body is not None:
        lines.append(_pretty(rendered.request.body))
    if rendered.error is not None:
        lines += ["", f"# the client gets HTTP {rendered.error['status']}", _pretty(rendered.error)]
    if rendered.canonical is not None:
        lines += ["", "# canonical events (what the response/stream templates produced)"]
        lines += [orjson.dumps(event).decode() for event in rendered.canonical]
    if rendered.events is not None:
        lines += ["", "# Responses events (SSE, as the client receives them)"]
        lines.append(encode_events(rendered.events).decode().rstrip("\n"))
    if rendered.response is not None:
        lines += ["", "# final Response", _pretty(rendered.response)]
    return "\n".join(lines) + "\n"


def describe_error(error: GatewayError) -> str:
    """A request the gateway would refuse, as the client would see it."""
    return f"the gateway would answer HTTP {error.status}:\n{_pretty(error.body())}"
