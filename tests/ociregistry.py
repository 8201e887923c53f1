"""OCI registries for the tests, on 127.0.0.1: Debian's docker-registry, and a token-auth one.

The token registry stands in for Docker Hub's scheme, which docker-registry only offers with a
JWT-signing token server: a 401 with `Bearer realm=...`, a token service, and blob GETs that
redirect to another host (as registries redirect to object storage). It records every request's
Authorization header, so tests can see where credentials went. A test makes it hostile by
answering some paths itself (`answers`), by moving its token service (`realm`), or by serving it
over TLS, and plain http on the same port (`tls`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from ecrmirror.chart import MANIFEST_MEDIA_TYPE, build_artifact


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DockerRegistry:
    """Debian's docker-registry (distribution 2.8), anonymous, plain HTTP on 127.0.0.1."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = directory / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
        )
        self._process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://{self.host}/v2/", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("docker-registry did not start within 20 s")

    def manifest_digest(self, repository: str, tag: str) -> str:
        response = requests.head(
            f"http://{self.host}/v2/{repository}/manifests/{tag}",
            headers={"Accept": MANIFEST_MEDIA_TYPE},
            timeout=10,
        )
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"]

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


Answer = Callable[["QuietHandler"], None]  # a test's own answer to one path


@dataclass
class TokenRegistry:
    """A read-only registry with Docker Hub's token flow; blobs redirect to a storage host.

    `answers` maps a path (without its query) to a test's own answer, given once the request
    is authorized (the token service's `/token` before); the storage host answers `/token` as
    the registry does, for a `realm` on another host. With `tls`, the registry speaks TLS, and
    plain http on the same port: what arrives over plain http is also kept in `insecure`.
    """

    username: str = ""
    password: str = ""
    manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (host, path, Authorization)
    # As Docker Hub: manifest GETs are pulls, counted down from here and said in RateLimit-Remaining
    # (HEADs are not counted); None: no limit, no header
    pulls_left: int | None = None
    methods: list[tuple[str, str]] = field(default_factory=list)  # (method, path) at the registry
    granted: list[tuple[str, str]] = field(default_factory=list)  # of those, sent with the token
    answers: dict[str, Answer] = field(default_factory=dict)
    realm: str | None = None  # where the challenge sends clients for a token; None: the registry's /token
    tls: ssl.SSLContext | None = None
    insecure: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization) over plain http

    def start(self) -> TokenRegistry:
        self._registry = serve(self._registry_handler(), self.tls)
        self._storage = serve(self._storage_handler())
        # Another host for the same machine: "localhost" is not "127.0.0.1" to an HTTP client.
        self.host = f"127.0.0.1:{self._registry.server_port}"
        self.storage_host = f"localhost:{self._storage.server_port}"
        self.scheme = "https" if self.tls else "http"
        return self

    def stop(self) -> None:
        for server in (self._registry, self._storage):
            server.shutdown()
            server.server_close()

    def add_chart(self, repository: str, archive: Path, name: str, version: str) -> str:
        """Store a chart as helm would push it; returns its manifest digest."""
        digest = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
        artifact = build_artifact(archive, digest, name=name, version=version, created=None)
        self.blobs[artifact.config_descriptor.digest] = artifact.config
        self.blobs[digest] = archive.read_bytes()
        self.manifests[(repository, artifact.tag)] = artifact.manifest
        return artifact.manifest_digest

    def authorizations(self, host: str) -> list[str]:
        return [auth for seen_host, _, auth in self.seen if seen_host == host and auth]

    def _registry_handler(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(QuietHandler):
            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                auth = self.headers.get("Authorization", "")
                registry.seen.append((registry.host, self.path, auth))
                registry.methods.append((self.command, self.path))
                if registry.tls is not None and not self.over_tls:
                    registry.insecure.append((self.path, auth))
                if path == "/token":
                    if path in registry.answers:
                        return registry.answers[path](self)
                    return self._token(auth)
                if auth != "Bearer granted":
                    scope = "repository:" + path.split("/v2/", 1)[-1].rsplit("/", 2)[0] + ":pull"
                    realm = registry.realm or f"{registry.scheme}://{registry.host}/token"
                    challenge = f'Bearer realm="{realm}",service="test-registry",scope="{scope}"'
                    return self._send(401, b"{}", {"WWW-Authenticate": challenge})
                registry.granted.append((self.command, self.path))
                if path in registry.answers:
                    return registry.answers[path](self)
                name, kind, reference = _split(path)
                if kind == "manifests" and (name, reference) in registry.manifests:
                    body = registry.manifests[(name, reference)]
                    headers = {
                        "Content-Type": MANIFEST_MEDIA_TYPE,
                        "Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                    }
                    if registry.pulls_left is not None:
                        if self.command == "GET":
                            if registry.pulls_left <= 0:
                                return self._send(429, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}', {})
                            registry.pulls_left -= 1
                        headers["RateLimit-Limit"] = "100;w=21600"
                        headers["RateLimit-Remaining"] = f"{registry.pulls_left};w=21600"
                    return self._send(200, body, headers)
                if kind == "blobs" and reference in registry.blobs:
                    location = f"http://{registry.storage_host}/{reference}"
                    return self._send(307, b"", {"Location": location})
                if kind == "tags":
                    tags = sorted(tag for (repo, tag) in registry.manifests if repo == name)
                    return self._send(200, json.dumps({"name": name, "tags": tags}).encode(), {})
                return self._send(404, b"{}", {})

            def _token(self, auth: str) -> None:
                answer_token(self, registry, auth)

        return Handler

    def _storage_handler(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                registry.seen.append((registry.storage_host, self.path, auth))
                path = urlsplit(self.path).path
                if path == "/token":  # a token service on another host than the registry's
                    if path in registry.answers:
                        return registry.answers[path](self)
                    return answer_token(self, registry, auth)
                body = registry.blobs.get(self.path.lstrip("/"))
                self._send(200 if body is not None else 404, body or b"", {})

        return Handler


def answer_token(handler: QuietHandler, registry: TokenRegistry, auth: str) -> None:
    """The token service: a token for anyone, or for the registry's username and password."""
    if registry.username:
        expected = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
        if auth != f"Basic {expected}":
            return handler._send(401, b"{}", {})
    query = parse_qs(urlsplit(handler.path).query)
    if not query.get("scope"):
        return handler._send(400, b"{}", {})
    return handler._send(200, json.dumps({"token": "granted"}).encode(), {})


class _ManyAtOnce(ThreadingHTTPServer):
    """A backlog of 128, not socketserver's 5: many jobs connecting at once are not held back a
    second each (a SYN retried), as no real registry would hold them."""

    request_queue_size = 128


class _TlsOrPlainServer(_ManyAtOnce):
    """Speaks TLS to a client that starts with a TLS handshake, and plain http to any other, on
    one port: so that https://HOST:PORT and http://HOST:PORT are the same host to a client."""

    tls: ssl.SSLContext

    def get_request(self) -> tuple[Any, Any]:
        connection, address = self.socket.accept()
        connection.settimeout(10)
        try:
            first = connection.recv(1, socket.MSG_PEEK)
        except OSError:
            first = b""
        if first == b"\x16":  # a TLS record of the handshake: ClientHello
            connection = self.tls.wrap_socket(connection, server_side=True)
        connection.settimeout(None)
        return connection, address


def serve(handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    """`handler` on 127.0.0.1, on a port of its own, in a thread; with `tls`, over TLS and plain
    http both (see _TlsOrPlainServer)."""
    server: ThreadingHTTPServer
    if tls is None:
        server = _ManyAtOnce(("127.0.0.1", 0), handler)
    else:
        server = _TlsOrPlainServer(("127.0.0.1", 0), handler)
        server.tls = tls
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def trickle(handler: QuietHandler, every: float = 0.2, total: int = 300, status: int = 200) -> None:
    """Answer with a body that never says its length and comes one byte every `every` seconds,
    `total` of them (a minute, by default): each socket read gets a byte long before any read
    timeout, so only a deadline on the whole body ends it sooner."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.end_headers()
    try:
        for _ in range(total):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(every)
    except OSError:
        pass  # the client stopped reading: what a bounded reader does
    handler.close_connection = True


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and sends whole responses."""

    # The head and the body of an answer are two writes: with Nagle's algorithm the body would
    # wait up to 40 ms for the client's delayed acknowledgement of the head.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def over_tls(self) -> bool:
        return isinstance(self.connection, ssl.SSLSocket)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _split(path: str) -> tuple[str, str, str]:
    """/v2/<name>/<kind>/<reference> -> (name, kind, reference); tags/list -> (name, 'tags', '')."""
    rest = path.removeprefix("/v2/")
    if rest.endswith("/tags/list"):
        return rest.removesuffix("/tags/list"), "tags", ""
    name, kind, reference = rest.rsplit("/", 2)
    return name, kind, reference
