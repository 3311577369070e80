"""A scripted OpenAI-compatible model server on loopback, for the assistant's tests.

It speaks the real wire format of ``POST /v1/chat/completions`` (JSON, or server-sent events
with ``stream: true``; tool calls streamed in fragments as OpenAI does), so the ``openai``
client library talks to it unchanged. Its answers are deterministic: each request pops the
next scripted reply (a text, or tool calls), and every request body is kept for the tests to
inspect (what left the hub).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class Script:
    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    default: Reply = field(default_factory=lambda: Reply("I have nothing to add."))
    embedded: list[str] = field(default_factory=list)

    def next(self) -> Reply:
        return self.replies.pop(0) if self.replies else self.default


#: The scripted embedding model's one piece of "meaning": these words share a dimension.
SYNONYMS = {"sugar": "glucose", "sugars": "glucose"}
DIMENSIONS = 1024


def embed(text: str) -> list[float]:
    """A deterministic bag-of-words vector (words hashed to dimensions, synonyms merged)."""
    import re
    import zlib

    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z]+", text.lower()):
        word = SYNONYMS.get(word, word)
        vector[zlib.crc32(word.encode()) % DIMENSIONS] += 1.0
    return vector


def _completion(reply: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{n}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for n, (name, args) in enumerate(reply.tool_calls)
        ]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _chunks(reply: Reply, model: str) -> Iterator[dict[str, Any]]:
    base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    words = reply.text.split(" ") if reply.text else []
    for n, word in enumerate(words):
        yield chunk({"content": word if n == 0 else f" {word}"})
    for n, (name, args) in enumerate(reply.tool_calls):
        text = json.dumps(args)
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": n,
                        "id": f"call_{n}",
                        "type": "function",
                        "function": {"name": name, "arguments": text[: len(text) // 2]},
                    }
                ]
            }
        )
        yield chunk(
            {"tool_calls": [{"index": n, "function": {"arguments": text[len(text) // 2 :]}}]}
        )
    yield chunk({}, "tool_calls" if reply.tool_calls else "stop")


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._json({"object": "list", "data": [{"id": "scripted", "object": "model"}]})
            else:
                self._json({"error": {"message": "not found"}}, 404)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path.rstrip("/").endswith("/embeddings"):
                inputs = body.get("input")
                texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
                script.embedded.extend(texts)
                self._json(
                    {
                        "object": "list",
                        "model": body.get("model"),
                        "data": [
                            {"object": "embedding", "index": n, "embedding": embed(text)}
                            for n, text in enumerate(texts)
                        ],
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    }
                )
                return
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._json({"error": {"message": "not found"}}, 404)
                return
            body["_authorization"] = self.headers.get("authorization")
            script.requests.append(body)
            reply = script.next()
            model = str(body.get("model"))
            if not body.get("stream"):
                self._json(_completion(reply, model))
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            for chunk in _chunks(reply, model):
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _json(self, body: dict[str, Any], status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def model_server() -> Iterator[tuple[str, Script]]:
    """Yields the server's ``/v1`` base URL and its :class:`Script`."""
    script = Script()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", script
    finally:
        server.shutdown()
        server.server_close()
