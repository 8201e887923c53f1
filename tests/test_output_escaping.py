"""Upstream text is data, never markup: what a hostile upstream says reaches the terminal, the
Markdown plan and the JUnit file escaped, and cannot stop either file being written."""

from __future__ import annotations

import json
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from ociregistry import QuietHandler

from conftest import REGISTRY
from ecrmirror.emulator import Emulator

# What a status line can carry (latin-1): escape sequences that clear the screen and recolour it,
# a bell, and Markdown that would be a link, an image and HTML in the merge request's plan.
REASON = "\x1b[2J\x1b[31mPWNED\x07 <img src=x onerror=alert(1)> [click](https://evil.example/) ![i](x.png)"
# What JSON can carry besides: a right-to-left override and a lone surrogate.
MEDIA_TYPE = REASON + " \u202egnp.exe \ud800"
HOSTILE_CASES = {
    "output: escape sequences in a reason phrase": "HTTP 403 \\x1b[2J\\x1b[31mPWNED\\x07",
    "output: markup and a lone surrogate in a media type": "is a \\x1b[2J\\x1b[31mPWNED",
}


@pytest.fixture
def hostile_upstream() -> Iterator[str]:
    """A chart repository whose archive answers 403 with REASON, and an OCI registry whose chart
    manifest has MEDIA_TYPE as its media type."""

    class Handler(QuietHandler):
        def do_HEAD(self) -> None:
            self._send(405, b"", {})

        def do_GET(self) -> None:
            if self.path == "/index.yaml":
                entry = {"name": "app", "version": "1.0.0", "digest": "ab" * 32, "urls": ["app-1.0.0.tgz"]}
                body = json.dumps({"apiVersion": "v1", "entries": {"app": [entry]}}).encode()
                return self._send(200, body, {})
            if self.path.endswith(".tgz"):
                self.send_response(403, REASON)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if self.path == "/v2/":
                return self._send(200, b"{}", {})
            if self.path == "/v2/charts/app/tags/list":
                return self._send(200, json.dumps({"tags": ["1.0.0"]}).encode(), {})
            if self.path == "/v2/charts/app/manifests/1.0.0":
                config = {"mediaType": "x", "digest": "sha256:" + "0" * 64, "size": 2}
                manifest = {"schemaVersion": 2, "mediaType": MEDIA_TYPE, "config": config, "layers": []}
                # json.dumps writes the lone surrogate as the escape \ud800, as a server could.
                return self._send(200, json.dumps(manifest).encode(), {"Content-Type": "application/json"})
            return self._send(404, b"{}", {})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_hostile_upstream_text_is_escaped_in_the_terminal_the_plan_and_junit(
    hostile_upstream: str, emulator: Emulator, write_spec, run, pytester: pytest.Pytester
) -> None:
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: http://{hostile_upstream}/\n    versions: ['1.0.0']\n"
    )
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  prefix: oci\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: oci://{hostile_upstream}/charts\n    plain_http: true\n"
        "    versions: ['1.0.0']\n",
        name="oci",
    )

    result = run(
        "--sync", "-v", "-rA", "--junitxml=report.xml", "--ecrmirror-plan=plan.md", "mirror.yaml", "oci.yaml"
    )

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str() + result.stderr.str()
    for case, message in HOSTILE_CASES.items():
        assert message in output, case
    for raw in ("\x1b", "\x07", "\u202e", "\ud800"):
        assert raw not in output
    assert "\\u202egnp.exe \\ud800" in output  # shown, as escapes
    plan = (pytester.path / "plan.md").read_text(encoding="utf-8")
    assert "\\<img src=x onerror=alert(1)\\>" in plan
    assert "\\[click\\](https&#58;//evil.example/)" in plan
    for markup in (r"(?<!\\)<img", r"(?<!\\)\]\(", r"!\[i", "\x1b", "\ud800", "https://evil"):
        assert re.search(markup, plan) is None, markup
    report = ET.parse(pytester.path / "report.xml")
    failures = [f.text or "" for f in report.iter("failure")]
    assert len(failures) == 3  # the two versions, and the repository the OCI chart would need
    assert all("\x1b" not in text and "PWNED" in text for text in failures)
    assert [r for r in emulator.writes() if r.kind == "registry"] == []
