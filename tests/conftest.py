"""Shared fixtures: a real chart repository over HTTP, the ECR emulator, and a pytester runner."""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import shutil
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from chartfactory import ChartFile, package_chart, write_index
from ociregistry import DockerRegistry
from tools import require_tool

import ecrmirror
from ecrmirror.emulator import Emulator

# The plugin imports most of ecrmirror when a run first needs it. Pytester's in-process runs
# remove what a test imported when the test ends, so a module first imported inside one would be
# imported afresh by the next, while modules kept from before still hold the old one's classes
# and stash keys. A user's process imports each module once; the test process, up front.
for _module in pkgutil.walk_packages(ecrmirror.__path__, "ecrmirror."):
    if _module.name != "ecrmirror.__main__":
        importlib.import_module(_module.name)
# So too yaml-rs, which ecrmirror imports with the first index. A Rust extension, it crashes the
# interpreter (SIGSEGV) when imported afresh and then used from a thread, as each in-process run
# would: test_archive_identity.py alone, without xdist, died in 12 of 27 runs. A process importing
# it once (a user's) did not crash in 100 runs that imported it from threads.
with contextlib.suppress(ImportError):  # optional: PyYAML reads indexes without it
    importlib.import_module("yaml_rs")

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
# The same retries as a user gets, with short waits: failure tests need not sleep for seconds.
FAST_RETRIES = ("-o", "ecrmirror_retry_backoff=0.05")
# Anything the project's own runs could inherit from a developer's shell that would reach AWS.
_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_ECR",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "ECRMIRROR_REGISTRY_ENDPOINT",
    "ECR",
)


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may reach AWS: no credentials, no config files, no instance metadata."""
    for name in _AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


class _RecordingHandler(SimpleHTTPRequestHandler):
    server: _ChartHTTPServer
    # the head and the body of an answer are two writes: with Nagle's algorithm the body would
    # wait up to 40 ms for the client's delayed acknowledgement of the head
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ChartHTTPServer(ThreadingHTTPServer):
    requests: list[str]


@dataclass
class ChartServer:
    """A Helm repository served from a directory on 127.0.0.1, recording every GET."""

    directory: Path
    url: str
    server: _ChartHTTPServer
    charts: list[ChartFile] = field(default_factory=list)

    @property
    def requests(self) -> list[str]:
        return self.server.requests

    def archive_downloads(self) -> list[str]:
        return [path for path in self.requests if path.split("?")[0].endswith(".tgz")]

    def add(self, name: str, version: str, **metadata: Any) -> ChartFile:
        chart = package_chart(self.directory, name, version, **metadata)
        self.charts.append(chart)
        return chart

    def publish(self, **kwargs: Any) -> Path:
        return write_index(self.directory, self.charts, **kwargs)


@pytest.fixture
def chart_server(tmp_path: Path) -> Iterator[ChartServer]:
    directory = tmp_path / "upstream"
    directory.mkdir()

    def handler(*args: Any, **kwargs: Any) -> _RecordingHandler:
        return _RecordingHandler(*args, directory=str(directory), **kwargs)

    server = _ChartHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ChartServer(directory, f"http://127.0.0.1:{server.server_port}/", server)
    server.shutdown()
    server.server_close()


@pytest.fixture
def two_charts(chart_server: ChartServer) -> ChartServer:
    """An upstream with gitlab 7.1.1 and 7.1.2, and ingress 1.0.0: two repositories' worth."""
    for name, version in (("gitlab", "7.1.1"), ("gitlab", "7.1.2"), ("ingress", "1.0.0")):
        chart_server.add(name, version)
    chart_server.publish()
    return chart_server


@pytest.fixture
def helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    binary = require_tool("helm", "run .ci/run, or put a helm >= 3.8 binary on PATH")
    for variable in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        monkeypatch.setenv(variable, str(tmp_path / variable.lower()))
    return [
        binary,
        "--registry-config",
        str(tmp_path / "helm-registry.json"),
        "--repository-cache",
        str(tmp_path / "helm-cache"),
    ]


@pytest.fixture(scope="session")
def docker_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    """Debian's docker-registry on 127.0.0.1, one for a test process: each test uses repositories
    named after its own tmp_path, so they do not meet."""
    binary = require_tool("docker-registry", "apt-get install docker-registry, as .ci/run does")
    registry = DockerRegistry(binary, tmp_path_factory.mktemp("docker-registry"))
    yield registry
    registry.stop()


@pytest.fixture
def emulator(ecr_emulator: Emulator) -> Emulator:
    """The plugin's own fixture (an empty emulator, the environment pointed at it): we use what
    we ship. Runs reach it through the environment, as users' runs would."""
    return ecr_emulator


@pytest.fixture
def write_spec(pytester: pytest.Pytester) -> Any:
    """Write a spec file into the pytester directory from an indented YAML string."""

    def write(text: str, name: str = "mirror") -> Path:
        path: Path = pytester.makefile(".yaml", **{name: textwrap.dedent(text)})
        return path

    return write


@pytest.fixture
def run(pytester: pytest.Pytester) -> Any:
    """Run pytest with ecrmirror in-process, as `pytest ARGS` in the pytester directory."""

    def run_pytest(*args: str) -> pytest.RunResult:
        return pytester.runpytest_inprocess(
            "-p", "ecrmirror.plugin", "-p", "no:cacheprovider", *FAST_RETRIES, *args
        )

    return run_pytest


@pytest.fixture
def run_subprocess(pytester: pytest.Pytester) -> Any:
    """Run pytest with ecrmirror in a child process: for --offline, which starts its own emulator."""

    def run_pytest(*args: str, timeout: float = 120) -> pytest.RunResult:
        return pytester.runpytest_subprocess("-p", "ecrmirror.plugin", *FAST_RETRIES, *args, timeout=timeout)

    return run_pytest


def copy_examples(destination: Path) -> Path:
    examples = Path(__file__).resolve().parent.parent / "examples"
    shutil.copytree(examples, destination, dirs_exist_ok=True)
    return destination


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Figures that tests measured (record_property("figures", ...)), shown at the end of the run."""
    for report in terminalreporter.getreports("passed") + terminalreporter.getreports("failed"):
        for name, value in getattr(report, "user_properties", []):
            if name == "figures":
                terminalreporter.write_line(f"figures: {report.nodeid}: {value}")
