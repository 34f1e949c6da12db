"""A scripted OpenAI-compatible server on loopback, for tests of how the studio meets a remote model that
misbehaves on purpose (a 500, malformed JSON, a hang, a refused key)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class Scripted:
    """A loopback HTTP server whose answers a test sets: ``behaviour`` is "ok", "500", "bad-json",
    "hang", "401" or "json" (a whole answer, not a stream). It records each request's headers and body
    (a GET's body as None, its path under the headers' "path"). ``props``, when set, is what ``GET /props``
    answers (llama.cpp's server's), and ``progress`` chunks are streamed before the answer."""

    def __init__(self):
        self.behaviour = "ok"
        self.props: dict | None = None
        self.progress: list[dict] = []
        self.requests: list[tuple[dict, dict | None]] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, kind: str = "application/json"):
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                outer.requests.append(({**self.headers, "path": self.path}, None))
                if outer.behaviour == "401":
                    return self._send(401, b'{"error": {"message": "bad key"}}')
                if self.path == "/props":
                    if outer.props is None:
                        return self._send(404, b'{"error": {"message": "no such route"}}')
                    return self._send(200, json.dumps(outer.props).encode())
                self._send(200, json.dumps({"data": [{"id": "scripted"}]}).encode())

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length))
                outer.requests.append((dict(self.headers), body))
                b = outer.behaviour
                if b == "500":
                    return self._send(500, b'{"error": {"message": "the GPU caught fire"}}')
                if b == "401":
                    return self._send(401, b'{"error": {"message": "invalid api key"}}')
                if b == "json":
                    answer = {"choices": [{"message": {"content": "all at once"}, "finish_reason": "stop"}]}
                    return self._send(200, json.dumps(answer).encode())
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                if b == "bad-json":
                    self.wfile.write(b"data: {not json\n\n")
                    return
                for step in outer.progress:
                    chunk = {"choices": [], "prompt_progress": step}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                first = {"choices": [{"delta": {"content": "Hello"}, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(first)}\n\n".encode())
                self.wfile.flush()
                if b == "hang":
                    outer.release.wait(30)
                    return
                last = {"choices": [{"delta": {"content": " there"}, "finish_reason": "stop"}]}
                usage = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}
                for event in (last, usage):
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# llama.cpp's own HTTP server (the C++ loop llama-server runs), from xllamacpp's wheel, in a process of its own.
_SERVE = """
import sys, threading, xllamacpp
params = xllamacpp.CommonParams()
params.model.path = sys.argv[1]
params.model_alias = {"smol"}
params.hostnames = ["127.0.0.1"]
params.port = int(sys.argv[2])
params.n_ctx = 2048
if len(sys.argv) > 3:
    params.n_batch = params.n_ubatch = int(sys.argv[3])
params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 1
params.use_jinja = True  # llama.cpp renders the chat template itself, as llama-server does
params.ui = False
params.verbosity = -1
server = xllamacpp.Server(params)
threading.Event().wait()
"""


@contextmanager
def llama_cpp_server(model_path, batch: int | None = None):
    """llama.cpp's OpenAI-compatible server (xllamacpp's, the same C++ loop as ``llama-server``) with
    ``model_path`` as "smol", one thread, on a free loopback port, in another process: yields its /v1 base
    URL once it answers. ``batch``: its ``--batch-size`` (prompt tokens read per step; default 2048)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(model_path), str(port), *([str(batch)] if batch else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(base + "/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.time() < deadline, "llama.cpp's server did not start"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
