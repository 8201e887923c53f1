"""What the benchmark's parts share: figures, a recording chart server, pytest in a child process."""

from __future__ import annotations

import base64
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
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
    arrivals: list[float]
    # the head and the body of an answer are two writes: with Nagle's algorithm the body would
    # wait up to 40 ms for the client's delayed acknowledgement of the head
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.arrivals.append(time.time())
        self.seen.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    # socketserver's backlog of 5 would hold the sixth of many connections opened at once back
    # by a second (a SYN retried), as no real registry does
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client closing its kept-alive connection is no news


def serve(directory: Path, arrivals: list[float] | None = None) -> tuple[str, list[str], ThreadingHTTPServer]:
    """A chart server of `directory`: its URL, the paths it was asked for, and the server. Each
    request's arrival (time.time()) goes to `arrivals`, when given."""
    seen: list[str] = []
    handler = type("Handler", (_Recorder,), {"seen": seen, "arrivals": [] if arrivals is None else arrivals})
    server = _QuietServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/", seen, server


# Where the benchmark's child processes keep compiled modules: users run ecrmirror from an install
# that has its bytecode, so a shell's PYTHONDONTWRITEBYTECODE would time compiling, not ecrmirror.
PYCACHE = Path(tempfile.gettempdir()) / "ecrmirror-benchmark-pycache"


def child_environ(*extra: dict[str, str]) -> dict[str, str]:
    """os.environ for a child Python, with bytecode kept (in PYCACHE, not in the tree), and `extra`."""
    environ = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    environ["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    for each in extra:
        environ.update(each)
    return environ


def compile_ecrmirror() -> None:
    """Bytecode for ecrmirror and its dependencies, before anything is timed: as after an install."""
    subprocess.run([sys.executable, "-c", "import ecrmirror.plugin"], env=child_environ(), check=True)
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parent.parent / "ecrmirror")],
        env=child_environ(),
        check=True,
    )


def pytest_run(workdir: Path, emulator: Emulator, *args: str, via: str | None = None) -> float:
    """`pytest ARGS` in a child process against the emulator (or through the proxy at `via`):
    how many seconds it took."""
    return pytest_measured(workdir, emulator, *args, via=via)[0]


def pytest_measured(
    workdir: Path, emulator: Emulator, *args: str, via: str | None = None
) -> tuple[float, float]:
    """As pytest_run: (wall seconds, CPU seconds of the child, user and system)."""
    endpoints = {"AWS_ENDPOINT_URL_ECR": via, "ECRMIRROR_REGISTRY_ENDPOINT": via} if via else {}
    env = child_environ(emulator.environ(), endpoints, {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
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


def skopeo_xargs(
    skopeo: str, directory: Path, pairs: list[tuple[str, str]], password: str, *options: str, jobs: int = 8
) -> tuple[float, float]:
    """`xargs -P JOBS -n 2 skopeo copy OPTIONS` over a file of `SOURCE DESTINATION` lines, in a
    shell, as an engineer writes it: (wall seconds, CPU seconds of the shell and its children)."""
    listed = directory / "copies.txt"
    listed.write_text("".join(f"{source} {destination}\n" for source, destination in pairs))
    copy = " ".join(shlex.quote(word) for word in (skopeo, "copy", *options))
    script = f'xargs -P {jobs} -n 2 {copy} --dest-creds "AWS:$ECR_PASSWORD" < {shlex.quote(str(listed))}'
    env = {**os.environ, "ECR_PASSWORD": password}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{script} failed:\n{done.stderr[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# The order requests by kind are said in: reads first, then writes, then the ECR API.
KIND_ORDER = (
    "ping",
    "token",
    "manifest HEAD",
    "manifest GET",
    "tags list",
    "referrers",
    "blob HEAD",
    "blob GET",
    "blob storage GET",
    "blob mount POST",
    "upload POST",
    "upload PATCH",
    "upload PUT",
    "manifest PUT",
    "API calls",
)


def request_kind(method: str, path: str) -> str:
    """What a registry request is for, from its method and path (its query too, where known):
    "manifest HEAD", "upload PUT"..."""
    path, _, query = path.partition("?")
    if path in ("/v2", "/v2/"):
        return "ping"
    if path.endswith("/token"):
        return "token"
    if path.endswith("/tags/list"):
        return "tags list"
    if "/referrers/" in path:
        return "referrers"
    if "/blobs/uploads/" in path or path.endswith("/blobs/uploads"):
        return "blob mount POST" if "mount=" in query else f"upload {method}"
    if "/manifests/" in path:
        return f"manifest {method}"
    if "/blobs/" in path:
        return f"blob {method}"
    return f"other {method}"


def ecr_kinds(recorded: Iterable[Any], proxied: list[tuple[str, str]] | None = None) -> Counter[str]:
    """The emulator's RecordedRequests by kind: registry requests by what they are for, ECR API
    calls as one kind. With `proxied`, the (method, path) log of a proxy in front of the emulator,
    registry requests are counted from it instead: its paths keep their query (a mount's)."""
    kinds: Counter[str] = Counter()
    if proxied is not None:
        for method, path in proxied:
            if path.startswith("/v2"):
                kinds[request_kind(method, path)] += 1
    for request in recorded:
        if request.kind == "registry":
            if proxied is None:
                kinds[request_kind(request.method, request.path)] += 1
        else:
            kinds["API calls" if request.kind == "api" else f"{request.kind} calls"] += 1
    return kinds


def per_unit(kinds: Counter[str], units: int) -> str:
    """`kinds` divided by `units`, in KIND_ORDER: "manifest HEAD 1.0, manifest GET 1.0, ..."."""
    order = [kind for kind in KIND_ORDER if kinds[kind]] + sorted(set(kinds) - set(KIND_ORDER))
    text = ", ".join(f"{kind} {kinds[kind] / units:.2f}" for kind in order)
    return f"{text} (total {sum(kinds.values()) / units:.2f})" if text else "none"
