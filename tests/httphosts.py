"""A directory served over HTTP(S) on 127.0.0.1 for the tests, recording who sent what credentials."""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import ssl
import threading
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

from ociregistry import Answer, QuietHandler, serve


@dataclass
class Host:
    """A directory served on 127.0.0.1 (or `localhost`, another host to a client), recording
    every request's Authorization header; with `required`, anything else gets a 401.

    `answers` maps a path (without its query) to a test's own answer, given before anything
    else. With `tls` and `plain_too`, the host speaks TLS and plain http on the same port (the
    same host to a client, either scheme): what arrives over plain http is also kept in
    `insecure`."""

    directory: Path
    name: str = "127.0.0.1"
    required: str | None = None
    gzip_index: bool = False
    tls: ssl.SSLContext | None = None
    seen: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization)
    answers: dict[str, Answer] = field(default_factory=dict)
    plain_too: bool = False
    insecure: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization) over plain http

    def start(self) -> Host:
        host = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                host.seen.append((self.path, auth))
                if host.tls is not None and not self.over_tls:
                    host.insecure.append((self.path, auth))
                answer = host.answers.get(self.path.split("?")[0])
                if answer is not None:
                    return answer(self)
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

        self.server: ThreadingHTTPServer
        if self.tls is not None and self.plain_too:
            self.server = serve(Handler, self.tls)
        else:
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


def self_signed(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A certificate for 127.0.0.1 and localhost, signed by itself: the server's context, and the
    certificate's file for a chart entry's ca_file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ecrmirror test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "ca.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file
