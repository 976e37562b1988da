"""Nothing in flight breaks on reload, and unchanged providers keep their connections.

The upstream here is a small Chat Completions server on loopback that records which client
connection (source port) carried each request and which connections are open, so connection
reuse across a reload is observed from the outside, the way an upstream would see it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
from openai import OpenAI

from tests.config.test_reload import eventually, health
from tests.support.server import serve_app_in_thread, write_config


@dataclass
class ChatUpstream:
    """Answers Chat Completions with the last user text; streams it word by word."""

    url: str = ""
    ports: list[int] = field(default_factory=list)  # the client port of each request
    open_ports: set[int] = field(default_factory=set)
    chunk_delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _chat_handler(upstream: ChatUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def setup(self) -> None:
            super().setup()
            with upstream.lock:
                upstream.open_ports.add(self.client_address[1])

        def finish(self) -> None:
            with upstream.lock:
                upstream.open_ports.discard(self.client_address[1])
            with contextlib.suppress(OSError):
                super().finish()

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            with upstream.lock:
                upstream.ports.append(self.client_address[1])
            content = body["messages"][-1]["content"]
            text = content if isinstance(content, str) else content[0]["text"]
            if not body.get("stream"):
                payload = json.dumps(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                    }
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            deltas = [{"content": word + " "} for word in text.split()]
            for index, delta in enumerate([*deltas, None]):
                choice = {"index": 0, "delta": delta or {}, "finish_reason": None}
                if delta is None:
                    choice["finish_reason"] = "stop"
                frame = b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"
                if index and upstream.chunk_delay:
                    time.sleep(upstream.chunk_delay)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                self.wfile.flush()
            done = b"data: [DONE]\n\n"
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            self.wfile.flush()

    return Handler


@contextlib.contextmanager
def chat_upstream() -> Iterator[ChatUpstream]:
    upstream = ChatUpstream()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _chat_handler(upstream))
    server.daemon_threads = True
    upstream.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()


def pools_config(
    url: str, *, steady_connect: int = 5, moving_connect: int = 7, extra: str = ""
) -> str:
    return f"""\
server: {{reload_debounce: 0.02}}
providers:
  echo: {{preset: echo}}
  steady:
    preset: openai-chat
    base_url: {url}
    auth: {{scheme: none}}
    timeouts: {{connect: {steady_connect}}}
  moving:
    preset: openai-chat
    base_url: {url}
    auth: {{scheme: none}}
    timeouts: {{connect: {moving_connect}}}
models:
  stable: echo:echo
{extra}"""


def ask(base_url: str, model: str, text: str = "one two three") -> str:
    with OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as sdk:
        return sdk.responses.create(model=model, input=text).output_text


def stream(base_url: str, model: str, text: str) -> str:
    with (
        OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as sdk,
        sdk.responses.stream(model=model, input=text) as events,
    ):
        for _ in events:
            pass
        final = events.get_final_response()
    assert final.status == "completed"
    return final.output_text


def test_unchanged_providers_keep_their_connection_pools(tmp_path: Path) -> None:
    with chat_upstream() as upstream:
        config = write_config(pools_config(upstream.url), tmp_path)
        with serve_app_in_thread(config, watch=True) as base_url:
            assert ask(base_url, "steady:m") == "one two three"
            assert ask(base_url, "moving:m") == "one two three"
            steady_port, moving_port = upstream.ports

            # Change only the moving provider's connection settings (and add an alias).
            config.write_text(
                pools_config(upstream.url, moving_connect=8, extra="  new: echo:echo\n")
            )
            eventually(lambda: "new" in health(base_url)["models"])

            ask(base_url, "steady:m")
            ask(base_url, "moving:m")
            assert upstream.ports[2] == steady_port  # the same warm connection
            assert upstream.ports[3] != moving_port  # a new pool for new settings
            # The retired pool is closed: the upstream sees its connection go away.
            eventually(lambda: moving_port not in upstream.open_ports)
            assert steady_port in upstream.open_ports


def test_an_open_stream_finishes_on_its_snapshot_across_a_reload(tmp_path: Path) -> None:
    with chat_upstream() as upstream:
        upstream.chunk_delay = 0.05
        config = write_config(pools_config(upstream.url), tmp_path)
        with serve_app_in_thread(config, watch=True) as base_url:
            words = " ".join(f"w{index}" for index in range(12))
            result: dict[str, str] = {}
            reader = threading.Thread(
                target=lambda: result.update(text=stream(base_url, "moving:m", words))
            )
            reader.start()
            eventually(lambda: upstream.ports)
            stream_port = upstream.ports[0]
            # Reload mid-stream with new settings for the very provider that is streaming.
            config.write_text(pools_config(upstream.url, moving_connect=9))
            eventually(lambda: health(base_url)["reloads"]["ok"] == 1)
            assert reader.is_alive()  # still streaming on the old snapshot's connection
            reader.join(timeout=5)
            assert result["text"] == words + " "
            # Once the stream is over, its retired pool is closed.
            eventually(lambda: stream_port not in upstream.open_ports)
            assert ask(base_url, "moving:m", "after") == "after"


VALID = """\
server: {{reload_debounce: 0.01}}
providers:
  echo: {{preset: echo}}
  slow:
    preset: openai-chat
    base_url: {url}
    auth: {{scheme: none}}
    timeouts: {{connect: {connect}}}
models:
  stable: echo:echo
  streamer: slow:model
  version_{index}: echo:echo
"""

BROKEN = (
    "providers: [\n",  # YAML syntax
    "providers:\n  echo: {{preset: nope}}\nmodels: {{stable: echo:echo}}\n",  # unknown preset
    "providers:\n  echo: {{preset: echo}}\nmodels:\n  stable: gone:echo\n",  # bad target
    "servr: {{}}\nproviders:\n  echo: {{preset: echo}}\n",  # unknown key
    "",  # an empty file, as seen between truncate and write
)


def test_fifty_rewrites_under_load_fail_no_request(tmp_path: Path) -> None:
    with chat_upstream() as upstream:
        upstream.chunk_delay = 0.01
        config = write_config(VALID.format(url=upstream.url, connect=5, index=0), tmp_path)
        with serve_app_in_thread(config, watch=True) as base_url:
            failures: list[str] = []
            done = threading.Event()
            counts = {"whole": 0, "stream": 0}

            def load(kind: str) -> None:
                with OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as sdk:
                    while not done.is_set():
                        try:
                            if kind == "whole":
                                response = sdk.responses.create(model="stable", input="a b c")
                                assert response.output_text == "a b c"
                            else:
                                with sdk.responses.stream(
                                    model="streamer", input="x y z w v u"
                                ) as events:
                                    for _ in events:
                                        pass
                                    final = events.get_final_response()
                                assert final.output_text == "x y z w v u "
                            counts[kind] += 1
                        except (openai.OpenAIError, AssertionError) as exc:
                            failures.append(f"{kind}: {exc!r}")

            workers = [
                threading.Thread(target=load, args=(kind,))
                for kind in ("whole", "whole", "stream", "stream")
            ]
            for worker in workers:
                worker.start()
            try:
                for index in range(1, 51):
                    if index % 2:
                        text = BROKEN[index // 2 % len(BROKEN)].format()
                    else:
                        text = VALID.format(url=upstream.url, connect=5 + index % 3, index=index)
                    if index % 4 == 0:  # half the valid saves are renames, half in place
                        staged = config.with_name(f".gateway.{index}.tmp")
                        staged.write_text(text)
                        os.replace(staged, config)
                    else:
                        config.write_text(text)
                    time.sleep(0.025)
                config.write_text(VALID.format(url=upstream.url, connect=5, index="final"))
                eventually(lambda: "version_final" in health(base_url)["models"])
            finally:
                done.set()
                for worker in workers:
                    worker.join(timeout=10)

            state = health(base_url)
            assert failures == []
            assert counts["whole"] >= 5  # requests ran the whole time (fewer on a busy machine)
            assert counts["stream"] >= 5
            assert state["reloads"]["ok"] >= 3
            assert state["reloads"]["failed"] >= 1
            assert state["last_error"] is None
