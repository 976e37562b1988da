"""Upstream body framing: incremental SSE and NDJSON decoders.

They turn byte chunks into ``(event_name, data_text)`` pairs and nothing more; what the data
means is the preset's business. Both accept ``\\r\\n`` and ``\\n`` line endings and ignore SSE
comments, so Gemini's CRLF frames and keep-alive pings need no special cases.
"""

from __future__ import annotations

from collections.abc import Iterator


class SSEDecoder:
    """Server-sent events per the WHATWG grammar (the subset upstream LLM APIs use)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[bytes] = []

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
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")
        elif not _ and line.lstrip().startswith((b"{", b"[")):
            # Some upstreams send a bare JSON error body on a streaming endpoint.
            self._data.append(line)

    def close(self) -> Iterator[tuple[str | None, str]]:
        """Flush a final event that had no trailing blank line."""
        if self._buffer:
            line, self._buffer = self._buffer.rstrip(b"\r"), b""
            yield from self._line(line)
        yield from self._line(b"")


class NDJSONDecoder:
    """One JSON document per line (Ollama-style and some proxies)."""

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
