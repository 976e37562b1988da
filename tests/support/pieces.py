"""Reading an upstream response's body the way the stream relay does: piece by piece."""

from __future__ import annotations

from gateway.providers.transport import UpstreamResponse


async def read_pieces(response: UpstreamResponse, into: list[bytes] | None = None) -> list[bytes]:
    """Every piece ``read_some`` returns up to the end (``b""``), appended to ``into`` if
    given, so a test can see what arrived before an error."""
    pieces = [] if into is None else into
    while piece := await response.read_some():
        pieces.append(piece)
    return pieces
