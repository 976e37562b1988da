"""Upstream SSE framing: the same frames however the bytes are split across reads."""

from __future__ import annotations

import random

import pytest

from gateway.providers.decoding import Frame, SSEDecoder


def decode(pieces: list[bytes]) -> list[Frame]:
    decoder = SSEDecoder()
    frames: list[Frame] = []
    for piece in pieces:
        frames.extend(decoder.feed(piece))
    return frames + decoder.close()


def splits(body: bytes, seed: int) -> list[bytes]:
    """``body`` cut at random places (empty pieces included)."""
    rng = random.Random(seed)
    cuts = sorted(rng.randrange(len(body) + 1) for _ in range(rng.randrange(1, 12)))
    return [body[start:end] for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True)]


CASES: dict[str, tuple[bytes, list[Frame]]] = {
    "one data line per event": (
        b'data: {"a":1}\n\ndata: {"a":2}\n\ndata: [DONE]\n\n',
        [(None, '{"a":1}'), (None, '{"a":2}'), (None, "[DONE]")],
    ),
    "named events": (
        b'event: message_start\ndata: {"x":1}\n\nevent: ping\ndata: {}\n\n',
        [("message_start", '{"x":1}'), ("ping", "{}")],
    ),
    "named events of other shapes: empty data, no data, data over two lines, an id": (
        b"event: a\ndata: \n\nevent: b\n\nevent: c\ndata: 1\ndata: 2\n\n"
        b"event: d\ndata: x\nid: 7\n\nevent:e\ndata:y\n\ndata: z\nevent: f\n\n",
        [("a", ""), ("c", "1\n2"), ("d", "x"), ("e", "y"), ("f", "z")],
    ),
    "data lines joined, no space after the colon": (
        b"data: one\ndata:two\n\n",
        [(None, "one\ntwo")],
    ),
    "comments and keep-alives": (
        b': ping\n\ndata: {"a":1}\n\n:\n\n',
        [(None, '{"a":1}')],
    ),
    "CRLF lines": (
        b"event: e\r\ndata: x\r\n\r\ndata: y\r\n\r\n",
        [("e", "x"), (None, "y")],
    ),
    "blank lines between events": (
        b"\n\ndata: x\n\n\n\ndata: y\n\n\n",
        [(None, "x"), (None, "y")],
    ),
    "a last event without its blank line": (
        b"data: x\n\ndata: y",
        [(None, "x"), (None, "y")],
    ),
    "a pretty-printed JSON error body instead of a stream": (
        b'{\n  "error": {\n    "message": "bad key"\n  }\n}\n',
        [(None, '{\n  "error": {\n    "message": "bad key"\n  }\n}')],
    ),
    "non-UTF-8 bytes are replaced, not fatal": (
        b"data: \xff\n\n",
        [(None, "\ufffd")],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_frames_whole(name: str) -> None:
    body, frames = CASES[name]
    assert decode([body]) == frames


@pytest.mark.parametrize("name", CASES)
def test_frames_however_the_bytes_are_split(name: str) -> None:
    body, frames = CASES[name]
    for seed in range(200):
        assert decode(splits(body, seed)) == frames, seed
    assert decode([body[i : i + 1] for i in range(len(body))]) == frames  # a byte at a time


def test_a_crlf_stream_after_lf_events_and_back() -> None:
    body = b"data: a\n\nevent: e\r\ndata: b\r\n\r\ndata: c\n\n"
    assert decode([body[:9], body[9:30], body[30:]]) == [(None, "a"), ("e", "b"), (None, "c")]
