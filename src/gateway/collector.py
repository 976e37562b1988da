"""Garbage collection for a server that holds many open streams.

CPython runs a full collection whenever the objects promoted to the oldest generation grow by
a quarter. A gateway relaying 1,000 streams keeps ~150k objects alive in that generation and
turns them over every few seconds, so full collections come every few seconds and each one
stops the event loop for ~100 ms (measured in the slow-streams benchmark): every stream
waiting on the loop pays it as latency. Reference counting frees almost everything a request
allocates; the cyclic collector is only needed for the few cycles (exceptions and their
tracebacks, mostly), and they can wait a while.

So, once the app has loaded: everything loaded so far is frozen out of the collector's sight
(it lives as long as the process), the young generations are collected as usual, and the full
collection runs on a clock (``FULL_COLLECTION_SECONDS``) instead of on allocation growth.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Final

#: Seconds between full collections: cyclic garbage waits at most this long.
FULL_COLLECTION_SECONDS: Final = 60.0
#: Young collections per middle one (CPython's default is 10): the middle generation stays
#: small, so collecting it pauses the loop ~1 ms rather than ~7 ms with 1,000 streams open.
_MIDDLE: Final = 2
#: A threshold for the oldest generation that allocation never reaches.
_NEVER: Final = 1 << 30


def settle() -> None:
    """Freeze what startup loaded and stop allocation-driven full collections."""
    gc.collect()
    gc.freeze()
    young, _, _ = gc.get_threshold()
    gc.set_threshold(young, _MIDDLE, _NEVER)


async def collect_on_a_clock(interval: float = FULL_COLLECTION_SECONDS) -> None:
    """Run a full collection every ``interval`` seconds, for as long as the app runs."""
    while True:
        await asyncio.sleep(interval)
        gc.collect()
