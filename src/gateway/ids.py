"""Random ids (requests, traces, spans, Responses objects), drawn from the OS in bulk.

``os.urandom`` is a system call; a request needs several ids, so 24-byte draws are taken 64 at
a time. ``list.pop`` is atomic, so no two threads get the same draw, and a forked child starts
with an empty pool rather than repeating its parent's ids.
"""

from __future__ import annotations

import os
from typing import Final

#: Hex digits in one draw: 24 random bytes, what ``secrets.token_hex(24)`` gives.
DIGITS: Final = 48
_DRAWS_AT_ONCE: Final = 64
_pool: list[str] = []
os.register_at_fork(after_in_child=_pool.clear)


def random_hex() -> str:
    """``DIGITS`` random hex digits; each call a fresh draw."""
    try:
        return _pool.pop()
    except IndexError:
        drawn = os.urandom(DIGITS // 2 * _DRAWS_AT_ONCE).hex()
        _pool.extend(drawn[start : start + DIGITS] for start in range(0, len(drawn), DIGITS))
        return _pool.pop()
