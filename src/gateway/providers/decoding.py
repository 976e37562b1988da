"""Upstream body framing: incremental SSE and NDJSON decoders.

They turn byte chunks into ``(event_name, data_text)`` pairs and nothing more; what the data
means is the preset's business. Both accept ``\\r\\n`` and ``\\n`` line endings and ignore SSE
comments, so CRLF frames and keep-alive pings need no special cases.
"""

from __future__ import annotations

from typing import Final

import orjson

#: A bare (un-prefixed) JSON body longer than this is passed on as is, parsed or not.
MAX_BARE_JSON = 1024 * 1024

#: Bytes searched for as integers: ``b"\r" in data`` first tries its operand as an integer
#: and formats, then drops, a TypeError every time (a third of ``feed``'s cost); ``13 in data``
#: is a plain byte search.
_CR: Final = ord("\r")
_LF: Final = ord("\n")


Frame = tuple[str | None, str]


class SSEDecoder:
    """Server-sent events per the WHATWG grammar (the subset upstream LLM APIs use)."""

    def __init__(self) -> None:
        self._buffer = b""  # an incomplete last line
        self._event: str | None = None
        self._data: list[bytes] = []
        self._bare: list[bytes] | None = None  # lines of a bare JSON body being collected
        self._bare_size = 0

    def feed(self, chunk: bytes) -> list[Frame]:
        """The events completed by ``chunk``, in order."""
        pending = self._buffer + chunk
        frames: list[Frame] = []
        if self._data or self._event is not None or self._bare is not None or _CR in pending:
            lines = pending.split(b"\n")  # mid-event, or CRLF lines: line by line
            self._buffer = lines.pop()
            self._read(lines, frames)
            return frames
        # At an event boundary with LF lines (every LLM API): whole events at a time, and the
        # two shapes nearly all events have, one ``data: `` line, or an ``event: `` line then
        # one ``data: `` line, without going line by line.
        blocks = pending.split(b"\n\n")
        self._buffer = blocks.pop()  # an incomplete event, read again with the next chunk
        for block in blocks:
            if self._bare is None and block.startswith(b"data: ") and _LF not in block:
                frames.append((None, block[6:].decode("utf-8", "replace")))
            elif self._bare is None and (frame := _named_frame(block)) is not None:
                frames.append(frame)
            else:
                self._read([*block.split(b"\n"), b""], frames)
        return frames

    def _read(self, lines: list[bytes], frames: list[Frame]) -> None:
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._bare is not None:
                self._bare_line(line, frames)
            elif line.startswith(b"data:"):  # nearly every line
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
            elif not line:
                if self._data:
                    data = b"\n".join(self._data).decode("utf-8", "replace")
                    frames.append((self._event, data))
                    self._data = []
                self._event = None
            else:
                self._field(line, frames)

    def _field(self, line: bytes, frames: list[Frame]) -> None:
        """A comment, an ``event:`` (or other) field, or the start of a bare JSON body."""
        if line.startswith(b":"):
            return
        if line.lstrip().startswith((b"{", b"[")) and not self._data:
            # Some upstreams answer a streaming call with a plain (often pretty-printed,
            # multi-line) JSON error body: collect its lines until they parse as one document.
            self._bare, self._bare_size = [], 0
            self._bare_line(line, frames)
            return
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")

    def _bare_line(self, line: bytes, frames: list[Frame]) -> None:
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
        frames.append((None, text.decode("utf-8", "replace")))

    def close(self) -> list[Frame]:
        """Flush a final event that had no trailing blank line."""
        frames: list[Frame] = []
        if self._buffer:
            lines, self._buffer = self._buffer.split(b"\n"), b""
            self._read(lines, frames)
        if self._bare is not None:  # a bare body cut short: pass it on, the reader reports it
            text, self._bare = b"\n".join(self._bare), None
            frames.append((None, text.decode("utf-8", "replace")))
        self._read([b""], frames)
        return frames


def _named_frame(block: bytes) -> Frame | None:
    """An event of an ``event: `` line then one ``data: `` line, read whole; else ``None``."""
    if not block.startswith(b"event: "):
        return None
    name, _, data = block.partition(b"\n")
    if not data.startswith(b"data: ") or _LF in data:
        return None
    return name[7:].decode("utf-8", "replace"), data[6:].decode("utf-8", "replace")


class NDJSONDecoder:
    """One JSON document per line (some native APIs and proxies stream this way)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[Frame]:
        lines = (self._buffer + chunk).split(b"\n")
        self._buffer = lines.pop()
        return [(None, line.decode("utf-8", "replace")) for line in map(bytes.strip, lines) if line]

    def close(self) -> list[Frame]:
        line, self._buffer = self._buffer.strip(), b""
        return [(None, line.decode("utf-8", "replace"))] if line else []


Decoder = SSEDecoder | NDJSONDecoder


def make_decoder(framing: str) -> Decoder:
    return NDJSONDecoder() if framing == "ndjson" else SSEDecoder()
