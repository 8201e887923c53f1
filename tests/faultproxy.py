"""A reverse proxy on 127.0.0.1 that injects faults, deterministically from a seed.

Placed between ecrmirror and a server (the emulator, a chart repository), it answers a chosen
share of requests with a fault instead of (or on top of) the server's answer: a reset
connection, 500/502/503, 429 with Retry-After, a slow answer, or a body cut short. Which request
gets which fault depends only on the seed, the method, the path and how many times that
method and path were seen, so a run repeats itself exactly.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_UPLOAD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
KINDS = ("reset", "500", "502", "503", "429", "slow", "truncate")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}


class _QuietServer(ThreadingHTTPServer):
    # socketserver's backlog of 5 would hold the sixth of many connections opened at once back
    # by a second (a SYN retried), as no real registry does
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client resetting its kept-alive connection is no news


_connections = threading.local()  # netloc -> this thread's connection to it


@dataclass
class FaultProxy:
    target: str  # http://host:port of the real server
    rate: float  # share of requests that get a fault
    seed: int
    kinds: tuple[str, ...] = KINDS
    retry_after: int = 1
    slow_seconds: float = 0.2
    only: str | None = None  # a regular expression: fault only requests whose path matches
    requests: int = 0
    bytes: int = 0  # request and response bodies passed through
    faults: Counter[str] = field(default_factory=Counter)
    log: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request, in order
    _seen: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FaultProxy:
        proxy = self
        parts = urlsplit(self.target)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # An answer goes out as two writes, its head and then its body. With Nagle's algorithm
            # the body waits for the client to acknowledge the head, which a client delays by up
            # to 40 ms: twice the latency a benchmark adds, and no real registry's behaviour.
            disable_nagle_algorithm = True

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._decide(self.command, self.path)
                if fault == "reset":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault in ("500", "502", "503", "429"):
                    return self._fault_status(int(fault))
                if fault == "slow":
                    time.sleep(proxy.slow_seconds)
                status, reason, headers, payload = proxy._forward(
                    parts.netloc, self.command, self.path, self.headers, body
                )
                with proxy._lock:
                    proxy.bytes += len(body) + len(payload)
                cut = fault == "truncate" and self.command != "HEAD" and len(payload) > 1
                self.send_response(status, reason)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                declared = int(dict((k.lower(), v) for k, v in headers).get("content-length", len(payload)))
                self.send_header("Content-Length", str(declared if self.command == "HEAD" else len(payload)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if cut:  # the promised length, half the bytes, then the connection drops
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(payload)

            def _fault_status(self, status: int) -> None:
                api = bool(self.headers.get("X-Amz-Target"))
                if api:  # as the ECR API answers: botocore reads the error code from the body
                    code = "ThrottlingException" if status == 429 else "ServerException"
                    body = json.dumps({"__type": code, "message": "injected fault"}).encode()
                else:  # as a registry answers
                    code = "TOOMANYREQUESTS" if status == 429 else "UNAVAILABLE"
                    body = json.dumps({"errors": [{"code": code, "message": "injected fault"}]}).encode()
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", str(proxy.retry_after))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _decide(self, method: str, path: str) -> str | None:
        with self._lock:
            self.requests += 1
            self.log.append((method, path))
            key = (method, _UPLOAD_ID.sub("<upload>", path))  # upload ids are random; the rest is not
            self._seen[key] += 1
            roll = random.Random(f"{self.seed}:{method}:{path}:{self._seen[key]}")
            if roll.random() >= self.rate or (self.only and not re.search(self.only, path)):
                return None
            fault = roll.choice(self.kinds)
            self.faults[fault] += 1
            return fault

    @staticmethod
    def _forward(
        netloc: str, method: str, path: str, headers: Any, body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        forwarded = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
        # One kept-alive connection per proxy thread (a client connection): a new one per request
        # would make the proxy, not the servers behind it, what a benchmark measures.
        connection = getattr(_connections, netloc, None)
        for attempt in (0, 1):
            if connection is None:
                connection = http.client.HTTPConnection(netloc, timeout=60)
                setattr(_connections, netloc, connection)
            try:
                connection.request(method, path, body=body or None, headers=forwarded)
                response = connection.getresponse()
                payload = response.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                connection = None
                setattr(_connections, netloc, None)
                if attempt:
                    raise
                continue
            if response.will_close:
                connection.close()
                setattr(_connections, netloc, None)
            return response.status, response.reason, response.getheaders(), payload
        raise AssertionError("unreachable")
