"""Access control: gateway keys, per-key policy, rate limits (see docs/security.md).

- ``keys``: compile ``keys:``/``limits:`` into an ``AccessConfig``; constant-time lookup.
- ``middleware``: authentication of every non-probe route (401), ``request.state.principal``.
- ``policy``: which models/providers a key may use (403); admin checks.
- ``limits``: RPM/TPM buckets, in memory or shared in Redis.
- ``guard``: ``admit`` (called by the request path after routing) and ``Grant.settle``.
"""

from gateway.access.guard import Grant, admit
from gateway.access.keys import AccessConfig, Principal
from gateway.access.limits import RateLimiter, create_limiter

__all__ = ["AccessConfig", "Grant", "Principal", "RateLimiter", "admit", "create_limiter"]
