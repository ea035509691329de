"""A minimal OpenAI-compatible chat-completions server over any dcr-loadable model (greedy decoding).

    python -m dcr.judges.serve --model smollm2-135m --port 8000

Endpoints: ``POST /v1/chat/completions`` (``messages``, ``max_tokens``; sampling fields are accepted and
ignored: decoding is always greedy), ``GET /v1/models``, ``GET /health``. Requests are served one generation
at a time. Meant for local judging and tests, not for production traffic.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dcr.judges.decode import greedy_texts
from dcr.prompts import adds_special_tokens, format_prompt, resolve_template


class RequestError(ValueError):
    """A malformed chat-completions request (answered with HTTP 400)."""


def render_messages(tokenizer: Any, messages: Sequence[dict[str, Any]], template: str = "auto") -> tuple[str, bool]:
    """(model input text, add-special-tokens flag) for a chat: the chat template, else system+user joined."""
    if not messages or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
        raise RequestError("'messages' must be a non-empty list of {role, content} objects with string content")
    if resolve_template(tokenizer, template) == "chat":
        msgs = [{"role": str(m.get("role", "user")), "content": m["content"]} for m in messages]
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True), False
    text = "\n\n".join(m["content"] for m in messages if m.get("role") != "assistant")
    return format_prompt(tokenizer, text, template), adds_special_tokens(tokenizer, template)


def completion_response(model_name: str, text: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object holding one assistant message."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class ChatBackend:
    """Greedy chat completion with one model; a lock serialises generations."""

    def __init__(self, model: Any, tokenizer: Any, name: str = "dcr", template: str = "auto",
                 default_max_tokens: int = 256, max_tokens_cap: int = 1024) -> None:
        self.model, self.tokenizer, self.name, self.template = model, tokenizer, name, template
        self.default_max_tokens, self.max_tokens_cap = default_max_tokens, max_tokens_cap
        self.lock = threading.Lock()

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer one parsed request body."""
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens")) or self.default_max_tokens
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise RequestError(f"'max_tokens' must be a positive integer, got {max_tokens!r}")
        text, special = render_messages(self.tokenizer, body.get("messages") or [], self.template)
        with self.lock:
            out = greedy_texts(self.model, self.tokenizer, [text], min(max_tokens, self.max_tokens_cap),
                               add_special_tokens=special, batch_size=1)[0].strip()
        n_in = len(self.tokenizer(text, add_special_tokens=special)["input_ids"])
        n_out = len(self.tokenizer(out, add_special_tokens=False)["input_ids"])
        return completion_response(self.name, out, n_in, n_out)


def make_handler(backend: ChatBackend) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``backend``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep tests quiet
            pass

        def _send(self, code: int, obj: dict[str, Any]) -> None:
            data = json.dumps(obj).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, message: str) -> None:
            self._send(code, {"error": {"message": message, "type": "invalid_request_error", "code": code}})

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if self.path.rstrip("/") in ("/health", ""):
                self._send(200, {"status": "ok", "model": backend.name})
            elif self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": backend.name, "object": "model"}]})
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._error(404, f"no route {self.path}; use POST /v1/chat/completions")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length).decode("utf-8") or "null")
                if not isinstance(body, dict):
                    raise RequestError("request body must be a JSON object")
                self._send(200, backend.chat(body))
            except (RequestError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                self._error(400, str(exc))
            except Exception as exc:  # noqa: BLE001 - report, keep serving
                self._error(500, f"{type(exc).__name__}: {exc}")

    return Handler


def make_server(backend: ChatBackend, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A bound (not yet serving) server; ``port=0`` picks a free port (``server.server_address[1]``)."""
    server = ThreadingHTTPServer((host, port), make_handler(backend))
    server.daemon_threads = True
    return server


def serve_in_thread(backend: ChatBackend, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start serving in a daemon thread; return (server, base URL ending in /v1). Stop with ``server.shutdown()``."""
    server = make_server(backend, host, port)
    threading.Thread(target=server.serve_forever, name="dcr-judge-serve", daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}/v1"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dcr.judges.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="embedded name, HF dir, dcr stage dir or hub id")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--name", default=None, help="model name reported in responses (default: --model)")
    parser.add_argument("--template", default="auto", help="auto | chat | qwen2.5 | llama3 | plain")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-tokens", type=int, default=256, help="default max_tokens when a request has none")
    args = parser.parse_args(argv)
    from dcr.models import load_model

    model, tok = load_model(args.model, dtype=args.dtype, device=args.device)
    backend = ChatBackend(model, tok, name=args.name or args.model, template=args.template,
                          default_max_tokens=args.max_tokens)
    server = make_server(backend, args.host, args.port)
    print(f"serving {backend.name} at http://{args.host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
