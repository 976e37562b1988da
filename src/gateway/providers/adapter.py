"""The generic adapter: one provider's YAML compiled into request and event renderers.

Nothing here knows any provider. A preset says how to shape the upstream request, how to read a
whole answer, how to read each stream chunk (rules dispatched on a discriminator field), how to
classify errors and what finish reasons mean; this module compiles those trees once per config
version and renders them per request and per chunk.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlencode

import orjson

from gateway.canonical import CanonicalEvent, CanonicalRequest
from gateway.errors import GatewayError
from gateway.providers.auth import Auth, Secret
from gateway.responses.emitter import FinishOutcome
from gateway.templating import (
    OMIT,
    Renderer,
    RenderError,
    TemplateRaised,
    compile_bindings,
    compile_string,
    compile_tree,
)


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    read: float = 300.0  # idle time between bytes
    write: float = 30.0
    pool: float = 10.0
    total: float | None = None  # whole attempt
    first_token: float | None = None  # until the first upstream event


class UpstreamRequest:
    """One request for the upstream.

    Built per request: a plain class (README, "The hot path, compiled").
    """

    def __init__(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, json: Any
    ) -> None:
        self.method: Final = method
        self.url: Final = url
        self.headers: Final = headers
        self.body: Final = body
        self.json: Final = json  # the body before encoding, for ``gateway render``


@dataclass(frozen=True)
class UpstreamFailure:
    """A classified upstream error: what the client sees and whether another try may help."""

    error: GatewayError
    error_class: (
        str  # rate_limited | overloaded | timeout | server_error | context_too_long | client_error
    )


logger = logging.getLogger("gateway.providers")

RETRYABLE_CLASSES: Final = frozenset({"rate_limited", "overloaded", "timeout", "server_error"})

#: Upstream status → (client status, OpenAI error type, code, class). Presets extend it.
DEFAULT_STATUSES: Final[dict[int, tuple[int, str, str | None, str]]] = {
    400: (400, "invalid_request_error", None, "client_error"),
    401: (401, "authentication_error", "invalid_api_key", "client_error"),
    403: (403, "permission_error", None, "client_error"),
    404: (404, "not_found_error", "model_not_found", "client_error"),
    408: (504, "timeout_error", "upstream_timeout", "timeout"),
    409: (409, "conflict_error", None, "server_error"),
    413: (413, "invalid_request_error", "request_too_large", "client_error"),
    422: (422, "invalid_request_error", None, "client_error"),
    429: (429, "rate_limit_error", "rate_limit_exceeded", "rate_limited"),
    500: (500, "server_error", "server_error", "server_error"),
    502: (502, "server_error", "bad_gateway", "server_error"),
    503: (503, "server_error", "service_unavailable", "overloaded"),
    504: (504, "timeout_error", "upstream_timeout", "timeout"),
}


@dataclass(frozen=True)
class StreamSpec:
    framing: str  # sse | ndjson
    done_data: str | None  # a data payload that means "finished" (Chat's "[DONE]")
    discriminator: Renderer | None  # picks the rule set for an event
    rules: Mapping[str, Renderer]
    default: Renderer | None
    requires_done: bool  # the stream must end with a ``done`` event, not just a finish


@dataclass(frozen=True)
class ErrorSpec:
    message: Renderer
    type: Renderer
    code: Renderer
    statuses: Mapping[int, tuple[int, str, str | None, str]]
    classes: Renderer  # body → error class override (e.g. context_too_long)
    status: Renderer  # body → the status to classify by (an API that says 400 for a bad key)


@dataclass(frozen=True)
class ProviderAdapter:
    """Everything needed to call one configured provider, compiled."""

    name: str
    base_url: str
    auth: Auth
    default_model: str | None
    models: tuple[str, ...]
    timeouts: Timeouts
    method: str
    path: Renderer
    query: Renderer
    headers: Renderer
    body: Renderer
    response_events: Renderer
    stream: StreamSpec
    errors: ErrorSpec
    finish_reasons: Mapping[str, FinishOutcome]
    static_headers: Mapping[str, str]
    pool_key: str  # equal keys may share one HTTP connection pool across reloads
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: ``request.let``: named values computed once per request, in order, before the request
    #: trees, so a preset can derive a value several fields need (and an operator can still
    #: override one body field, since the body stays a plain mapping).
    request_let: Callable[[dict[str, Any]], None] | None = None

    # ------------------------------------------------------------------ request

    def build_request(self, req: CanonicalRequest) -> UpstreamRequest:
        scope = {
            "req": req,
            "model": req["model"],
            "stream": req["stream"],
            "provider": self.settings,
        }
        try:
            if self.request_let is not None:
                self.request_let(scope)
            body = self.body(scope)
            path = self.path(scope)
            query = {k: str(v) for k, v in (self.query(scope) or {}).items()}
            headers = dict(self.static_headers)
            headers.update({k: str(v) for k, v in (self.headers(scope) or {}).items()})
        # The preset refused this input: the client can fix it. (A name of its own: compiled
        # by mypyc, a name two ``except`` clauses bind keeps the first one's type.)
        except TemplateRaised as refused:
            raise GatewayError(
                400, refused.message, param=refused.param, code=refused.code or "unsupported_value"
            ) from None
        except RenderError as exc:
            raise GatewayError(
                500,
                f"Provider '{self.name}' request mapping failed: {exc}",
                type="server_error",
                code="mapping_error",
            ) from exc
        except GatewayError:
            raise
        self.auth.apply(headers, query)
        url = self.base_url.rstrip("/") + "/" + str(path).lstrip("/")
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query)
        encoded = None if body is None or body is OMIT else orjson.dumps(body)
        if encoded is not None:
            headers.setdefault("content-type", "application/json")
        return UpstreamRequest(self.method, url, headers, encoded, body)

    # ------------------------------------------------------------------ answers

    def events_from_body(self, body: Any, req: CanonicalRequest) -> list[CanonicalEvent]:
        """A whole (non-streaming) upstream answer → canonical events."""
        try:
            rendered = self.response_events({"body": body, "req": req, "provider": self.settings})
        except RenderError as exc:
            return [self._mapping_failed(exc)]
        return self._events(rendered)

    def events_from_chunk(
        self, name: str | None, data: str, req: CanonicalRequest
    ) -> list[CanonicalEvent]:
        """One stream frame → canonical events (dispatched on the discriminator)."""
        spec = self.stream
        if spec.done_data is not None and data == spec.done_data:
            return [{"type": "done"}]
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return [
                {
                    "type": "error",
                    "code": "server_error",
                    "message": "The upstream sent a malformed stream chunk.",
                }
            ]
        scope = {"event": event, "sse": name, "req": req, "provider": self.settings}
        rule = None
        if spec.discriminator is not None:
            value = spec.discriminator(scope)
            if value is not None:
                rule = spec.rules.get(value if type(value) is str else str(value))
        if rule is None:
            rule = spec.default
        if rule is None:
            return []
        try:
            rendered = rule(scope)
        except RenderError as exc:
            return [self._mapping_failed(exc)]
        return self._events(rendered)

    def _mapping_failed(self, exc: RenderError) -> CanonicalEvent:
        """A response template that failed on this answer: a config bug, reported, not a 500."""
        logger.error("provider '%s' response mapping failed: %s", self.name, self.redact(str(exc)))
        return {
            "type": "error",
            "code": "server_error",
            "class": "server_error",
            "message": f"The gateway could not read provider '{self.name}''s answer (mapping error).",
        }

    def classify_error(
        self, status: int, headers: Mapping[str, str], content: bytes
    ) -> UpstreamFailure:
        """An upstream HTTP error → the OpenAI-shaped error the client sees, and its class."""
        try:
            body: Any = orjson.loads(content) if content else None
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, list) and body:  # some APIs wrap the error in a one-element list
            body = body[0]
        text = content[:2000].decode("utf-8", "replace")
        scope = {"body": body, "status": status, "text": text, "provider": self.settings}
        try:
            restated = self.errors.status(scope)
        except RenderError:
            restated = None
        lookup = status
        if isinstance(restated, int) and not isinstance(restated, bool) and restated >= 400:
            lookup = restated
        client_status, error_type, code, error_class = self.errors.statuses.get(
            lookup,
            (
                lookup if 400 <= lookup < 600 else 502,
                "server_error" if lookup >= 500 else "invalid_request_error",
                None,
                "server_error" if lookup >= 500 else "client_error",
            ),
        )
        try:
            message = self.errors.message(scope) or text or f"HTTP {status}"
            upstream_type = self.errors.type(scope)
            upstream_code = self.errors.code(scope)
            override = self.errors.classes(scope)
        except RenderError:
            message, upstream_type, upstream_code, override = (
                text or f"HTTP {status}",
                None,
                None,
                None,
            )
        if isinstance(override, str) and override:
            error_class = override
        if error_class == "context_too_long":
            code = "context_length_exceeded"
        message = self.redact(f"Upstream provider '{self.name}' returned HTTP {status}: {message}")
        extra: dict[str, str] = {}
        for name in ("retry-after", "retry-after-ms"):
            if name in headers:
                extra[name] = headers[name]
        error = GatewayError(
            client_status,
            message,
            type=str(upstream_type)
            if upstream_type and client_status < 500 and client_status != 429
            else error_type,
            code=str(upstream_code) if upstream_code and code is None else code,
            headers=extra,
        )
        return UpstreamFailure(error, error_class)

    def redact(self, text: str) -> str:
        """Remove this provider's key from text an upstream may have echoed it in."""
        for secret in self.auth.secret_values():
            if secret:
                text = text.replace(secret, "***")
        return text

    def _events(self, rendered: Any) -> list[CanonicalEvent]:
        """A rule's result as a list of events, in one pass since it runs per chunk. Error
        events carry upstream text to the client: never with the provider's key."""
        if isinstance(rendered, dict):
            events = [rendered]
        elif rendered is None or rendered is OMIT:
            return []
        else:  # a loop, not a comprehension: a chunk has an event or two
            events = []
            for event in rendered:
                if isinstance(event, dict):
                    events.append(event)
        for event in events:
            if event.get("type") == "error" and event.get("message"):
                event["message"] = self.redact(str(event["message"]))
        return events


# --------------------------------------------------------------------------- compile


def _status_table(source: Mapping[str, Any] | None) -> dict[int, tuple[int, str, str | None, str]]:
    table = dict(DEFAULT_STATUSES)
    for key, value in (source or {}).items():
        base = table.get(int(key), (int(key), "server_error", None, "server_error"))
        table[int(key)] = (
            int(value.get("status", base[0])),
            str(value.get("type", base[1])),
            value.get("code", base[2]),
            str(value.get("class", base[3])),
        )
    return table


def _finish_table(source: Mapping[str, Any] | None) -> dict[str, FinishOutcome]:
    table: dict[str, FinishOutcome] = {}
    for raw, value in (source or {}).items():
        if isinstance(value, str):
            table[str(raw)] = FinishOutcome(status=value)
        else:
            table[str(raw)] = FinishOutcome(
                status=str(value.get("status", "completed")),
                reason=value.get("reason"),
                code=value.get("code"),
                message=value.get("message"),
            )
    return table


def _const(value: Any) -> Renderer:
    return lambda scope: value


def compile_adapter(name: str, spec: Mapping[str, Any], auth: Auth) -> ProviderAdapter:
    """Compile one merged provider entry. Template errors raise ``TemplateError`` with a path."""
    request = spec.get("request") or {}
    response = spec.get("response") or {}
    stream = spec.get("stream") or {}
    errors = spec.get("errors") or {}
    timeouts = spec.get("timeouts") or {}
    discriminator = stream.get("discriminator")
    pool_material = orjson.dumps(
        {"base_url": spec.get("base_url"), "timeouts": timeouts, "pool": spec.get("pool")},
        option=orjson.OPT_SORT_KEYS,
    )
    return ProviderAdapter(
        name=name,
        base_url=str(spec.get("base_url", "")),
        auth=auth,
        default_model=spec.get("default_model"),
        models=tuple(spec.get("models") or ()),
        timeouts=Timeouts(**{key: float(value) for key, value in timeouts.items()}),
        method=str(request.get("method", "POST")).upper(),
        path=compile_string(str(request.get("path", "/")), ("request", "path")),
        query=compile_tree(request.get("query") or {}, ("request", "query")),
        headers=compile_tree(request.get("headers") or {}, ("request", "headers")),
        body=compile_tree(request.get("body"), ("request", "body")),
        request_let=compile_bindings(request["let"], ("request", "let"))
        if request.get("let")
        else None,
        response_events=compile_tree(response.get("events"), ("response", "events")),
        stream=StreamSpec(
            framing=str(stream.get("framing", "sse")),
            done_data=stream.get("done_data"),
            discriminator=compile_string(f"{{{{ {discriminator} }}}}", ("stream", "discriminator"))
            if discriminator
            else None,
            rules={
                str(key): compile_tree(tree, ("stream", "rules", key))
                for key, tree in (stream.get("rules") or {}).items()
            },
            default=compile_tree(stream["default"], ("stream", "default"))
            if stream.get("default") is not None
            else None,
            requires_done=str(stream.get("terminal", "finish")) == "done",
        ),
        errors=ErrorSpec(
            message=compile_tree(errors.get("message", "{{ text }}"), ("errors", "message")),
            type=compile_tree(errors.get("type"), ("errors", "type"))
            if errors.get("type")
            else _const(None),
            code=compile_tree(errors.get("code"), ("errors", "code"))
            if errors.get("code")
            else _const(None),
            statuses=_status_table(errors.get("statuses")),
            classes=compile_tree(errors.get("class"), ("errors", "class"))
            if errors.get("class")
            else _const(None),
            status=compile_tree(errors.get("status"), ("errors", "status"))
            if errors.get("status")
            else _const(None),
        ),
        finish_reasons=_finish_table(spec.get("finish_reasons")),
        static_headers={str(k): str(v) for k, v in (spec.get("headers") or {}).items()},
        pool_key=hashlib.sha256(pool_material).hexdigest(),
        settings={
            "name": name,
            "default_model": spec.get("default_model"),
            **(spec.get("settings") or {}),
        },
    )


def make_auth(name: str, spec: Mapping[str, Any], missing_variable: str | None) -> Auth:
    auth = spec.get("auth") or {}
    scheme = str(auth.get("scheme", "bearer"))
    default_name = {
        "bearer": "Authorization",
        "header": "x-api-key",
        "query": "key",
        "none": "",
    }.get(scheme, "")
    key = spec.get("api_key")
    return Auth(
        scheme=scheme,  # type: ignore[arg-type]
        name=str(auth.get("name", default_name)),
        prefix=str(auth.get("prefix", "Bearer " if scheme == "bearer" else "")),
        key=Secret(str(key)) if key else None,
        missing_variable=missing_variable,
        provider=name,
    )
