"""Mapping cases on disk: ``cases/<provider>/<name>.request.json`` and a recorded answer.

A case is a Responses request the operator cares about, in the folder of the provider it must
reach, with an optional recorded upstream body beside it:

- ``<name>.upstream.sse`` (or ``.ndjson``): a streamed answer; the case renders streaming,
- ``<name>.upstream.json``: a whole answer,
- ``<name>.upstream.<status>.json``: an error answer with that HTTP status (``…upstream.429.json``).

Rendering a case gives the upstream request the mapping makes, the canonical events the
response templates produce and the Responses events and final Response the client gets, with
ids and timestamps made stable, so it can be compared to a stored snapshot. The lifecycle
events' embedded Response is cut to its id and status: the whole one is the final Response.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from gateway.config.build import Runtime
    from gateway.tooling.render import UpstreamKind

_UPSTREAM: Final = re.compile(
    r"^(?P<name>.+)\.upstream(?:\.(?P<status>[1-5]\d\d))?\.(?P<kind>sse|ndjson|json)$"
)


class CaseError(Exception):
    """A case that cannot be rendered as written (wrong folder, bad JSON, no model)."""


@dataclass(frozen=True)
class MappingCase:
    provider: str
    name: str
    request_path: Path
    upstream_path: Path | None = None
    upstream_status: int = 200

    @property
    def id(self) -> str:
        return f"{self.provider}.{self.name}"  # a file name too: syrupy drops "/"

    @property
    def upstream_kind(self) -> UpstreamKind | None:
        if self.upstream_path is None:
            return None
        match = _UPSTREAM.match(self.upstream_path.name)
        kind = match.group("kind") if match else "json"
        return "sse" if kind == "sse" else "ndjson" if kind == "ndjson" else "json"

    def request(self) -> dict[str, Any]:
        try:
            body = orjson.loads(self.request_path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise CaseError(f"{self.request_path}: not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise CaseError(f"{self.request_path}: a request must be a JSON object")
        return body

    def render(self, runtime: Runtime) -> dict[str, Any]:
        """The case through ``runtime``'s mapping, as a JSON-ready dict with stable ids."""
        from gateway.errors import GatewayError
        from gateway.tooling.render import render_case

        body = self.request()
        model = None
        if "model" not in body:
            adapter = runtime.providers.get(self.provider)
            if adapter is None:
                raise CaseError(f"{self.id}: no provider '{self.provider}' in the config")
            if adapter.default_model is None:
                raise CaseError(
                    f"{self.id}: the request names no model and '{self.provider}' has no "
                    'default_model; add "model" to the request'
                )
            model = f"{self.provider}:{adapter.default_model}"
        upstream = self.upstream_path.read_bytes() if self.upstream_path else None
        try:
            rendered = render_case(
                runtime,
                body,
                model=model,
                upstream=upstream,
                upstream_kind=self.upstream_kind,
                upstream_status=self.upstream_status,
                stable=True,
            )
        except GatewayError as exc:  # a request the gateway refuses is a result too
            return {"refused": {"status": exc.status, "body": exc.body()}}
        if rendered.provider != self.provider:
            raise CaseError(
                f"{self.id}: model {rendered.model!r} routes to provider "
                f"'{rendered.provider}', not '{self.provider}' (the folder the case is in)"
            )
        result = rendered.as_dict()
        result.pop("notes", None)  # "key not set" depends on the machine, not on the mapping
        for event in result.get("events", ()):
            if isinstance(event.get("response"), dict):  # the final one is "response" below
                event["response"] = {key: event["response"].get(key) for key in ("id", "status")}
        return result


def discover(folder: Path) -> list[MappingCase]:
    """Every case under ``folder``, sorted by provider and name."""
    cases: list[MappingCase] = []
    if not folder.is_dir():
        return cases
    for provider_dir in sorted(path for path in folder.iterdir() if path.is_dir()):
        upstreams: dict[str, tuple[Path, int]] = {}
        for path in provider_dir.iterdir():
            match = _UPSTREAM.match(path.name)
            if match is not None:
                upstreams[match.group("name")] = (path, int(match.group("status") or 200))
        for request in sorted(provider_dir.glob("*.request.json")):
            name = request.name.removesuffix(".request.json")
            upstream, status = upstreams.get(name, (None, 200))
            cases.append(MappingCase(provider_dir.name, name, request, upstream, status))
    return cases
