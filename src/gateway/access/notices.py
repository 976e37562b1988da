"""What the operator is told about access at startup and after each reload."""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config.build import Runtime

logger = logging.getLogger("gateway.access")


def is_loopback(host: str | None) -> bool:
    if not host:
        return True  # uvicorn's default
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def announce(runtime: Runtime, host: str | None) -> None:
    """Say that an open gateway is open (loudly off loopback) and which keys cannot be used."""
    access = runtime.access
    for name, variable in sorted(access.disabled.items()):
        logger.warning("gateway key '%s' is disabled: %s is not set", name, variable)
    if not access.open:
        return
    if is_loopback(host):
        logger.warning(
            "no gateway keys configured: the gateway is open to anyone who can reach %s",
            host or "it",
        )
        return
    logger.critical(
        "\n%s\n!! NO GATEWAY KEYS CONFIGURED and the gateway listens on %s:\n"
        "!! anyone who can reach this address may spend every provider key it holds.\n"
        "!! Add a `keys:` section to the config (see docs/security.md).\n%s",
        "!" * 78,
        host,
        "!" * 78,
    )
