"""Agent bus metrics: sent, delivered once per message, inbox depth."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gateway.agents.bus import MemoryBus
from gateway.agents.config import AgentsConfig
from gateway.agents.messages import OutgoingMessage
from gateway.observability.agents import InstrumentedBus
from gateway.observability.metrics import GatewayMetrics

CONFIG = AgentsConfig.from_dict({"channels": {"review": {"members": ["planner", "coder"]}}})


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_sent_delivered_and_depth() -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    bus = InstrumentedBus(MemoryBus(), metrics)
    retention = CONFIG.retention_for("review")
    for text in ("one", "two"):
        await bus.send(
            OutgoingMessage("planner", "review", "review", text),
            recipients=["coder"],
            retention=retention,
        )
    await bus.send(
        OutgoingMessage("coder", "planner", None, "direct"),
        recipients=["planner"],
        retention=CONFIG.retention_for(None),
    )
    r = metrics.registry
    assert _value(r, "gateway_agent_messages_sent_total", channel="review") == 2
    assert _value(r, "gateway_agent_messages_sent_total", channel="direct") == 1
    assert _value(r, "gateway_agent_inbox_depth", agent="coder") == 2

    first = await bus.read("coder", config=CONFIG, limit=1)
    assert len(first.messages) == 1
    assert _value(r, "gateway_agent_inbox_depth", agent="coder") == 1
    # Reading the same page again (a client retrying) delivers nothing new.
    await bus.read("coder", config=CONFIG, limit=1)
    assert _value(r, "gateway_agent_messages_delivered_total", channel="review") == 1
    await bus.read("coder", config=CONFIG)
    assert _value(r, "gateway_agent_messages_delivered_total", channel="review") == 2
    assert _value(r, "gateway_agent_inbox_depth", agent="coder") == 0
    await bus.read("planner", config=CONFIG)
    assert _value(r, "gateway_agent_messages_delivered_total", channel="direct") == 1
    assert _value(r, "gateway_agent_inbox_depth", agent="planner") == 0
    await bus.close()
