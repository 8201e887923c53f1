"""Hostile and broken input: each case of docs/hostile-input.md gets one plain message and pushes nothing.

The table in the docs and the case ids here are the same list: a test checks that they agree.
"""

from __future__ import annotations

import importlib
import io
import random
import re
import tarfile
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from chartfactory import package_chart, serve_archive
from ociregistry import QuietHandler

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
TARGET = f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
CHART = "charts:\n  - name: app\n    repo: ./c\n    versions: ['1.0.0']\n"

# -- spec files: (file bytes, what the message says) -------------------------------------------------
BOMB = (
    'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
    "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
    "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
    "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n"
)
SPEC_CASES: dict[str, tuple[bytes, str]] = {
    "spec: YAML alias bomb": (
        (TARGET + CHART + BOMB).encode(),
        "mirror.yaml:8: YAML anchors and aliases (&name, *name) are not allowed in a spec",
    ),
    "spec: merge key alias": (
        (TARGET + "  repository: &r {scan_on_push: true}\n" + CHART + "x: *r\n").encode(),
        "YAML anchors and aliases (&name, *name) are not allowed in a spec",
    ),
    "spec: target is a list": (
        ("target: [a, b]\n" + CHART).encode(),
        "mirror.yaml:1: target must be a mapping",
    ),
    "spec: charts is a mapping": (
        (TARGET + "charts: {app: 1}\n").encode(),
        "mirror.yaml:4: charts must be a non-empty list",
    ),
    "spec: chart name is a list": (
        (TARGET + "charts:\n  - name: [app]\n    repo: ./c\n    versions: ['1']\n").encode(),
        "mirror.yaml:5: name must be a string",
    ),
    "spec: repo is a mapping": (
        (TARGET + "charts:\n  - name: app\n    repo: {url: x}\n    versions: ['1']\n").encode(),
        "mirror.yaml:6: repo must be a string",
    ),
    "spec: a version is a mapping": (
        (TARGET + "charts:\n  - name: app\n    repo: ./c\n    versions: [{v: 1}]\n").encode(),
        "mirror.yaml:7: a version must be a string",
    ),
    "spec: chart name with ../": (
        (TARGET + "charts:\n  - name: ../etc\n    repo: ./c\n    versions: ['1']\n").encode(),
        "chart name '../etc' is not a chart name",
    ),
    "spec: chart name with /": (
        (TARGET + "charts:\n  - name: a/b\n    repo: ./c\n    versions: ['1']\n").encode(),
        "chart name 'a/b' is not a chart name",
    ),
    "spec: uppercase chart name": (
        (TARGET + "charts:\n  - name: MyApp\n    repo: ./c\n    versions: ['1']\n").encode(),
        "chart name 'MyApp' is not a chart name",
    ),
    "spec: version with ../": (
        (TARGET + "charts:\n  - name: app\n    repo: ./c\n    versions: ['../1.0.0']\n").encode(),
        "version '../1.0.0' of app cannot be an OCI tag",
    ),
    "spec: version with /": (
        (TARGET + "charts:\n  - name: app\n    repo: ./c\n    versions: ['1.0/0']\n").encode(),
        "version '1.0/0' of app cannot be an OCI tag",
    ),
    "spec: duplicate chart entries": (
        (TARGET + CHART + "  - name: app\n    repo: ./c\n    versions: ['2']\n").encode(),
        "chart 'app' from ./c is listed twice",
    ),
    "spec: empty file": (b"", "mirror.yaml:1: the spec must be a mapping"),
    "spec: not UTF-8": (
        (TARGET + CHART).encode() + b"# caf\xe9\n",
        "mirror.yaml: cannot read the spec: 'utf-8' codec can't decode",
    ),
}


@pytest.mark.parametrize("case", SPEC_CASES)
def test_a_hostile_spec_is_a_plain_collection_error(
    case: str, emulator: Emulator, pytester: pytest.Pytester, run
) -> None:
    content, message = SPEC_CASES[case]
    (pytester.path / "mirror.yaml").write_bytes(content)

    result = run("--sync", "mirror.yaml")

    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error: nothing ran
    result.stdout.fnmatch_lines([f"*{message}*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert emulator.requests == []


# -- upstream indexes --------------------------------------------------------------------------------
def _entry(chart_server: ChartServer, **override: object) -> dict[str, object]:
    chart = chart_server.add("app", "1.0.0")
    entry: dict[str, object] = {
        "name": "app",
        "version": "1.0.0",
        "digest": chart.digest,
        "urls": [chart.path.name],
        **override,
    }
    return {key: value for key, value in entry.items() if value is not None}


INDEX_CASES: dict[str, tuple[Callable[[ChartServer], str], str]] = {
    "index: entries is a list": (
        lambda server: yaml.safe_dump({"apiVersion": "v1", "entries": [1, 2]}),
        "is not a Helm repository index (no `entries` mapping)",
    ),
    "index: no apiVersion": (
        lambda server: yaml.safe_dump({"entries": {"app": [_entry(server)]}}),
        "has no apiVersion, so helm would not read it either",
    ),
    "index: entry without urls": (
        lambda server: yaml.safe_dump({"apiVersion": "v1", "entries": {"app": [_entry(server, urls=[])]}}),
        "app 1.0.0 in * lists no download URL",
    ),
    "index: entry without digest": (
        lambda server: yaml.safe_dump(
            {"apiVersion": "v1", "entries": {"app": [_entry(server, digest=None)]}}
        ),
        "app 1.0.0 in * has no valid sha256 digest",
    ),
    "index: chart URL file:///etc/passwd": (
        lambda server: yaml.safe_dump(
            {"apiVersion": "v1", "entries": {"app": [_entry(server, urls=["file:///etc/passwd"])]}}
        ),
        "lists a chart URL with scheme 'file' (file:///etc/passwd); only http(s) chart URLs are downloaded",
    ),
    "index: chart URL gopher://": (
        lambda server: yaml.safe_dump(
            {"apiVersion": "v1", "entries": {"app": [_entry(server, urls=["gopher://127.0.0.1:25/x"])]}}
        ),
        "lists a chart URL with scheme 'gopher'",
    ),
}


@pytest.mark.parametrize("case", INDEX_CASES)
def test_a_hostile_index_fails_its_versions_plainly(
    case: str, chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    make_index, message = INDEX_CASES[case]
    (chart_server.directory / "index.yaml").write_text(make_index(chart_server))
    write_spec(TARGET + f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: ['1.0.0']\n")

    result = run("--sync", "mirror.yaml")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*{message}*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert [r for r in emulator.writes() if r.kind == "registry"] == []
    assert not any(path.startswith("/etc") for path in chart_server.requests)


LOCAL_INDEX_CASES = {
    "local index: path outside the directory": "../../../../../../etc/passwd",
    "local index: file:// URL": "file:///etc/passwd",
}


@pytest.mark.parametrize("case", LOCAL_INDEX_CASES)
def test_a_local_index_cannot_point_outside_its_directory(
    case: str, emulator: Emulator, pytester: pytest.Pytester, write_spec, run
) -> None:
    charts = pytester.mkdir("c")
    listed = LOCAL_INDEX_CASES[case]
    (charts / "index.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "entries": {
                    "app": [{"name": "app", "version": "1.0.0", "digest": "ab" * 32, "urls": [listed]}]
                },
            }
        )
    )
    write_spec(TARGET + CHART)

    result = run("--sync", "mirror.yaml")

    result.stdout.fnmatch_lines(
        [f"*lists {listed!r} for app 1.0.0: a local index may only point inside its directory*"]
    )
    assert [r for r in emulator.writes() if r.kind == "registry"] == []


SERVED: dict[str, bytes] = {}  # path -> body the endless server answers normally


@pytest.fixture
def endless() -> Iterator[str]:
    """A server whose answers never end (`/forever...`), or redirect to themselves (`/loop...`)."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/loop"):
                return self._send(302, b"", {"Location": self.path})
            if self.path in SERVED:  # a real file among the endless ones
                return self._send(200, SERVED[self.path], {})
            self.send_response(200)
            self.end_headers()  # no Content-Length: the body ends when the connection does
            chunk = b"a" * (1 << 20)
            try:
                while True:
                    self.wfile.write(chunk)
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


ENDLESS_CASES = {
    "index: redirect loop": ("/loop/", "more than 5 redirects"),
    "index: answer of unbounded size": (
        "/forever/",
        "index.yaml is larger than 134217728 bytes; ecrmirror stopped reading it",
    ),
}


@pytest.mark.parametrize("case", ENDLESS_CASES)
def test_an_upstream_that_never_ends_is_cut_off(
    case: str, endless: str, emulator: Emulator, write_spec, run
) -> None:
    path, message = ENDLESS_CASES[case]
    write_spec(TARGET + f"charts:\n  - name: app\n    repo: {endless}{path}\n    versions: ['1.0.0']\n")

    result = run("--sync", "mirror.yaml")

    result.stdout.fnmatch_lines([f"*{message}*"])
    assert emulator.writes() == []


def test_an_archive_of_unbounded_size_is_cut_off(
    endless: str, chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    entry = {
        "name": "app",
        "version": "1.0.0",
        "digest": "ab" * 32,
        "urls": [f"{endless}/forever/app-1.0.0.tgz"],
    }
    (chart_server.directory / "index.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "entries": {"app": [entry]}})
    )
    write_spec(TARGET + f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: ['1.0.0']\n")

    result = run("--sync", "mirror.yaml")

    result.stdout.fnmatch_lines(["*app-1.0.0.tgz is larger than 104857600 bytes, more than a chart may be*"])
    assert [r for r in emulator.writes() if r.kind == "registry"] == []


def test_a_provenance_file_of_unbounded_size_is_cut_off(
    endless: str, tmp_path: Path, emulator: Emulator, write_spec, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a real archive whose .prov (asked while the archive downloads) never ends
    chart = package_chart(tmp_path, "app", "1.0.0")
    monkeypatch.setitem(SERVED, "/real/app-1.0.0.tgz", chart.path.read_bytes())
    index = {
        "apiVersion": "v1",
        "entries": {
            "app": [{"name": "app", "version": "1.0.0", "digest": chart.digest, "urls": ["app-1.0.0.tgz"]}]
        },
    }
    monkeypatch.setitem(SERVED, "/real/index.yaml", yaml.safe_dump(index).encode())
    write_spec(TARGET + f"charts:\n  - name: app\n    repo: {endless}/real/\n    versions: ['1.0.0']\n")

    result = run("--sync", "--ecrmirror-jobs=8", "mirror.yaml")

    result.stdout.fnmatch_lines(
        ["*app-1.0.0.tgz.prov is larger than 1048576 bytes; ecrmirror stopped reading it*"]
    )
    assert [r for r in emulator.writes() if r.kind == "registry"] == []


# -- archives ----------------------------------------------------------------------------------------
def tar_gz(members: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """A .tgz of (name, link target or None, content) members, written as hostile as asked."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, link, content in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type = tarfile.SYMTYPE if not link.startswith(b"hard:") else tarfile.LNKTYPE
                info.linkname = link.decode().removeprefix("hard:")
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


CHART_YAML = b"apiVersion: v2\nname: app\nversion: 1.0.0\n"
ZEROS_6_MIB = bytes(6 * 1024 * 1024)
ARCHIVE_CASES: dict[str, tuple[Callable[[], bytes], str]] = {
    "archive: not gzip": (lambda: b"<html>login</html>", "is not a gzipped tar archive"),
    "archive: gzip bomb, one member": (
        lambda: tar_gz([("app/Chart.yaml", None, CHART_YAML), ("app/zeros", None, ZEROS_6_MIB)]),
        "app/zeros is 6291456 bytes decompressed; helm allows at most 5242880 per file",
    ),
    "archive: gzip bomb, many members": (
        lambda: tar_gz(
            [("app/Chart.yaml", None, CHART_YAML)]
            + [(f"app/z{n}", None, bytes(5 * 1024 * 1024)) for n in range(21)]
        ),
        "decompresses to more than 104857600 bytes, the limit for a chart (helm's is 104857600; "
        "raise it with ini ecrmirror_max_chart_size)",
    ),
    "archive: no Chart.yaml": (
        lambda: tar_gz([("app/values.yaml", None, b"a: 1\n")]),
        "holds no <name>/Chart.yaml: it is not a Helm chart",
    ),
    "archive: Chart.yaml at the root": (
        lambda: tar_gz([("Chart.yaml", None, CHART_YAML)]),
        "Chart.yaml is at the archive root",
    ),
    "archive: Chart.yaml too deep": (
        lambda: tar_gz([("x/app/Chart.yaml", None, CHART_YAML)]),
        "holds no <name>/Chart.yaml: it is not a Helm chart",
    ),
    "archive: path traversal": (
        lambda: tar_gz([("app/Chart.yaml", None, CHART_YAML), ("app/../../evil", None, b"x")]),
        "member 'app/../../evil' points outside the chart directory",
    ),
    "archive: absolute member": (
        lambda: tar_gz([("app/Chart.yaml", None, CHART_YAML), ("/etc/cron.d/evil", None, b"x")]),
        "member '/etc/cron.d/evil' points outside the chart directory",
    ),
    "archive: symlink": (
        lambda: tar_gz([("app/Chart.yaml", None, CHART_YAML), ("app/passwd", b"/etc/passwd", b"")]),
        "member 'app/passwd' is a link; a chart archive holds files only",
    ),
    "archive: hard link": (
        lambda: tar_gz([("app/Chart.yaml", None, CHART_YAML), ("app/copy", b"hard:app/Chart.yaml", b"")]),
        "member 'app/copy' is a link",
    ),
    "archive: another chart's name": (
        lambda: tar_gz([("app/Chart.yaml", None, b"apiVersion: v2\nname: other\nversion: 1.0.0\n")]),
        "Chart.yaml names the chart 'other', but the spec and the index say 'app'",
    ),
    "archive: another version": (
        lambda: tar_gz([("app/Chart.yaml", None, b"apiVersion: v2\nname: app\nversion: 9.9.9\n")]),
        "Chart.yaml has version '9.9.9', but the index lists it as '1.0.0'",
    ),
}


@pytest.mark.parametrize("case", ARCHIVE_CASES)
def test_a_hostile_archive_is_refused_and_nothing_is_pushed(
    case: str, chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    make, message = ARCHIVE_CASES[case]
    serve_archive(chart_server.directory, make())
    write_spec(TARGET + f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: ['1.0.0']\n")

    result = run("--sync", "mirror.yaml")

    result.stdout.fnmatch_lines([f"*{message}*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert [r for r in emulator.writes() if r.kind == "registry"] == []


def test_the_chart_size_limit_can_be_set_for_charts_bigger_than_helms_default(
    chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # 3 x 400 KiB: bigger than a limit of 1 MiB decompressed, and (random bytes do not compress)
    # as an archive too.
    files = [(f"app/data{n}", None, bytes(random.Random(n).randbytes(400 * 1024))) for n in range(3)]
    serve_archive(chart_server.directory, tar_gz([("app/Chart.yaml", None, CHART_YAML), *files]))
    write_spec(TARGET + f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: ['1.0.0']\n")

    refused = run("--sync", "mirror.yaml", "-o", "ecrmirror_max_chart_size=1MiB")
    refused.stdout.fnmatch_lines(
        ["*app-1.0.0.tgz is larger than 1048576 bytes, more than a chart may be*nothing was pushed*"]
    )
    assert [r for r in emulator.writes() if r.kind == "registry"] == []

    compressible = [(f"app/zeros{n}", None, bytes(400 * 1024)) for n in range(3)]
    serve_archive(chart_server.directory, tar_gz([("app/Chart.yaml", None, CHART_YAML), *compressible]))
    refused = run("--sync", "mirror.yaml", "--ecrmirror-max-chart-size=1048576")
    refused.stdout.fnmatch_lines(["*decompresses to more than 1048576 bytes, the limit for a chart*"])
    assert [r for r in emulator.writes() if r.kind == "registry"] == []

    pushed = run(
        "--sync", "mirror.yaml", "-o", "ecrmirror_max_chart_size=1MiB", "--ecrmirror-max-chart-size=2MiB"
    )
    pushed.assert_outcomes(passed=2)  # the repository and the version: the option wins over the ini


@pytest.mark.parametrize("value", ["100MB", "-1", "0", "lots"])
def test_a_chart_size_limit_that_is_not_a_size_is_a_usage_error(value: str, write_spec, run) -> None:
    write_spec(TARGET + "charts:\n  - name: app\n    repo: ./c\n    versions: ['1.0.0']\n")

    result = run("--sync", "mirror.yaml", f"--ecrmirror-max-chart-size={value}")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*ecrmirror_max_chart_size '{value}' is not a size: give bytes, or a number*"]
    )


# -- the docs table lists exactly these cases -----------------------------------------------------------
OTHER_CASES = {
    "oci: a digest that is a path": "tests/test_oci_sources.py",
    "oci: a blob longer than its manifest says": "tests/test_oci_sources.py",
    "oci: a layer over the chart size limit": "tests/test_oci_sources.py",
    "provenance: no .prov": "tests/test_provenance.py",
    "provenance: signed by an unknown key": "tests/test_provenance.py",
    "provenance: archive changed after signing": "tests/test_provenance.py",
    "provenance: .prov changed after signing": "tests/test_provenance.py",
    "tls: self-signed upstream": "tests/test_private_repositories.py",
    "secrets: canary credentials": "tests/test_secrets.py",
    "secrets: credentials in any URL spelling": "tests/test_secrets.py",
    "secrets: a password that breaks URL parsing": "tests/test_secrets.py",
    "cache: a cache directory others can write": "tests/test_index_cache.py",
}


def modules_hostile_cases() -> set[str]:
    """The cases other test modules keep in a module-level `HOSTILE_CASES` mapping."""
    found: set[str] = set()
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        if path.name != Path(__file__).name and "\nHOSTILE_CASES" in path.read_text():
            found |= set(importlib.import_module(path.stem).HOSTILE_CASES)
    return found


def test_the_docs_table_lists_every_case() -> None:
    cases = (
        set(SPEC_CASES) | set(INDEX_CASES) | set(LOCAL_INDEX_CASES) | set(ENDLESS_CASES) | set(ARCHIVE_CASES)
    )
    cases |= {"archive: unbounded size", "archive: .prov of unbounded size"} | set(OTHER_CASES)
    cases |= modules_hostile_cases()
    documented = re.findall(
        r"^\| ([a-z ]+: [^|]+?) \|", (ROOT / "docs" / "hostile-input.md").read_text(), re.MULTILINE
    )

    assert sorted(documented) == sorted(cases)  # and no row twice
    assert len(cases) >= 30
