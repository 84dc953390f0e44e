"""A tiny OpenAI-protocol server on 127.0.0.1 streaming SSE chunks (tests and benchmark).

Plain ``http.server`` in a thread: ``/v1/models``, ``/health`` and streaming
``/v1/chat/completions``. What it does is set per test through attributes: the tokens to
send and their pace, or a failure status (401, 429, 503).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubOpenAI:
    def __init__(self, *, api_key: str = "stub-key", tokens: list[str] | None = None,
                 tokens_per_s: float | None = None, burst: int = 1) -> None:
        self.api_key = api_key
        self.tokens = tokens if tokens is not None else ["Hello", ",", " **world**", "!", "\n\n", "- one", "\n- two"]
        self.tokens_per_s = tokens_per_s  # None: as fast as possible
        self.burst = burst  # tokens written per pacing step (high rates need bursts)
        self.fail_status: int | None = None
        self.retry_after: int | None = None
        self.hold: threading.Event | None = None  # set → the stream pauses after the first token
        self.max_model_len: int | None = None  # reported by /v1/models when set
        self.context_limit: int | None = None  # enforced (400, as vLLM words it) when set
        self.chars_per_token = 3.0  # how this stub counts prompt tokens
        self.requests: list[dict] = []
        self.models = ["stub-model"]  # what /v1/models lists
        self.sent_at: list[float] = []  # perf_counter when each token was written
        self.disconnected = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "StubOpenAI":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    cards = [{"id": model, "object": "model"} for model in stub.models]
                    if stub.max_model_len:
                        for card in cards:
                            card["max_model_len"] = stub.max_model_len
                    self._json(200, {"object": "list", "data": cards})
                elif self.path == "/health":
                    self._json(200, {"status": "ok"})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                stub.requests.append(body)
                if self.headers.get("Authorization") != f"Bearer {stub.api_key}":
                    self._json(401, {"error": {"message": "invalid api key", "code": 401}})
                    return
                prompt_tokens = stub.count_tokens(body.get("messages") or [])
                if stub.context_limit and prompt_tokens >= stub.context_limit:
                    message = (f"This model's maximum context length is {stub.context_limit} tokens. However, you "
                               f"requested {prompt_tokens + 16} tokens ({prompt_tokens} in the messages, 16 in the "
                               "completion). Please reduce the length of the messages or completion.")
                    self._json(400, {"error": {"message": message, "type": "BadRequestError", "code": 400}})
                    return
                if stub.fail_status:
                    headers = {"Retry-After": str(stub.retry_after)} if stub.retry_after else {}
                    self._json(stub.fail_status, {"error": {"message": f"stub says {stub.fail_status}"}}, headers)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                interval = (stub.burst / stub.tokens_per_s) if stub.tokens_per_s else 0.0
                start = time.perf_counter()
                try:
                    for i, tok in enumerate(stub.tokens):
                        chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "stub-model",
                                 "choices": [{"index": 0, "delta": {"content": tok}, "finish_reason": None}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        stub.sent_at.append(time.perf_counter())
                        if i == 0 and stub.hold is not None:
                            self.wfile.flush()
                            stub.hold.wait(10)
                        if interval and (i + 1) % stub.burst == 0:
                            self.wfile.flush()
                            delay = start + interval * ((i + 1) // stub.burst) - time.perf_counter()
                            if delay > 0:
                                time.sleep(delay)
                    end = {"id": "c1", "object": "chat.completion.chunk", "model": "stub-model",
                           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                    usage = {"id": "c1", "object": "chat.completion.chunk", "model": "stub-model", "choices": [],
                             "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(stub.tokens),
                                       "total_tokens": prompt_tokens + len(stub.tokens)}}
                    tail = f"data: {json.dumps(end)}\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n"
                    self.wfile.write(tail.encode())
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    stub.disconnected.set()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def count_tokens(self, messages: list[dict]) -> int:
        """Prompt tokens as this stub's "tokenizer" counts them (4 per message for the template)."""
        return int(sum(-(-len(str(m.get("content", ""))) // self.chars_per_token) + 4 for m in messages) + 2)

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def demo_tokens(count: int, shape: str = "prose") -> list[str]:
    """Token-sized pieces of a plausible answer: ``prose`` (paragraphs of ~80 tokens, a list and a
    code block now and then) or ``lists`` (a bullet every ~10 tokens: many Markdown blocks)."""
    if shape == "lists":
        words = ["The", " adapter", " adds", " **low-rank**", " updates", ".", "\n\n", "- item", " one", "\n",
                 "- item", " two", "\n\n"]
        return [words[i % len(words)] for i in range(count)]
    if shape == "code":  # a fenced block of ~8 lines after every sentence
        words = ["Load", " it", " like", " `this`", ":", "\n\n", "```python", "\n"]
        words += ["model", " =", " PeftModel", ".from_pretrained", "(base,", " path)", "\n"] * 8
        words += ["```", "\n\n"]
        return [words[i % len(words)] for i in range(count)]
    if shape == "tables":  # a 3-column table of ~6 rows after every sentence
        words = ["Compare", " the", " **sizes**", ":", "\n\n", "| name", " | rank", " | size |", "\n",
                 "| --- | --- | --- |", "\n"]
        words += ["| q_proj", " | 16", " | 8 MB |", "\n"] * 6
        words += ["\n"]
        return [words[i % len(words)] for i in range(count)]
    sentence = [" The", " adapter", " adds", " **low-rank**", " updates", " to", " the", " frozen", " base",
                " model", ",", " so", " only", " a", " few", " million", " weights", " change", "."]
    tokens: list[str] = ["Here", " is", " the", " idea", "."]
    block = 0
    while len(tokens) < count:
        tokens += sentence * 4 + ["\n\n"]
        block += 1
        if block % 6 == 0:
            tokens += ["- first", " point", "\n", "- second", " point", "\n\n"]
        if block % 9 == 0:
            tokens += ["```python", "\n", "model", " =", " PeftModel", ".from_pretrained", "(base, path)", "\n", "```",
                       "\n\n"]
    return tokens[:count]


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.ui.stub_openai --tokens 4000 --rate 2000``: serve until killed (benchmark)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--shape", choices=("prose", "lists", "code", "tables"), default="prose")
    args = parser.parse_args(argv)
    tokens = demo_tokens(args.tokens, args.shape)
    stub = StubOpenAI(tokens=tokens, tokens_per_s=args.rate, burst=args.burst).start()
    print(stub.url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
