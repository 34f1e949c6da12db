"""A Hugging Face Hub stand-in on 127.0.0.1 for tests: no test may reach huggingface.co.

It answers the endpoints huggingface_hub 2.x uses to download (read from its source, not guessed):

- ``HEAD|GET /{repo}/resolve/{revision}/{path}``: ``X-Repo-Commit``, ``ETag`` (git blob SHA-1, quoted),
  and for LFS files (``*.safetensors``, ``*.gguf``, ...) a 302 to a CDN-like URL with ``X-Linked-Etag``
  (the SHA-256) and ``X-Linked-Size``, as the real hub does. Bodies honour ``Range`` (206 +
  ``Content-Range``).
- ``GET /api/models/{repo}/revision/{revision}``: ``repo_info`` / ``model_info`` (``sha``, ``siblings``).
- ``GET /api/models/{repo}/tree/{revision}[/{path}]?recursive=...``: ``list_repo_tree``.
- ``POST /api/models/{repo}/paths-info/{revision}``: ``get_paths_info``.
- Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) so
  huggingface_hub raises its own typed errors.

Each repo is a local folder. ``cut_next(path, after)`` makes the next download of that file stop after
``after`` bytes with the connection closed, as a dropped network would. Every request is recorded in
``requests`` so a test can check what was sent (a ``Range`` header, how many bytes).

A hostile hub: ``extra={"org/name": {"tokenizer/../../evil.txt": b"..."}}`` lists files under paths
no real repo can hold (``..``, absolute, backslashes, drive letters, empty segments) beside the
folder's, and serves them too: a client normalizes ``..`` out of the URL it sends, so a request is also
matched by its normalized path.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import socket
import struct
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from huggingface_hub import constants

LFS_SUFFIXES = (".safetensors", ".gguf", ".bin", ".ckpt", ".pt", ".onnx", ".onnx_data")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN = re.compile(r"^/cdn/(?P<repo>[^/]+/[^/]+)/(?P<rev>[0-9a-f]{40})/(?P<path>.+)$")
_API = re.compile(
    r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<what>revision|tree|paths-info)/(?P<rev>[^/]+)(?:/(?P<path>.*))?$"
)


def isolate_huggingface_hub(monkeypatch: pytest.MonkeyPatch, hf_home: Path) -> list[str]:
    """huggingface_hub with no user state, and socket lookups limited to loopback.

    Returns the list of other hosts that something tried to reach; a test asserts it stays empty.
    """
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(key, raising=False)
    # huggingface_hub read these at import, before the environment above was set.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)  # no agent-registry fetch from hf.co
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))

    left_loopback: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            left_loopback.append(str(host))
            raise socket.gaierror(f"test guard: {host} is not loopback")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    return left_loopback


def noise(size: int, seed: str) -> bytes:
    """``size`` bytes that depend only on ``seed``."""
    out, counter = bytearray(), 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def write_safetensors(path: Path, tensors: dict[str, int]) -> None:
    """A valid safetensors file of uint8 tensors, ``{name: byte count}``, with seeded content."""
    header, offset = {}, 0
    for name, size in tensors.items():
        header[name] = {"dtype": "U8", "shape": [size], "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + noise(offset, seed=path.as_posix()))


def write_layout(folder: Path, paths: list[str], model_index: dict) -> None:
    """A repo folder holding ``paths`` as a hub repo lists them, with tiny stand-in contents: weights
    are small safetensors files, ``model_index.json`` is ``model_index``, anything else a line of text."""
    for rel in paths:
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel == "model_index.json":
            target.write_text(json.dumps(model_index, indent=2))
        elif rel.endswith(LFS_SUFFIXES):
            write_safetensors(target, {"w": 2_000})
        else:
            target.write_text(f"{rel}\n")


@dataclass
class Served:
    """One request the hub answered."""

    method: str
    path: str  # URL path, unquoted, without the query
    range: str | None
    status: int
    body_bytes: int  # bytes of file content sent (0 for API calls and HEAD)


@dataclass(frozen=True)
class _File:
    path: str
    size: int
    git_sha1: str
    sha256: str
    lfs: bool


class FakeHub:
    """Serve ``repos`` ({"org/name": folder}) like the hub; use as a context manager."""

    def __init__(self, repos: dict[str, Path], extra: dict[str, dict[str, bytes]] | None = None) -> None:
        self.repos = {repo_id: Path(folder) for repo_id, folder in repos.items()}
        self.extra = {repo_id: dict(files) for repo_id, files in (extra or {}).items()}
        self.requests: list[Served] = []
        self._cuts: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- control -------------------------------------------------------------------------------

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def cut_next(self, path: str, after: int, times: int = 1) -> None:
        """Make the next ``times`` downloads of repo file ``path`` stop after ``after`` bytes."""
        with self._lock:
            self._cuts.setdefault(path, []).extend([after] * times)

    def downloads(self, path: str) -> list[Served]:
        """The GETs that sent bytes of repo file ``path`` (via resolve or the CDN URL)."""
        return [r for r in self.requests if r.method == "GET" and r.body_bytes and r.path.endswith("/" + path)]

    def commit(self, repo_id: str) -> str:
        """The repo's (fake) commit sha: a hash of its file listing, so a changed repo gets a new one."""
        listing = "".join(f"{f.path}:{f.sha256}\n" for f in self._files(repo_id).values())
        return hashlib.sha1(f"{repo_id}\n{listing}".encode()).hexdigest()

    # -- repo contents -------------------------------------------------------------------------

    def _files(self, repo_id: str) -> dict[str, _File]:
        root = self.repos[repo_id]
        contents = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        contents.update(self.extra.get(repo_id, {}))
        return {
            rel: _File(
                path=rel,
                size=len(data),
                git_sha1=hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
                sha256=hashlib.sha256(data).hexdigest(),
                lfs=rel.endswith(LFS_SUFFIXES),
            )
            for rel, data in contents.items()
        }

    def _content(self, repo_id: str, path: str) -> bytes:
        extra = self.extra.get(repo_id, {})
        return extra[path] if path in extra else (self.repos[repo_id] / path).read_bytes()

    def _normalized(self, url_path: str) -> tuple[str, str, str] | None:
        """(repo, revision, listed path) of an extra file whose resolve URL normalizes to ``url_path``."""
        for repo_id, files in self.extra.items():
            for listed in files:
                for rev in ("main", self.commit(repo_id)):
                    if posixpath.normpath(f"/{repo_id}/resolve/{rev}/{listed}") == posixpath.normpath(url_path):
                        return repo_id, rev, listed
        return None

    def _take_cut(self, path: str) -> int | None:
        with self._lock:
            pending = self._cuts.get(path)
            return pending.pop(0) if pending else None


def _tree_entry(f: _File) -> dict[str, object]:
    entry: dict[str, object] = {"type": "file", "oid": f.git_sha1, "size": f.size, "path": f.path}
    if f.lfs:
        # The hub lists an LFS file with its pointer's git oid and the real content's sha256/size.
        entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
    return entry


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"  # keep-alive, as huggingface_hub's pooled client expects

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    # -- routing -------------------------------------------------------------------------------

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        # Recorded before answering, and filled in before each byte goes out: once the client has its
        # answer, the test must see the whole record.
        self._served = Served(method, path, self.headers.get("Range"), 0, 0)
        with self.fake._lock:
            self.fake.requests.append(self._served)
        if m := _API.match(path):
            self._api(method, m["repo"], m["what"], m["rev"], m["path"] or "", url.query)
        elif (m := _RESOLVE.match(path)) or (m := _CDN.match(path)):
            self._file(method, m["repo"], m["rev"], m["path"], cdn=path.startswith("/cdn/"))
        elif hostile := self.fake._normalized(path):
            self._file(method, *hostile, cdn=False)
        else:
            self._error(404, None, "Not Found")

    def _repo_or_error(self, repo_id: str, rev: str) -> dict[str, _File] | None:
        if repo_id not in self.fake.repos:
            # The hub answers 401, not 404, to an anonymous request for a repo it does not show.
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if rev not in ("main", self.fake.commit(repo_id)):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return None
        return self.fake._files(repo_id)

    def _api(self, method: str, repo_id: str, what: str, rev: str, sub: str, query: str) -> None:
        files = self._repo_or_error(repo_id, rev)
        if files is None:
            return
        commit = self.fake.commit(repo_id)
        if what == "revision" and method == "GET":
            self._json(
                {
                    "id": repo_id,
                    "modelId": repo_id,
                    "sha": commit,
                    "private": False,
                    "gated": False,
                    "disabled": False,
                    "tags": [],
                    "siblings": [{"rfilename": p} for p in files],
                }
            )
        elif what == "tree" and method == "GET":
            recursive = parse_qs(query).get("recursive", ["False"])[0].lower() == "true"
            prefix = f"{sub.rstrip('/')}/" if sub else ""
            entries: list[dict[str, object]] = []
            folders: set[str] = set()
            for f in files.values():
                if not f.path.startswith(prefix):
                    continue
                rest = f.path[len(prefix) :]
                parts = rest.split("/")
                for depth in range(1, len(parts)):
                    if recursive or depth == 1:
                        folders.add(prefix + "/".join(parts[:depth]))
                if recursive or len(parts) == 1:
                    entries.append(_tree_entry(f))
            entries += [
                {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                for d in sorted(folders)
            ]
            self._json(entries)
        elif what == "paths-info" and method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            self._json([_tree_entry(files[p]) for p in form.get("paths", []) if p in files])
        else:
            self._error(405, None, "Method not allowed")

    def _file(self, method: str, repo_id: str, rev: str, path: str, *, cdn: bool) -> None:
        files = self._repo_or_error(repo_id, rev)
        if files is None:
            return
        commit = self.fake.commit(repo_id)
        f = files.get(path)
        if f is None and (hostile := self.fake._normalized(self._served.path)):
            f = files.get(hostile[2])
        if f is None:
            self._error(404, "EntryNotFound", f'{path} does not exist on "{rev}"', commit=commit)
            return
        if f.lfs and not cdn:
            # LFS content lives elsewhere: the hub redirects, and tells the size and hash in X-Linked-*.
            self._served.status = 302
            self.send_response(302)
            self.send_header("Location", f"{self.fake.url}/cdn/{repo_id}/{commit}/{path}")
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{f.git_sha1}"')
            self.send_header("X-Linked-Etag", f'"{f.sha256}"')
            self.send_header("X-Linked-Size", str(f.size))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_body(method, f, self.fake._content(repo_id, f.path), commit)

    def _send_body(self, method: str, f: _File, content: bytes, commit: str) -> None:
        start, end = 0, f.size - 1
        status = 200
        if (wanted := self.headers.get("Range")) and (m := re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())):
            start = int(m[1])
            end = min(int(m[2]), f.size - 1) if m[2] else f.size - 1
            if start >= f.size:
                self._served.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{f.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self._served.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{f.sha256 if f.lfs else f.git_sha1}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
        self.end_headers()
        if method == "HEAD":
            return
        data = content[start : end + 1]
        cut = self.fake._take_cut(f.path)
        if cut is not None and cut < len(data):
            self._served.body_bytes = cut
            self.wfile.write(data[:cut])
            self.wfile.flush()
            # Drop the connection mid-body, as a network failure would.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._served.body_bytes = len(data)
        self.wfile.write(data)

    # -- answers -------------------------------------------------------------------------------

    def _json(self, payload: object) -> None:
        body = json.dumps(payload).encode()
        self._served.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self._served.status = status
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
