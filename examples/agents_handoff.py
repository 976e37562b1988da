"""Two agents hand work off through a gateway: a planner plans, a coder codes, each with a model.

Start a gateway whose config declares both agents on a channel, for example::

    # gateway.yaml
    default_provider: echo
    providers:
      echo: {preset: echo}
    agents:
      channels:
        handoffs: {members: [planner, coder]}

    gateway serve --config gateway.yaml

then run both agents in one process::

    python examples/agents_handoff.py --base-url http://127.0.0.1:8000 --tasks 3

or each in its own process (start the coder first, or not: messages wait in its inbox)::

    python examples/agents_handoff.py --role coder
    python examples/agents_handoff.py --role planner --tasks 3

The planner posts one ``handoff`` per task on the channel and waits for the coder's replies;
the coder long-polls its inbox, answers every handoff with ``reply_to`` set, and stops on the
planner's final ``{"stop": true}`` message. The echo provider repeats its input, so the
"plan" and the "code" are the prompts themselves: the point is the plumbing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from gateway.client import AgentMessage, GatewayAgentClient

CHANNEL = "handoffs"


async def planner(client: GatewayAgentClient, tasks: int, model: str) -> int:
    """Hand ``tasks`` pieces of work to the coder; return how many replies came back."""
    cursor = (await client.receive_messages("planner", limit=1000)).next_cursor
    waiting: set[str] = set()
    for number in range(1, tasks + 1):
        plan = await client.complete_response(
            model, f"Plan task {number}: add feature {number} with tests."
        )
        sent = await client.send_message(
            "planner",
            CHANNEL,
            {"task": number, "plan": plan.text},
            kind="handoff",
            thread_id=f"task-{number}",
        )
        waiting.add(sent.id)
        print(f"planner -> coder  {sent.id}  task {number}: {plan.text!r}")

    replies = 0
    while waiting:
        page = await client.receive_messages("planner", after=cursor, wait=20)
        cursor = page.next_cursor
        for message in page.messages:
            if message.reply_to in waiting:
                waiting.discard(message.reply_to)
                replies += 1
                print(f"planner <- coder  {message.id}  {message.content!r}")
    await client.send_message("planner", CHANNEL, {"stop": True})
    return replies


async def coder(client: GatewayAgentClient, model: str, cursor_file: Path) -> int:
    """Answer every handoff until the planner says stop; return how many were answered.

    The cursor is the consumer's to keep: it is saved after each message is handled, so a
    coder that crashes or restarts resumes where it stopped (and may see the message it was
    handling again: delivery is at-least-once).
    """
    cursor = _load(cursor_file)
    answered = 0
    while True:
        page = await client.receive_messages("coder", after=cursor, wait=20)
        for message in page.messages:
            stop = _is_stop(message)
            if message.kind == "handoff":
                await _answer(client, message, model)
                answered += 1
            cursor = message.id
            _save(cursor_file, cursor)
            if stop:
                return answered


async def _answer(client: GatewayAgentClient, handoff: AgentMessage, model: str) -> None:
    task = handoff.content.get("task") if isinstance(handoff.content, dict) else handoff.content
    code = await client.complete_response(
        model,
        f"Implement task {task}.",
        instructions="You are the coder. Reply with the change you made.",
    )
    await client.send_message(
        "coder",
        handoff.sender,
        {"task": task, "done": code.text},
        reply_to=handoff.id,
        thread_id=handoff.thread_id,
    )


def _load(path: Path) -> str | None:
    if not path.exists():
        return None
    return path.read_text().strip() or None


def _save(path: Path, cursor: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(cursor)
    temporary.replace(path)


def _is_stop(message: AgentMessage) -> bool:
    return isinstance(message.content, dict) and message.content.get("stop") is True


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--base-url", default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8000")
    )
    parser.add_argument("--api-key", default=os.environ.get("GATEWAY_API_KEY"))
    parser.add_argument("--model", default="echo")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--role", choices=["planner", "coder", "both"], default="both")
    parser.add_argument(
        "--cursor-file",
        type=Path,
        default=Path(tempfile.gettempdir()) / "gateway-handoff" / "coder.cursor",
        help="where the coder keeps its inbox cursor between runs",
    )
    args = parser.parse_args()

    async with GatewayAgentClient(args.base_url, api_key=args.api_key) as client:
        if args.role == "planner":
            replies = await planner(client, args.tasks, args.model)
            print(f"planner: {args.tasks} handed off, {replies} answered")
        elif args.role == "coder":
            answered = await coder(client, args.model, args.cursor_file)
            print(f"coder: {answered} handoffs answered")
        else:
            answered, replies = await asyncio.gather(
                coder(client, args.model, args.cursor_file),
                planner(client, args.tasks, args.model),
            )
            print(f"{args.tasks} handed off, {answered} answered, {replies} replies received")


if __name__ == "__main__":
    asyncio.run(main())
