"""What helm loads from an archive is what ecrmirror checks: one Chart.yaml, read as helm reads YAML.

helm's loader (pkg/chart/loader/archive.go LoadArchiveFiles, load.go LoadFiles) names a member by
dropping its first path component whatever it is, reads every Chart.yaml and requirements.yaml into
one chart.Metadata, and reads YAML with go-yaml v2 through sigs.k8s.io/yaml. Real helm is the
oracle: for each case `helm show` says what helm would load, and ecrmirror reads the same or
refuses the archive, pushing nothing.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from chartfactory import archive_bytes, package_chart, serve_archive, write_archive
from tools import helm_push, tool

from conftest import REGISTRY, ChartServer
from ecrmirror.chart import build_artifact, read_chart_metadata
from ecrmirror.emulator import Emulator
from ecrmirror.errors import InvalidChart

TARGET = f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
CHART = "apiVersion: v2\nname: app\nversion: 1.0.0\n"
OTHER_VERSION = "apiVersion: v2\nname: app\nversion: 9.9.9\n"
BILLION_LAUGHS = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{this}: &{this} [{', '.join([f'*{last}'] * 9)}]\n"
    for last, this in zip("abcdefgh", "bcdefghi", strict=True)
)


@dataclass(frozen=True)
class Case:
    members: list[tuple[str, str]]
    message: str  # what ecrmirror says
    helm: str  # what `helm show <what>` prints (or says) for the archive
    what: str = "chart"
    modes: dict[str, int] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "archive: two Chart.yaml": Case(
        [("app/Chart.yaml", CHART), ("app/Chart.yaml", OTHER_VERSION)],
        "members 'app/Chart.yaml' and 'app/Chart.yaml' are both the chart's Chart.yaml to helm, which reads "
        "both into the chart's metadata, the later one's fields winning",
        "version: 9.9.9",
    ),
    "archive: Chart.yaml again under another directory": Case(
        [("app/Chart.yaml", CHART), ("other/Chart.yaml", "version: 9.9.9\n")],
        "members 'app/Chart.yaml' and 'other/Chart.yaml' are both the chart's Chart.yaml to helm",
        "version: 9.9.9",
    ),
    "archive: Chart.yaml again as app/./Chart.yaml": Case(
        [("app/Chart.yaml", CHART), ("app/./Chart.yaml", "version: 9.9.9\n")],
        "members 'app/Chart.yaml' and 'app/./Chart.yaml' are both the chart's Chart.yaml to helm",
        "version: 9.9.9",
    ),
    "archive: Chart.yaml again with a backslash": Case(
        [("app/Chart.yaml", CHART), ("app\\Chart.yaml", "version: 9.9.9\n")],
        "members 'app/Chart.yaml' and 'app\\\\Chart.yaml' are both the chart's Chart.yaml to helm",
        "version: 9.9.9",
    ),
    "archive: two values.yaml": Case(
        [
            ("app/Chart.yaml", CHART),
            ("app/values.yaml", "image: reviewed\n"),
            ("app/values.yaml", "image: other\n"),
        ],
        "members 'app/values.yaml' and 'app/values.yaml' are both the chart's values.yaml to helm, "
        "which keeps only one of them",
        "image: other",
        what="values",
    ),
    "archive: requirements.yaml sets the version": Case(
        [("app/Chart.yaml", CHART), ("app/requirements.yaml", "version: 9.9.9\n")],
        "app/requirements.yaml sets the chart's version to '9.9.9', and helm reads it over "
        "Chart.yaml's '1.0.0'",
        "version: 9.9.9",
    ),
    "archive: a Chart.yaml key that folds to version": Case(
        [("app/Chart.yaml", CHART + "ver\u017fion: 9.9.9\n")],
        "Chart.yaml has version '9.9.9', but the index lists it as '1.0.0'",
        "version: 9.9.9",
    ),
    "archive: a file with a directory's mode": Case(
        [("app/Chart.yaml", CHART), ("other/Chart.yaml", OTHER_VERSION)],
        "member 'app/Chart.yaml' is a file with a directory's mode (40644), which helm would skip",
        "version: 9.9.9",
        modes={"app/Chart.yaml": 0o40644},
    ),
    "archive: a file beside the chart directory": Case(
        [("app/Chart.yaml", CHART), ("README.md", "hello\n")],
        "member 'README.md' is outside the chart's directory to helm ('.'), which refuses such an archive",
        'chart illegally contains content outside the base directory: "README.md"',
    ),
    "archive: YAML alias bomb in Chart.yaml": Case(
        [("app/Chart.yaml", CHART + BILLION_LAUGHS)],
        "app/Chart.yaml uses YAML aliases excessively (go-yaml: document contains excessive aliasing), "
        "as helm refuses it",
        "document contains excessive aliasing",
    ),
    "archive: YAML alias bomb in requirements.yaml": Case(
        [("app/Chart.yaml", CHART), ("app/requirements.yaml", BILLION_LAUGHS)],
        "app/requirements.yaml uses YAML aliases excessively",
        "document contains excessive aliasing",
    ),
    "archive: a YAML anchor that contains itself": Case(
        [("app/Chart.yaml", CHART + "x: &a [*a]\n")],
        "app/Chart.yaml has an anchor &a that contains itself, which helm refuses",
        "anchor 'a' value contains itself",
    ),
    "archive: deeply nested Chart.yaml": Case(  # ecrmirror is stricter here: helm stops at 10000
        [("app/Chart.yaml", CHART + "x: " + "[" * 2000 + "]" * 2000 + "\n")],
        "app/Chart.yaml nests more than 256 levels deep, which no chart or index needs",
        "version: 1.0.0",
    ),
    "archive: a Chart.yaml field helm cannot read": Case(
        [("app/Chart.yaml", CHART + "home: {url: https://example.org}\n")],
        "app/Chart.yaml: home is a mapping, where helm reads a string, so helm cannot load the chart",
        "cannot unmarshal object into Go struct field Metadata.home of type string",
    ),
}
HOSTILE_CASES: dict[str, str] = {case: CASES[case].message for case in CASES}


def helm_show(helm: list[str], archive: Path, what: str = "chart") -> str:
    shown = tool(*helm, "show", what, str(archive))
    return shown.stdout + shown.stderr


@pytest.mark.parametrize("case", CASES)
def test_helm_itself_loads_something_else_or_refuses(case: str, helm: list[str], tmp_path: Path) -> None:
    # given the archive, helm shows what it would load: never what app/Chart.yaml alone says
    archive = write_archive(tmp_path, "app-1.0.0.tgz", CASES[case].members, modes=CASES[case].modes)

    assert CASES[case].helm in helm_show(helm, archive.path, CASES[case].what)


@pytest.mark.parametrize("case", CASES)
def test_an_archive_helm_would_load_otherwise_is_refused_and_nothing_is_pushed(
    case: str, chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    serve_archive(chart_server.directory, archive_bytes(CASES[case].members, modes=CASES[case].modes))
    write_spec(TARGET + f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: ['1.0.0']\n")

    result = run("--sync", "mirror.yaml")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*{CASES[case].message}*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert [r for r in emulator.writes() if r.kind == "registry"] == []


BOMBS = ["archive: YAML alias bomb in Chart.yaml", "archive: YAML alias bomb in requirements.yaml"]


@pytest.mark.parametrize("case", BOMBS)
def test_an_alias_bomb_is_refused_at_once(case: str, tmp_path: Path, record_property) -> None:
    # given a billion laughs: 9**9 strings if anything expanded it
    archive = write_archive(tmp_path, "app-1.0.0.tgz", CASES[case].members)

    started = time.perf_counter()
    with pytest.raises(InvalidChart, match="uses YAML aliases excessively"):
        read_chart_metadata(archive.path)
    took = time.perf_counter() - started

    record_property("figures", f"refused in {took * 1000:.1f} ms")
    assert took < 0.25


@pytest.mark.parametrize("case", BOMBS)
def test_an_alias_bomb_in_a_local_directory_is_refused_too(
    case: str, emulator: Emulator, pytester: pytest.Pytester, write_spec, run
) -> None:
    write_archive(pytester.path / "c", "app-1.0.0.tgz", CASES[case].members)
    write_spec(TARGET + "charts:\n  - name: app\n    repo: ./c\n    versions: ['1.0.0']\n")

    started = time.perf_counter()
    result = run("--sync", "mirror.yaml")

    assert time.perf_counter() - started < 10  # the whole in-process run, not an expansion
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*c/app-1.0.0.tgz: {CASES[case].message}*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert [r for r in emulator.writes() if r.kind == "registry"] == []


@pytest.mark.parametrize(("aliases", "refused"), [(205, False), (206, True)])
def test_the_alias_limit_is_go_yamls_to_the_alias(
    aliases: int, refused: bool, helm: list[str], tmp_path: Path
) -> None:
    # given 200 strings under an anchor, and a list of aliases to it: go-yaml's ratio of values
    # decoded through aliases crosses 99% between 205 and 206 of them
    text = CHART + f"a: &a [{', '.join(['x'] * 200)}]\nb: [{', '.join(['*a'] * aliases)}]\n"
    archive = write_archive(tmp_path, "app-1.0.0.tgz", [("app/Chart.yaml", text)])

    shown = helm_show(helm, archive.path)

    assert ("document contains excessive aliasing" in shown) is refused
    if refused:
        with pytest.raises(InvalidChart, match="uses YAML aliases excessively"):
            read_chart_metadata(archive.path)
    else:
        assert read_chart_metadata(archive.path)["version"] == "1.0.0"


SCALARS = """\
apiVersion: v2
name: app
version: 1.0.0
appVersion: 8.0
description: y
home: 1e3
icon: 0.1
kubeVersion: 16777217.0
keywords: [yes, 1.50, 123456789.0, "1:30", 1:30, 0x1F, 2021-01-01, 1.0e+20, 0.00001, .inf, 1_000, =, ~]
Sources: [https://upper.example]
\u0131con: a dotless i is no i to helm
\u212aubeVersion: ">=1.20"
annotations: {a: 1.0, b: null, 3: x, true: y, c: 2001-12-14t21:59:43.10-05:00}
deprecated: false
"""


def test_scalars_and_keys_read_as_helm_reads_them(helm: list[str], tmp_path: Path) -> None:
    # given a Chart.yaml whose scalars and keys PyYAML alone would read otherwise than helm
    archive = write_archive(tmp_path, "app-1.0.0.tgz", [("app/Chart.yaml", SCALARS)])

    ours = read_chart_metadata(archive.path)

    theirs = yaml.load(helm_show(helm, archive.path), Loader=yaml.BaseLoader)  # every value a string
    assert {key: value for key, value in ours.items() if value not in ("", [], None, False)} == theirs
    assert ours["keywords"][:4] == ["true", "1.5", "1.2345679e+08", "1:30"]


def test_requirements_merge_into_chart_yaml_field_by_field_as_helm_merges_them(
    helm: list[str], tmp_path: Path
) -> None:
    # given a v1 chart whose Chart.yaml lists a dependency and whose requirements.yaml lists it again
    chart_yaml = (
        "apiVersion: v1\nname: app\nversion: 1.0.0\nannotations: {a: '1'}\n"
        "dependencies:\n"
        "- {name: db, version: 1.0.0, repository: 'https://charts.example', condition: db.on}\n"
    )
    requirements = "annotations: {b: '2'}\ndependencies:\n- {name: db, version: 2.0.0}\n- {name: cache}\n"
    archive = write_archive(
        tmp_path, "app-1.0.0.tgz", [("app/Chart.yaml", chart_yaml), ("app/requirements.yaml", requirements)]
    )

    ours = read_chart_metadata(archive.path)

    # then both read the first dependency's repository from Chart.yaml, its version from requirements.yaml
    theirs = yaml.safe_load(helm_show(helm, archive.path))
    assert ours["dependencies"] == non_empty(theirs["dependencies"])
    assert ours["dependencies"][0] == {
        "name": "db",
        "version": "2.0.0",
        "repository": "https://charts.example",
        "condition": "db.on",
    }
    assert ours["annotations"] == theirs["annotations"] == {"a": "1", "b": "2"}


def test_helm_push_and_ecrmirror_agree_on_a_v1_chart_with_requirements(
    helm: list[str], emulator: Emulator, tmp_path: Path
) -> None:
    # given a helm 2 era chart: apiVersion v1, dependencies in requirements.yaml, appVersion a float
    chart = package_chart(
        tmp_path / "charts",
        "legacy",
        "0.4.0",
        apiVersion="v1",
        appVersion=8.0,
        files={
            "legacy/requirements.yaml": "dependencies:\n- {name: db, version: ~1.2, repository: '@stable'}\n"
        },
    )
    created = "2024-03-01T12:34:56Z"
    moment = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    os.utime(chart.path, (moment, moment))  # helm >= 3.17 takes `created` from the file's time
    boto3.client("ecr", region_name="eu-west-1", endpoint_url=emulator.url).create_repository(
        repositoryName="helm/legacy"
    )

    # when helm pushes it
    pushed = helm_push(helm, chart.path, emulator)
    assert pushed.returncode == 0, pushed.stderr

    # then ecrmirror's artifact is helm's, byte for byte: the config holds requirements.yaml's
    # dependency and appVersion "8", as helm's loader reads them
    digest = "sha256:" + hashlib.sha256(chart.path.read_bytes()).hexdigest()
    ours = build_artifact(chart.path, digest, name="legacy", version="0.4.0", created=created)
    assert f"Digest: {ours.manifest_digest}" in pushed.stdout + pushed.stderr
    assert b'"appVersion":"8"' in ours.config
    assert b'"dependencies":[{"name":"db","version":"~1.2","repository":"@stable"}]' in ours.config


def non_empty(value: Any) -> Any:
    """`value` without the empty fields that Go's omitempty leaves out (helm prints a dependency's
    empty repository all the same)."""
    if isinstance(value, dict):
        return {k: non_empty(v) for k, v in value.items() if v not in ("", [], {}, None, False)}
    if isinstance(value, list):
        return [non_empty(v) for v in value]
    return value
