"""A directory served over HTTP(S) on 127.0.0.1 for the tests, recording who sent what credentials."""

from __future__ import annotations

import gzip
import ssl
import threading
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

from ociregistry import QuietHandler


@dataclass
class Host:
    """A directory served on 127.0.0.1 (or `localhost`, another host to a client), recording
    every request's Authorization header; with `required`, anything else gets a 401."""

    directory: Path
    name: str = "127.0.0.1"
    required: str | None = None
    gzip_index: bool = False
    tls: ssl.SSLContext | None = None
    seen: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization)

    def start(self) -> Host:
        host = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                host.seen.append((self.path, auth))
                if host.required is not None and auth != host.required:
                    return self._send(401, b"unauthorized", {"WWW-Authenticate": 'Basic realm="charts"'})
                path = host.directory / self.path.split("?")[0].lstrip("/")
                if not path.is_file():
                    return self._send(404, b"not found", {})
                body = path.read_bytes()
                headers = {}
                if host.gzip_index and path.name == "index.yaml":
                    body, headers = gzip.compress(body), {"Content-Encoding": "gzip"}
                return self._send(200, body, headers)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://{self.name}:{self.server.server_port}/"
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def authorizations(self) -> list[str]:
        return [auth for _, auth in self.seen if auth]
