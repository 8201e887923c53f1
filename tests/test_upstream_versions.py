"""Versions and chart names that an upstream hands over meet the rules a spec's meet: refused where
they are read, never pushed, never a traceback.

A version from an upstream's listing, chosen by a constraint or named by a dependency, is mirrored
only when helm reads it as a semantic version (Masterminds: ASCII digits, numbers up to 2^64-1, the
whole string) and ECR can hold it as a tag (128 characters of [A-Za-z0-9_.-], `+` as `_`). A listed
version that helm cannot read is never chosen by a constraint (helm would not choose it either),
and the run says so in a note; one that helm would choose but ECR cannot hold fails the collection,
naming the spec's line. A dependency whose name or version cannot be mirrored fails the collection,
naming the chart version that declares it.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from tools import says_in_order

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator

LONG = "1.2.0+" + "b" * 194  # 200 characters, semver that helm reads, but no OCI tag
HUGE = "1" * 5000 + ".0.0"  # int() refuses more than 4,300 digits; Masterminds more than 20
ARABIC = "\u0661.\u0662.\u0663"  # Python's \d and int() take Arabic-Indic digits; Go's do not
FULLWIDTH = "\uff11.\uff10.\uff10"
ESCAPE = "1.0.0\x1b[31m"

# Listed next to app 1.0.0, which '>=1.0.0' chooses: what it never chooses (case -> the version).
SKIPPED = {
    "upstream versions: Unicode digits": ARABIC,
    "upstream versions: fullwidth digits": FULLWIDTH,
    "upstream versions: a 5,000-digit number": HUGE,
    "upstream versions: an escape sequence": ESCAPE,
    "upstream versions: a trailing space": "1.0.0 ",
    "upstream versions: a path": "1.0.0/../x",
    "upstream versions: a newline": "1.0.0\n",
}
# Declared by app 1.0.0 as the exact version of its dependency redis, which redis's index lists.
DEPENDENCY_VERSIONS = {
    "dependencies: a version with an escape sequence": ESCAPE,
    "dependencies: a version with a trailing space": "1.0.0 ",
    "dependencies: a version with a path": "1.0.0/../x",
    "dependencies: a version with a newline": "1.0.0\n",
    "dependencies: a version in Unicode digits": ARABIC,
    "dependencies: a version in fullwidth digits": FULLWIDTH,
    "dependencies: a 5,000-digit version": HUGE,
    "dependencies: a 200-character version": LONG,
}
# Declared by app 1.0.0 as the name of a dependency from the same repository.
DEPENDENCY_NAMES = {
    "dependencies: an uppercase chart name": "Redis",
    "dependencies: a chart name with ../": "../../etc",
    "dependencies: a repository name over 256 characters": "r" * 250,  # mirror/ + 250 = 257
}
SKIPPED_NOTE = (
    "note: mirror.yaml::app::1.0.0: http://…/ lists 1 version(s) of app that helm does not read as "
    "semantic versions, which '>=1.0.0' never chooses: "
)
DEPENDS = "mirror.yaml:6: app 1.0.0 depends on redis "
NO_TAG = "from http://…/, but that version cannot be an OCI tag: "

# What each case's message says (… stands for anything: a port, the rest of a long string). The
# docs' table (docs/hostile-input.md) has a row for each.
HOSTILE_CASES: dict[str, str] = {
    "upstream versions: Unicode digits": SKIPPED_NOTE + "'\u0661.\u0662.\u0663'",
    "upstream versions: fullwidth digits": SKIPPED_NOTE + "'\uff11.\uff10.\uff10'",
    "upstream versions: a 5,000-digit number": SKIPPED_NOTE + "'1111111111…'… (5004 characters)",
    "upstream versions: an escape sequence": SKIPPED_NOTE + "'1.0.0\\x1b[31m'",
    "upstream versions: a trailing space": SKIPPED_NOTE + "'1.0.0 '",
    "upstream versions: a path": SKIPPED_NOTE + "'1.0.0/../x'",
    "upstream versions: a newline": SKIPPED_NOTE + "'1.0.0\\n'",
    "upstream versions: 200 characters, chosen by a constraint": (
        "mirror.yaml:8: '>=1.0.0' chooses app '1.2.0+bbb…'… (200 characters) " + NO_TAG + "it is 200 "
        "characters long, and a tag is at most 128. Add it to exclude (or narrow the constraint); "
        "nothing was pushed."
    ),
    "upstream versions: a 5,000-digit number next to a listed version that is missing": (
        "app 9.9.9 is not in http://…/index.yaml; nearest versions there: 1.0.0. Fix the version in the spec."
    ),
    "constraints: a 5,000-digit number in a spec": (
        "mirror.yaml:8: versions '>=111… is not a version constraint: '>=111…'… (5002 characters) has a "
        "number larger than 18446744073709551615, which helm cannot read"
    ),
    "constraints: a part that is no number": (
        "mirror.yaml:8: versions '>=1x' is not a version constraint: '>=1x' is not a version comparison"
    ),
    "dependencies: a version with an escape sequence": (
        DEPENDS + "'1.0.0\\x1b[31m' " + NO_TAG + "it holds the control character U+001B. Nothing was "
        "pushed: mirror app without with_dependencies, or ask its publisher to fix the version."
    ),
    "dependencies: a version with a trailing space": DEPENDS
    + "'1.0.0 ' "
    + NO_TAG
    + "it holds whitespace (U+0020)",
    "dependencies: a version with a path": DEPENDS
    + "'1.0.0/../x' "
    + NO_TAG
    + "it holds / or .., which make a path",
    "dependencies: a version with a newline": (
        DEPENDS + "'1.0.0\\n' " + NO_TAG + "it holds the control character U+000A"
    ),
    "dependencies: a version in Unicode digits": (
        DEPENDS + "'\u0661.\u0662.\u0663' " + NO_TAG + "it holds the non-ASCII character U+0661 "
        "(ARABIC-INDIC DIGIT ONE)"
    ),
    "dependencies: a version in fullwidth digits": (
        DEPENDS + "'\uff11.\uff10.\uff10' " + NO_TAG + "it holds the non-ASCII character U+FF11 "
        "(FULLWIDTH DIGIT ONE)"
    ),
    "dependencies: a 5,000-digit version": (
        DEPENDS + "'1111111111…'… (5004 characters) " + NO_TAG + "it is 5004 characters long, and a tag "
        "is at most 128"
    ),
    "dependencies: a 200-character version": (
        DEPENDS + "'1.2.0+bbb…'… (200 characters) " + NO_TAG + "it is 200 characters long"
    ),
    "dependencies: a 200-character version chosen by a constraint": (
        DEPENDS + "'1.2.0+bbb…'… (200 characters) " + NO_TAG + "it is 200 characters long"
    ),
    "dependencies: a 5,000-digit number in a constraint": (
        "mirror.yaml:6: app 1.0.0 declares dependency redis '>=111…'… (5002 characters): '>=111…'… (5002 "
        "characters) has a number larger than 18446744073709551615, which helm cannot read"
    ),
    "dependencies: an uppercase chart name": (
        "mirror.yaml:6: app 1.0.0 depends on a chart named 'Redis' from http://…/, which is not a chart "
        "name (lowercase letters and digits, with . _ - between them). Nothing was pushed: mirror app "
        "without with_dependencies, or ask its publisher to fix the name."
    ),
    "dependencies: a chart name with ../": (
        "mirror.yaml:6: app 1.0.0 depends on a chart named '../../etc' from http://…/, which is not a "
        "chart name"
    ),
    "dependencies: a repository name over 256 characters": (
        "mirror.yaml:6: app 1.0.0 depends on a chart named 'rrr…'… (250 characters) from http://…/, which "
        "cannot be an ECR repository name as 'mirror/rrr…'… (257 characters): it is 257 characters "
        "long, and ECR takes 2 to 256"
    ),
}


def says(output: str, case: str) -> None:
    """`output` says what HOSTILE_CASES gives for `case`, where … stands for anything."""
    says_in_order(output, HOSTILE_CASES[case])


def list_more(server: ChartServer, name: str, versions: list[str]) -> None:
    """Add index entries of `name` at `versions`, each a copy of its first entry (the archive
    behind them is never downloaded)."""
    path = server.directory / "index.yaml"
    index = yaml.safe_load(path.read_text())
    first = index["entries"][name][0]
    index["entries"][name] += [{**first, "version": version} for version in versions]
    path.write_text(yaml.safe_dump(index, width=float("inf")))


def range_spec(server: ChartServer, versions: str, extra: str = "") -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: {server.url}\n    versions: '{versions}'\n{extra}"
    )


def dependent_spec(server: ChartServer) -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: {server.url}\n    versions: ['1.0.0']\n"
        "    with_dependencies: true\n"
    )


def pushed_manifests(emulator: Emulator) -> list[str]:
    return [r.path for r in emulator.writes() if r.kind == "registry" and "/manifests/" in r.path]


def refused_at_collection(result: pytest.RunResult, emulator: Emulator) -> str:
    """The run stopped at collection with one plain message and wrote nothing: its output."""
    assert result.ret == 2, result.stdout.str()
    result.stdout.fnmatch_lines(["*1 error*"])
    output = result.stdout.str()
    assert "Traceback" not in output
    assert emulator.writes() == []
    return output


# -- a spec's constraint over an upstream's listing ---------------------------------------------------
@pytest.mark.parametrize("case", SKIPPED)
def test_a_version_helm_cannot_read_is_never_chosen_and_the_run_says_so(
    case: str, chart_server: ChartServer, emulator: Emulator, write_spec: Any, run: Any
) -> None:
    # given an index that lists app 1.0.0 and a version helm cannot read, which a constraint
    # would choose if it read it (the 5,000-digit one would be the newest)
    chart_server.add("app", "1.0.0")
    chart_server.publish()
    list_more(chart_server, "app", [SKIPPED[case]])
    write_spec(range_spec(chart_server, ">=1.0.0"))

    # when the spec is synced
    result = run("--sync", "-v", "mirror.yaml")

    # then app 1.0.0 is mirrored, the other is never chosen, and a note names it
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["mirror.yaml::app::1.0.0 PUSHED*"])
    output = result.stdout.str()
    says(output, case)
    assert "Traceback" not in output
    assert "\x1b[31m" not in output  # named with its escapes visible, never written as it is
    assert pushed_manifests(emulator) == ["/v2/mirror/app/manifests/1.0.0"]


def test_versions_helm_cannot_read_are_named_in_one_note_for_the_newest_chosen_version(
    chart_server: ChartServer, emulator: Emulator, write_spec: Any, run: Any
) -> None:
    for version in ("1.0.0", "1.1.0"):
        chart_server.add("app", version)
    chart_server.publish()
    list_more(chart_server, "app", list(SKIPPED.values()))
    write_spec(range_spec(chart_server, ">=1.0.0"))

    result = run("--sync", "-v", "mirror.yaml")

    result.assert_outcomes(passed=3)
    notes = [line for line in result.outlines if line.startswith("note: ")]
    assert len(notes) == 1, notes
    assert notes[0].startswith("note: mirror.yaml::app::1.1.0: ")
    assert "lists 7 version(s) of app that helm does not read as semantic versions" in notes[0]
    assert notes[0].endswith("'1.0.0\\x1b[31m' and 2 more")  # the shortest five, escapes visible
    assert sorted(pushed_manifests(emulator)) == [
        "/v2/mirror/app/manifests/1.0.0",
        "/v2/mirror/app/manifests/1.1.0",
    ]


def test_the_nearest_versions_of_a_missing_one_name_none_that_cannot_be_mirrored(
    chart_server: ChartServer, emulator: Emulator, write_spec: Any, run: Any
) -> None:
    # given the spec lists app 9.9.9, which the index lacks; it lists 1.0.0 and hostile versions
    chart_server.add("app", "1.0.0")
    chart_server.publish()
    list_more(chart_server, "app", [HUGE, "9.9.8\x1b[31m"])
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: ['9.9.9']\n"
    )

    result = run("--sync", "-v", "mirror.yaml")

    # then the version (and its repository, which nothing would fill) fails plainly, naming only
    # what could be mirrored as its neighbours
    result.assert_outcomes(failed=2)
    says(
        result.stdout.str(),
        "upstream versions: a 5,000-digit number next to a listed version that is missing",
    )
    assert "Traceback" not in result.stdout.str()
    assert pushed_manifests(emulator) == []


def test_a_version_helm_would_choose_but_ecr_cannot_hold_fails_the_collection_until_excluded(
    chart_server: ChartServer, emulator: Emulator, write_spec: Any, run: Any
) -> None:
    # given app 1.0.0 and a 200-character version (semver, so helm would choose it as the newest)
    chart_server.add("app", "1.0.0")
    chart_server.publish()
    list_more(chart_server, "app", [LONG])
    write_spec(range_spec(chart_server, ">=1.0.0"))

    # when the spec is synced, then collection fails, naming the spec's line and the fix
    output = refused_at_collection(run("--sync", "mirror.yaml"), emulator)
    says(output, "upstream versions: 200 characters, chosen by a constraint")
    assert f"'>=1.0.0' chooses app {LONG[:40]!r}… (200 characters) from {chart_server.url}, " in output

    # and once the spec excludes it, the rest is mirrored
    write_spec(range_spec(chart_server, ">=1.0.0", f"    exclude: ['{LONG}']\n"))
    run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    assert pushed_manifests(emulator) == ["/v2/mirror/app/manifests/1.0.0"]


@pytest.mark.parametrize(
    ("case", "constraint"),
    [
        ("constraints: a 5,000-digit number in a spec", ">=" + "1" * 5000),
        ("constraints: a part that is no number", ">=1x"),
    ],
)
def test_a_constraint_that_helm_cannot_read_is_a_spec_error_not_a_traceback(
    case: str, constraint: str, chart_server: ChartServer, emulator: Emulator, write_spec: Any, run: Any
) -> None:
    chart_server.add("app", "1.0.0")
    chart_server.publish()
    write_spec(range_spec(chart_server, constraint))

    output = refused_at_collection(run("--sync", "mirror.yaml"), emulator)

    says(output, case)
    assert chart_server.requests == []


# -- dependencies -------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", DEPENDENCY_VERSIONS)
def test_a_dependency_version_that_cannot_be_mirrored_fails_the_collection_naming_its_parent(
    case: str, chart_server: ChartServer, emulator: Emulator, write_spec: Any, run: Any
) -> None:
    # given app 1.0.0 depends on redis at exactly a version that redis's index lists
    version = DEPENDENCY_VERSIONS[case]
    chart_server.add("redis", "1.0.0")
    chart_server.add(
        "app", "1.0.0", dependencies=[{"name": "redis", "version": version, "repository": chart_server.url}]
    )
    chart_server.publish()
    list_more(chart_server, "redis", [version])
    write_spec(dependent_spec(chart_server))

    output = refused_at_collection(run("--sync", "mirror.yaml"), emulator)

    says(output, case)
    assert f"from {chart_server.url}, but that version " in output
    assert "Nothing was pushed: mirror app without with_dependencies" in output


def test_a_dependency_constraint_that_chooses_a_version_ecr_cannot_hold_names_its_parent(
    chart_server: ChartServer, emulator: Emulator, write_spec: Any, run: Any
) -> None:
    chart_server.add("redis", "1.0.0")
    chart_server.add(
        "app", "1.0.0", dependencies=[{"name": "redis", "version": "^1", "repository": chart_server.url}]
    )
    chart_server.publish()
    list_more(chart_server, "redis", [LONG])
    write_spec(dependent_spec(chart_server))

    output = refused_at_collection(run("--sync", "mirror.yaml"), emulator)

    says(output, "dependencies: a 200-character version chosen by a constraint")


def test_a_dependency_constraint_skips_versions_helm_cannot_read(
    chart_server: ChartServer, emulator: Emulator, write_spec: Any, run: Any
) -> None:
    chart_server.add("redis", "1.0.0")
    chart_server.add(
        "app", "1.0.0", dependencies=[{"name": "redis", "version": "^1", "repository": chart_server.url}]
    )
    chart_server.publish()
    list_more(chart_server, "redis", list(SKIPPED.values()))
    write_spec(dependent_spec(chart_server))

    result = run("--sync", "-v", "mirror.yaml")

    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["mirror.yaml::redis::1.0.0 PUSHED*"])
    assert sorted(pushed_manifests(emulator)) == [
        "/v2/mirror/app/manifests/1.0.0",
        "/v2/mirror/redis/manifests/1.0.0",
    ]


def test_a_dependency_constraint_with_a_5000_digit_number_is_a_plain_error(
    chart_server: ChartServer, emulator: Emulator, write_spec: Any, run: Any
) -> None:
    chart_server.add("redis", "1.0.0")
    chart_server.add(
        "app",
        "1.0.0",
        dependencies=[{"name": "redis", "version": ">=" + "1" * 5000, "repository": chart_server.url}],
    )
    chart_server.publish()
    write_spec(dependent_spec(chart_server))

    output = refused_at_collection(run("--sync", "mirror.yaml"), emulator)

    says(output, "dependencies: a 5,000-digit number in a constraint")


@pytest.mark.parametrize("case", DEPENDENCY_NAMES)
def test_a_dependency_name_ecr_would_refuse_fails_the_collection_naming_its_parent(
    case: str, chart_server: ChartServer, emulator: Emulator, write_spec: Any, run: Any
) -> None:
    name = DEPENDENCY_NAMES[case]
    chart_server.add(
        "app", "1.0.0", dependencies=[{"name": name, "version": "1.0.0", "repository": chart_server.url}]
    )
    chart_server.publish()
    write_spec(dependent_spec(chart_server))

    output = refused_at_collection(run("--sync", "mirror.yaml"), emulator)

    says(output, case)
    assert f"from {chart_server.url}, which " in output
    assert chart_server.requests == ["/index.yaml"]  # the name went into no request
