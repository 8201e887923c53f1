"""What the benchmark's parts share: figures, a recording chart server, pytest in a child process."""

from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ecrclient import admin  # type: ignore[import-not-found, unused-ignore]

from ecrmirror.emulator import Emulator

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


@dataclass
class Figure:
    name: str
    value: float | str
    target: str
    met: bool | None  # None: measured, no target to meet


class _Recorder(SimpleHTTPRequestHandler):
    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client closing its kept-alive connection is no news


def serve(directory: Path) -> tuple[str, list[str], ThreadingHTTPServer]:
    seen: list[str] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = _QuietServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/", seen, server


def pytest_run(workdir: Path, emulator: Emulator, *args: str, via: str | None = None) -> float:
    """`pytest ARGS` in a child process against the emulator (or through the proxy at `via`):
    how many seconds it took."""
    return pytest_measured(workdir, emulator, *args, via=via)[0]


def pytest_measured(
    workdir: Path, emulator: Emulator, *args: str, via: str | None = None
) -> tuple[float, float]:
    """As pytest_run: (wall seconds, CPU seconds of the child, user and system)."""
    endpoints = {"AWS_ENDPOINT_URL_ECR": via, "ECRMIRROR_REGISTRY_ENDPOINT": via} if via else {}
    env = {**os.environ, **emulator.environ(), **endpoints, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "ecrmirror.plugin",
        "-p",
        "no:cacheprovider",
        "-q",
        *args,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 5):
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{done.stdout[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def spec_text(url: str, charts: dict[str, list[str]]) -> str:
    entries = "".join(
        f"  - name: {n}\n    repo: {url}\n    versions: {json.dumps(v)}\n" for n, v in charts.items()
    )
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: bench\n  create_repositories: true\ncharts:\n{entries}"
    )


def registry_password(emulator: Emulator) -> str:
    """The emulator's registry password for user AWS, as `aws ecr get-login-password` gives it."""
    token = admin("ecr", emulator).get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return base64.b64decode(token).decode().partition(":")[2]


def create_repositories(emulator: Emulator, names: list[str]) -> None:
    """The recipe and skopeo need the repositories to exist: the seed creates them beforehand."""
    ecr = admin("ecr", emulator)
    for name in names:
        ecr.create_repository(repositoryName=name)
