"""A local directory is read as `helm repo index DIR` reads it, and nothing outside it is read.

Real helm is the oracle: for fixtures like helm's own pkg/repo/testdata/repository (charts in the
directory and one level down), plus the awkward ones (hidden directories, deeper ones, corrupt and
non-chart archives, one version twice, apiVersion v1 charts with requirements.yaml, links inside
and outside, a directory named like an archive), the (name, version)s ecrmirror sees are those of
the index.yaml `helm repo index` writes, except where ecrmirror is stricter, which each fixture
says and explains.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from chartfactory import package_chart, write_archive, write_index
from tools import tool

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator
from ecrmirror.errors import UpstreamError
from ecrmirror.sources import parse_index
from ecrmirror.sources.local import LocalRepository

TARGET = f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"


def spec(versions: list[str], repo: str = "./c") -> str:
    return TARGET + f"charts:\n  - name: app\n    repo: {repo}\n    versions: {versions}\n"


def pushed_tags(emulator: Emulator) -> set[str]:
    return {
        r.path.rpartition("/")[2]
        for r in emulator.writes()
        if r.kind == "registry" and "/manifests/" in r.path
    }


# -- the oracle: what `helm repo index` indexes ------------------------------------------------------
def helms_testdata(root: Path, outside: Path) -> None:
    """helm's pkg/repo/testdata/repository: three archives, and one in a subdirectory."""
    package_chart(root, "frobnitz", "1.2.3")
    package_chart(root, "sprocket", "1.1.0")
    package_chart(root, "sprocket", "1.2.0")
    package_chart(root / "universe", "zarthal", "1.0.0")
    (root / "README.md").write_text("not an archive\n")


def hidden_and_deep(root: Path, outside: Path) -> None:
    package_chart(root / "sub", "app", "1.1.0")
    package_chart(root / ".hidden", "app", "1.3.0")  # Go's Glob matches dot files
    package_chart(root, "app", "1.4.0").path.rename(root / ".app-1.4.0.tgz")
    package_chart(root / "sub" / "deeper", "app", "1.2.0")  # `**` is `*` to Go: one level only


def not_charts(root: Path, outside: Path) -> None:
    package_chart(root, "app", "1.0.0")
    (root / "corrupt.tgz").write_bytes(b"\x1f\x8b\x08 not really gzip")
    (root / "empty.tgz").write_bytes(b"")
    write_archive(root, "values-1.0.0.tgz", [("values/values.yaml", "a: 1\n")])  # no Chart.yaml
    write_archive(root, "loose-1.0.0.tgz", [("loose/Chart.yaml", "name: loose\nversion: 1.0.0\n"), ("x", "")])
    write_archive(root, "nameless-1.0.0.tgz", [("nameless/Chart.yaml", "version: 1.0.0\n")])


def one_version_twice(root: Path, outside: Path) -> None:
    package_chart(root, "app", "1.0.0")
    package_chart(root / "copy", "app", "1.0.0", description="not the same archive")
    (root / "latest.tgz").symlink_to("app-1.0.0.tgz")  # the same bytes: one archive


def v1_with_requirements(root: Path, outside: Path) -> None:
    package_chart(
        root,
        "legacy",
        "0.4.0",
        apiVersion="v1",
        files={
            "legacy/requirements.yaml": "dependencies:\n- {name: db, version: ~1.2, repository: '@stable'}\n"
        },
    )


def links(root: Path, outside: Path) -> None:
    package_chart(root, "app", "1.0.0")
    (root / "stable.tgz").symlink_to(root / "app-1.0.0.tgz")
    (root / "borrowed.tgz").symlink_to(package_chart(outside, "app", "2.0.0").path)
    (root / "elsewhere").symlink_to(package_chart(outside / "dir", "app", "3.0.0").path.parent)


def a_directory_named_like_an_archive(root: Path, outside: Path) -> None:
    package_chart(root, "app", "1.0.0")
    (root / "unpacked.tgz").mkdir()
    (root / "unpacked.tgz" / "Chart.yaml").write_text("apiVersion: v2\nname: unpacked\nversion: 0.1.0\n")


@dataclass(frozen=True)
class Fixture:
    build: Callable[[Path, Path], None]
    only_helm: frozenset[tuple[str, str]] = frozenset()  # what helm indexes and ecrmirror refuses
    why: str = ""


FIXTURES = {
    "helm's testdata repository": Fixture(helms_testdata),
    "hidden and deeper directories": Fixture(hidden_and_deep),
    "archives that are not charts": Fixture(not_charts),
    "one version twice": Fixture(one_version_twice),
    "a v1 chart with requirements.yaml": Fixture(v1_with_requirements),
    "links inside and outside": Fixture(
        links,
        frozenset({("app", "2.0.0"), ("app", "3.0.0")}),
        "helm follows links anywhere; a local repository reads nothing outside its directory",
    ),
    "a directory named like an archive": Fixture(
        a_directory_named_like_an_archive,
        frozenset({("unpacked", "0.1.0")}),
        "helm's loader reads a directory as a chart, but there is no archive to push",
    ),
}


@pytest.mark.parametrize("fixture", FIXTURES)
def test_ecrmirror_sees_the_versions_helm_repo_index_indexes(
    fixture: str, helm: list[str], tmp_path: Path
) -> None:
    # given the fixture, and helm's index of a copy of it
    root, outside, copy = tmp_path / "repo", tmp_path / "outside", tmp_path / "copy"
    root.mkdir()
    FIXTURES[fixture].build(root, outside)
    shutil.copytree(root, copy, symlinks=True)
    indexed = tool(*helm, "repo", "index", str(copy))
    assert indexed.returncode == 0, indexed.stderr
    index = yaml.safe_load((copy / "index.yaml").read_text())
    helms = {
        (entry["name"], str(entry["version"])) for entries in index["entries"].values() for entry in entries
    }

    # when ecrmirror reads the directory, and the copy with helm's index.yaml
    ours = LocalRepository(root, None).charts()  # type: ignore[arg-type]  # no HTTP for a directory
    with_index = LocalRepository(copy, None).charts()  # type: ignore[arg-type]

    # then it sees what helm indexed (but what it refuses), and exactly that through helm's index
    seen = {(name, version) for name, versions in ours.items() for version in versions}
    assert seen == helms - FIXTURES[fixture].only_helm, FIXTURES[fixture].why
    assert {(name, version) for name, versions in with_index.items() for version in versions} == helms


def test_one_version_held_twice_fails_naming_both_archives_and_only_that_version(tmp_path: Path) -> None:
    one_version_twice(tmp_path / "repo", tmp_path / "outside")
    package_chart(tmp_path / "repo", "app", "2.0.0")
    repository = LocalRepository(tmp_path / "repo", None)  # type: ignore[arg-type]

    with pytest.raises(UpstreamError) as raised:
        repository.release("app", "1.0.0")

    assert str(raised.value) == (
        f"{tmp_path}/repo holds app 1.0.0 as 2 different archives: {tmp_path}/repo/app-1.0.0.tgz and "
        f"{tmp_path}/repo/copy/app-1.0.0.tgz. helm would index them all and pick one; ecrmirror picks none. "
        "Keep one of them."
    )
    assert repository.release("app", "2.0.0").version == "2.0.0"


def test_a_v1_charts_requirements_are_its_dependencies_as_in_helms_index(
    helm: list[str], tmp_path: Path
) -> None:
    v1_with_requirements(tmp_path / "repo", tmp_path / "outside")
    shutil.copytree(tmp_path / "repo", tmp_path / "copy")
    assert tool(*helm, "repo", "index", str(tmp_path / "copy")).returncode == 0
    entry = yaml.safe_load((tmp_path / "copy" / "index.yaml").read_text())["entries"]["legacy"][0]

    metadata = LocalRepository(tmp_path / "repo", None).metadata("legacy", "0.4.0")  # type: ignore[arg-type]

    assert (
        metadata["dependencies"]
        == entry["dependencies"]
        == [{"name": "db", "version": "~1.2", "repository": "@stable"}]
    )


# -- hostile directories, as users run ecrmirror -----------------------------------------------------
@dataclass(frozen=True)
class Case:
    build: Callable[[Path, Path], None]  # (the chart directory c, a directory outside it)
    versions: list[str]
    message: str
    pushed: frozenset[str] = frozenset()  # the versions that still go through


def linked_archive(c: Path, outside: Path) -> None:
    c.mkdir()
    (c / "app-1.0.0.tgz").symlink_to(package_chart(outside, "app", "1.0.0").path)


def linked_directory(c: Path, outside: Path) -> None:
    package_chart(c, "app", "2.0.0")
    (c / "sub").symlink_to(package_chart(outside, "app", "1.0.0").path.parent)


def linked_listed_archive(c: Path, outside: Path) -> None:
    linked_archive(c, outside)
    chart = package_chart(outside, "app", "1.0.0")
    write_index(c, [chart])


def linked_index(c: Path, outside: Path) -> None:
    package_chart(c, "app", "1.0.0")
    write_index(outside, [package_chart(outside, "app", "1.0.0", description="elsewhere")])
    (c / "index.yaml").symlink_to(outside / "index.yaml")


def linked_provenance(c: Path, outside: Path) -> None:
    package_chart(c, "app", "1.0.0")
    outside.mkdir()
    (outside / "secret").write_text("not a provenance file\n")
    (c / "app-1.0.0.tgz.prov").symlink_to(outside / "secret")


def two_archives(c: Path, outside: Path) -> None:
    package_chart(c, "app", "1.0.0")
    package_chart(c / "sub", "app", "1.0.0", description="another archive")
    package_chart(c, "app", "2.0.0")


def listed_twice(c: Path, outside: Path) -> None:
    first = package_chart(c, "app", "1.0.0")
    second = package_chart(c / "sub", "app", "1.0.0", description="another archive")
    write_index(c, [first, second])
    index = yaml.safe_load((c / "index.yaml").read_text())
    index["entries"]["app"][1]["urls"] = ["sub/app-1.0.0.tgz"]
    (c / "index.yaml").write_text(yaml.safe_dump(index))


def corrupt_archive(c: Path, outside: Path) -> None:
    c.mkdir()
    (c / "app-1.0.0.tgz").write_bytes(b"<html>login</html>")
    package_chart(c, "app", "2.0.0")


def corrupt_archive_of_no_name(c: Path, outside: Path) -> None:
    c.mkdir()
    (c / "broken.tgz").write_bytes(b"<html>login</html>")
    package_chart(c, "app", "2.0.0")


LOCAL_CASES: dict[str, Case] = {
    "local: an archive that links outside the directory": Case(
        linked_archive,
        ["1.0.0"],
        "*/c/app-1.0.0.tgz links to */outside/app-1.0.0.tgz, outside */c; a local repository only reads "
        "files inside its directory*",
    ),
    "local: a subdirectory that links outside the directory": Case(
        linked_directory,
        ["1.0.0", "2.0.0"],
        "*/c/sub/app-1.0.0.tgz links to */outside/app-1.0.0.tgz, outside */c*",
        frozenset({"2.0.0"}),
    ),
    "local index: a listed archive that links outside the directory": Case(
        linked_listed_archive,
        ["1.0.0"],
        "*/c/index.yaml lists 'app-1.0.0.tgz' for app 1.0.0, but */c/app-1.0.0.tgz links to "
        "*/outside/app-1.0.0.tgz, outside */c*",
    ),
    "local: an index.yaml that links outside the directory": Case(
        linked_index,
        ["1.0.0"],
        "*/c/index.yaml links to */outside/index.yaml, outside */c*",
    ),
    "local: a .prov that links outside the directory": Case(
        linked_provenance,
        ["1.0.0"],
        "*/c/app-1.0.0.tgz.prov links to */outside/secret, outside */c*",
    ),
    "local: one version as two archives": Case(
        two_archives,
        ["1.0.0", "2.0.0"],
        "*/c holds app 1.0.0 as 2 different archives: */c/app-1.0.0.tgz and */c/sub/app-1.0.0.tgz. "
        "helm would index them all and pick one; ecrmirror picks none*",
        frozenset({"2.0.0"}),
    ),
    "local index: one version listed twice": Case(
        listed_twice,
        ["1.0.0"],
        "*/c/index.yaml lists app 1.0.0 2 times, as different archives (app-1.0.0.tgz, sub/app-1.0.0.tgz); "
        "helm would pick one of them, ecrmirror picks none*",
    ),
    "local: a corrupt archive": Case(
        corrupt_archive,
        ["1.0.0", "2.0.0"],
        "*/c/app-1.0.0.tgz is not a gzipped tar archive*",
        frozenset({"2.0.0"}),
    ),
    "local: a corrupt archive named for no version": Case(
        corrupt_archive_of_no_name,
        ["1.0.0"],
        "*app 1.0.0 is not in */c; nearest versions there: 2.0.0. Fix the version in the spec. It also holds "
        "archives whose chart could not be read: */c/broken.tgz is not a gzipped tar archive*",
    ),
}
HOSTILE_CASES: dict[str, str] = {case: LOCAL_CASES[case].message.strip("*") for case in LOCAL_CASES}


@pytest.mark.parametrize("case", LOCAL_CASES)
def test_a_hostile_directory_fails_only_the_versions_it_concerns_and_pushes_nothing_for_them(
    case: str, emulator: Emulator, pytester: pytest.Pytester, write_spec, run
) -> None:
    LOCAL_CASES[case].build(pytester.path / "c", pytester.path / "outside")
    write_spec(spec(LOCAL_CASES[case].versions))

    result = run("--sync", "mirror.yaml")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([LOCAL_CASES[case].message])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert pushed_tags(emulator) == set(LOCAL_CASES[case].pushed)


def test_archives_one_level_down_are_found_and_deeper_ones_are_not(
    emulator: Emulator, pytester: pytest.Pytester, write_spec, run
) -> None:
    package_chart(pytester.path / "c" / "2024", "app", "1.1.0")
    package_chart(pytester.path / "c" / "2024" / "q1", "app", "1.2.0")
    write_spec(spec(["1.1.0", "1.2.0"]))

    result = run("--sync", "mirror.yaml")

    result.assert_outcomes(passed=2, failed=1)  # the repository and 1.1.0; helm does not index 1.2.0
    result.stdout.fnmatch_lines(["*app 1.2.0 is not in */c; nearest versions there: 1.1.0*"])
    assert pushed_tags(emulator) == {"1.1.0"}


def test_an_index_of_only_apiversion_is_an_empty_repository_beside_the_archives(
    emulator: Emulator, pytester: pytest.Pytester, write_spec, run
) -> None:
    package_chart(pytester.path / "c", "app", "1.0.0")
    (pytester.path / "c" / "index.yaml").write_text("apiVersion: v1\n")
    write_spec(spec(["1.0.0"]))

    run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    assert pushed_tags(emulator) == {"1.0.0"}


@pytest.mark.parametrize("index", ["apiVersion: v1\n", "apiVersion: v1\nentries:\n"])
def test_an_index_of_only_apiversion_is_an_empty_repository_as_helm_repo_add_takes_it(
    index: str, helm: list[str], chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    (chart_server.directory / "index.yaml").write_text(index)
    assert tool(*helm, "repo", "add", "empty", chart_server.url).returncode == 0
    write_spec(spec(["1.0.0"], repo=chart_server.url))

    result = run("--sync", "mirror.yaml")

    result.stdout.fnmatch_lines([f"*chart 'app' is not in {chart_server.url}index.yaml; it lists no charts*"])
    result.stdout.no_fnmatch_line("*not a Helm repository index*")


def test_an_index_whose_entries_is_a_list_is_refused_as_helm_repo_add_refuses_it(
    helm: list[str], chart_server: ChartServer
) -> None:
    (chart_server.directory / "index.yaml").write_text("apiVersion: v1\nentries: [1, 2]\n")

    added = tool(*helm, "repo", "add", "broken", chart_server.url)

    assert added.returncode != 0
    assert "cannot unmarshal array into Go struct field IndexFile.entries" in added.stderr


BILLION_LAUGHS = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{this}: &{this} [{', '.join([f'*{last}'] * 9)}]\n"
    for last, this in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize("fast", [True, False], ids=["yaml-rs", "pyyaml"])
@pytest.mark.parametrize(
    "text", [BILLION_LAUGHS, "x: " + "[" * 5000 + "]" * 5000 + "\n"], ids=["bomb", "deep"]
)
def test_both_index_parsers_refuse_an_alias_bomb_and_deep_nesting_at_once(text: str, fast: bool) -> None:
    pytest.importorskip("yaml_rs")
    started = time.perf_counter()

    with pytest.raises(UpstreamError, match=r"index\.yaml: the index"):
        parse_index("index.yaml", f"apiVersion: v1\nentries: {{}}\n{text}".encode(), fast=fast)

    assert time.perf_counter() - started < 1


def test_with_dependencies_sees_a_v1_charts_requirements_locally_as_over_http(
    helm: list[str], chart_server: ChartServer, emulator: Emulator, pytester: pytest.Pytester, write_spec, run
) -> None:
    # given redis on an HTTP repository, and a v1 chart that requires it, in a local directory and,
    # indexed by `helm repo index`, on the HTTP repository
    for version in ("17.0.0", "17.3.1"):
        chart_server.add("redis", version)
    requirements = f"dependencies:\n- {{name: redis, version: ^17.1.0, repository: '{chart_server.url}'}}\n"
    app = package_chart(
        pytester.path / "c", "app", "1.0.0", apiVersion="v1", files={"app/requirements.yaml": requirements}
    )
    shutil.copy(app.path, chart_server.directory)
    assert tool(*helm, "repo", "index", str(chart_server.directory)).returncode == 0

    for repo in ("./c", chart_server.url):
        write_spec(spec(["1.0.0"], repo=repo).replace("versions:", "with_dependencies: true\n    versions:"))

        collected = run("--sync", "--collect-only", "-q", "mirror.yaml")

        # then both see redis 17.3.1 as an item, as helm would pick it
        collected.stdout.fnmatch_lines(["mirror.yaml::redis::17.3.1"])


def test_an_archive_found_once_is_read_from_inside_and_its_digest_is_its_own(tmp_path: Path) -> None:
    chart = package_chart(tmp_path / "repo" / "sub", "app", "1.0.0")
    (tmp_path / "repo" / "stable.tgz").symlink_to(chart.path)

    release = LocalRepository(tmp_path / "repo", None).release("app", "1.0.0")  # type: ignore[arg-type]

    assert release.digest == "sha256:" + hashlib.sha256(chart.path.read_bytes()).hexdigest()
