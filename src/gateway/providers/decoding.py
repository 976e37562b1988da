"""Upstream body framing: incremental SSE and NDJSON decoders.

They turn byte chunks into ``(event_name, data_text)`` pairs and nothing more; what the data
means is the preset's business. Both accept ``\\r\\n`` and ``\\n`` line endings and ignore SSE
comments, so CRLF frames and keep-alive pings need no special cases.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

#: A bare (un-prefixed) JSON body longer than this is passed on as is, parsed or not.
MAX_BARE_JSON = 1024 * 1024


class SSEDecoder:
    """Server-sent events per the WHATWG grammar (the subset upstream LLM APIs use)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[bytes] = []
        self._bare: list[bytes] | None = None  # lines of a bare JSON body being collected
        self._bare_size = 0

    def feed(self, chunk: bytes) -> Iterator[tuple[str | None, str]]:
        self._buffer += chunk
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return
            line = self._buffer[:newline]
            self._buffer = self._buffer[newline + 1 :]
            if line.endswith(b"\r"):
                line = line[:-1]
            yield from self._line(line)

    def _line(self, line: bytes) -> Iterator[tuple[str | None, str]]:
        if self._bare is not None:
            yield from self._bare_line(line)
            return
        if not line:
            if self._data:
                data = b"\n".join(self._data).decode("utf-8", "replace")
                event, self._event, self._data = self._event, None, []
                yield event, data
            else:
                self._event = None
            return
        if line.startswith(b":"):
            return
        if line.lstrip().startswith((b"{", b"[")) and not self._data:
            # Some upstreams answer a streaming call with a plain (often pretty-printed,
            # multi-line) JSON error body: collect its lines until they parse as one document.
            self._bare, self._bare_size = [], 0
            yield from self._bare_line(line)
            return
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")

    def _bare_line(self, line: bytes) -> Iterator[tuple[str | None, str]]:
        assert self._bare is not None
        self._bare.append(line)
        self._bare_size += len(line) + 1
        if not line.rstrip().endswith((b"}", b"]")) and self._bare_size <= MAX_BARE_JSON:
            return
        text = b"\n".join(self._bare)
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            if self._bare_size <= MAX_BARE_JSON:
                return
        self._bare = None
        yield None, text.decode("utf-8", "replace")

    def close(self) -> Iterator[tuple[str | None, str]]:
        """Flush a final event that had no trailing blank line."""
        if self._buffer:
            line, self._buffer = self._buffer.rstrip(b"\r"), b""
            yield from self._line(line)
        if self._bare is not None:  # a bare body cut short: pass it on, the reader reports it
            text, self._bare = b"\n".join(self._bare), None
            yield None, text.decode("utf-8", "replace")
        yield from self._line(b"")


class NDJSONDecoder:
    """One JSON document per line (some native APIs and proxies stream this way)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> Iterator[tuple[str | None, str]]:
        self._buffer += chunk
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return
            line, self._buffer = self._buffer[:newline].strip(), self._buffer[newline + 1 :]
            if line:
                yield None, line.decode("utf-8", "replace")

    def close(self) -> Iterator[tuple[str | None, str]]:
        line, self._buffer = self._buffer.strip(), b""
        if line:
            yield None, line.decode("utf-8", "replace")


Decoder = SSEDecoder | NDJSONDecoder


def make_decoder(framing: str) -> Decoder:
    return NDJSONDecoder() if framing == "ndjson" else SSEDecoder()
