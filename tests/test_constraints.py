"""Version constraints behave as helm's (Masterminds semver v3): its documented examples, as a table."""

from __future__ import annotations

import pytest

from ecrmirror.constraints import (
    MAX_NUMBER,
    ConstraintError,
    parse_constraint,
    parse_version,
    select,
    unreadable,
    version_problem,
)
from ecrmirror.ecr_rules import tag_is_mutable

# (constraint, version, allowed): Masterminds' README examples and the prerelease rules helm uses.
CASES = [
    # basic comparisons, comma or space separated, || alternatives
    (">= 1.2.3", "1.2.3", True),
    (">= 1.2.3", "1.2.2", False),
    (">= 1.2 < 3.0.0 || >= 4.2.3", "2.9.9", True),
    (">= 1.2 < 3.0.0 || >= 4.2.3", "3.5.0", False),
    (">= 1.2 < 3.0.0 || >= 4.2.3", "4.2.3", True),
    (">=7.1.0, <8.0.0", "7.9.2", True),
    (">=7.1.0, <8.0.0", "8.0.0", False),
    ("!=1.2.3", "1.2.4", True),
    ("!=1.2.3", "1.2.3", False),
    ("=1.2.3", "1.2.3", True),
    ("1.2.3", "1.2.4", False),
    # hyphen ranges
    ("1.2 - 1.4.5", "1.4.5", True),
    ("1.2 - 1.4.5", "1.4.6", False),
    ("2.3.4 - 4.5", "4.5.0", True),
    ("2.3.4 - 4.5", "2.3.3", False),
    # wildcards
    ("1.2.x", "1.2.9", True),
    ("1.2.x", "1.3.0", False),
    (">= 1.2.x", "1.2.0", True),
    ("<= 2.x", "2.9.9", True),
    ("<= 2.x", "3.0.0", False),
    ("*", "0.0.1", True),
    ("7.x", "7.9.2", True),
    ("7.x", "8.0.0", False),
    ("7", "7.3.5", True),  # a partial version is a wildcard, as `helm pull --version 7` does
    ("!=4.x", "4.1.0", False),
    ("!=4.x", "5.0.0", True),
    (">11", "11.1.0", False),
    (">11.1", "11.1.5", False),
    (">11.1", "11.2.0", True),
    # tilde
    ("~1.2.3", "1.2.9", True),
    ("~1.2.3", "1.3.0", False),
    ("~1.2.3", "1.2.2", False),
    ("~1", "1.9.0", True),
    ("~1", "2.0.0", False),
    ("~2.3", "2.3.7", True),
    ("~2.3", "2.4.0", False),
    ("~7.9", "7.9.2", True),
    ("~1.x", "1.5.0", True),
    ("~>1.2.3", "1.2.5", True),
    # caret
    ("^1.2.3", "1.9.9", True),
    ("^1.2.3", "2.0.0", False),
    ("^1.2.x", "1.2.0", True),
    ("^2.3", "2.9.0", True),
    ("^2.x", "3.0.0", False),
    ("^7", "7.9.2", True),
    ("^7", "8.0.0", False),
    ("^0.2.3", "0.2.9", True),
    ("^0.2.3", "0.3.0", False),
    ("^0.2", "0.2.0", True),
    ("^0.0.3", "0.0.3", True),
    ("^0.0.3", "0.0.4", False),
    ("^0.0", "0.0.9", True),
    ("^0.0", "0.1.0", False),
    ("^0", "0.9.9", True),
    ("^0", "1.0.0", False),
    # prereleases: skipped unless the group names one
    (">=1.2.3", "1.3.0-rc.1", False),
    (">=1.2.3-0", "1.3.0-rc.1", True),
    (">=1.2.3-0", "1.2.3-alpha", True),
    ("^7", "7.10.0-rc.1", False),
    (">=1.2.3-0 <2.0.0-0", "1.5.0-beta.2", True),
    (">= 1.2.3-beta < 2 || >= 3", "1.5.0-beta.2", False),  # `< 2` names none: helm says no
    (">= 1.2.3-beta < 2 || >= 3", "3.1.0-rc.1", False),
    ("*", "1.0.0-rc.1", False),
    (">=1.2.3-BETA", "1.2.3-alpha", True),  # ASCII order, as the spec says: uppercase first
    # build metadata is ignored in comparisons
    ("=1.2.3", "1.2.3+build.5", True),
    (">1.2.3", "1.2.3+build.5", False),
    ("^1.0.0", "1.0.0+build.5", True),
    # a v prefix is read, non-semver versions never match
    (">=1.0.0", "v1.2.0", True),
    (">=1.0.0", "latest", False),
]


@pytest.mark.parametrize(("constraint", "version", "allowed"), CASES)
def test_a_constraint_allows_what_helm_allows(constraint: str, version: str, allowed: bool) -> None:
    assert parse_constraint(constraint).allows(version) is allowed


def test_include_prereleases_is_helms_devel() -> None:
    assert parse_constraint("^7").allows("7.10.0-rc.1", include_prereleases=True)
    assert not parse_constraint("^7").allows("8.0.0-rc.1", include_prereleases=True)


AVAILABLE = ["7.1.1", "7.1.2", "7.3.0", "7.10.0-rc.1", "7.9.2", "7.9.1", "8.0.0", "6.9.9+build.1", "junk"]


def test_select_orders_newest_first_and_applies_latest_and_exclude() -> None:
    constraint = parse_constraint(">=7.1.0 <8.0.0")

    assert select(AVAILABLE, constraint) == ["7.9.2", "7.9.1", "7.3.0", "7.1.2", "7.1.1"]
    assert select(AVAILABLE, constraint, latest=2) == ["7.9.2", "7.9.1"]
    assert select(AVAILABLE, constraint, latest=2, exclude=["7.9.2"]) == ["7.9.1", "7.3.0"]
    assert select(AVAILABLE, constraint, include_prereleases=True, latest=1) == ["7.10.0-rc.1"]
    assert select(AVAILABLE, parse_constraint("<7")) == ["6.9.9+build.1"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        ">= banana",
        "1.2.3 ||",
        "~>",
        ">=1.2.3 <",
        # before: ValueError from int() or python-semver, a traceback for a spec or a dependency
        ">=1x",
        "1.x2",
        "**",
        ">=" + "1" * 5000,
        f">={MAX_NUMBER + 1}",
        ">=1.0.0-01",
    ],
)
def test_a_constraint_that_does_not_parse_is_an_error(text: str) -> None:
    with pytest.raises(ConstraintError):
        parse_constraint(text)


# (version, what version_problem says, or None): the one rule for every version that is mirrored.
VERSIONS = [
    ("1.2.3", None),
    ("v1.2.3", None),
    ("1.2", None),
    ("7", None),
    ("1.0.0-rc.1+build.5", None),
    (f"{MAX_NUMBER}.0.0", None),
    ("1.0.0-" + "a" * 122, None),  # 128 characters
    ("1.0.0-" + "a" * 123, "cannot be an OCI tag: it is 129 characters long, and a tag is at most 128"),
    ("", "cannot be an OCI tag: it is empty"),
    (
        "\u0661.\u0662.\u0663",
        "cannot be an OCI tag: it holds the non-ASCII character U+0661 (ARABIC-INDIC DIGIT ONE)",
    ),
    (
        "\uff11.\uff10.\uff10",
        "cannot be an OCI tag: it holds the non-ASCII character U+FF11 (FULLWIDTH DIGIT ONE)",
    ),
    ("1" * 5000 + ".0.0", "cannot be an OCI tag: it is 5004 characters long, and a tag is at most 128"),
    ("1.0.0\x1b[31m", "cannot be an OCI tag: it holds the control character U+001B"),
    ("1.0.0 ", "cannot be an OCI tag: it holds whitespace (U+0020)"),
    (" 1.0.0", "cannot be an OCI tag: it holds whitespace (U+0020)"),
    ("1.0.0\n", "cannot be an OCI tag: it holds the control character U+000A"),
    ("1.0.0\u202e", "cannot be an OCI tag: it holds the invisible character U+202E"),
    ("1.0.0/../x", "cannot be an OCI tag: it holds / or .., which make a path"),
    ("../1.0.0", "cannot be an OCI tag: it holds / or .., which make a path"),
    (
        "-1.0.0",
        "cannot be an OCI tag: a tag is letters, digits, . _ and - (a chart version's + becomes _), "
        "not starting with . or -",
    ),
    ("latest", "is not a semantic version as helm reads it"),
    ("01.0.0", "is not a semantic version as helm reads it"),
    ("1.0.0-01", "is not a semantic version as helm reads it"),
    (f"{MAX_NUMBER + 1}.0.0", "is not a semantic version as helm reads it"),
    ("1.0.0+a+b", "is not a semantic version as helm reads it"),
]


@pytest.mark.parametrize(("version", "problem"), VERSIONS)
def test_a_version_is_mirrored_only_if_helm_reads_it_and_ecr_can_hold_it(
    version: str, problem: str | None
) -> None:
    found = version_problem(version)
    if problem is None:
        assert found is None
        assert parse_version(version) is not None
    else:
        assert found is not None
        assert found.startswith(problem), found


def test_versions_helm_cannot_read_are_never_chosen() -> None:
    listed = ["1.0.0", "1.0.0 ", "1.0.0\n", "\u0661.\u0662.\u0663", "9" * 5000 + ".0.0", "2.0.0\x1b[31m"]

    assert select(listed, parse_constraint(">=0.0.0")) == ["1.0.0"]
    # the shortest first: a message names the first few
    assert unreadable(listed) == [
        "\u0661.\u0662.\u0663",
        "1.0.0\n",
        "1.0.0 ",
        "2.0.0\x1b[31m",
        "9" * 5000 + ".0.0",
    ]


@pytest.mark.parametrize(
    ("mutability", "exclusions", "tag", "mutable"),
    [
        ("IMMUTABLE", (), "1.0.0", False),
        ("MUTABLE", (), "1.0.0", True),
        ("IMMUTABLE_WITH_EXCLUSION", ("1.*",), "1.0.0", True),
        ("IMMUTABLE_WITH_EXCLUSION", ("1.*",), "2.0.0", False),
        ("MUTABLE_WITH_EXCLUSION", ("*.sig",), "sha256-ab.sig", False),
        ("MUTABLE_WITH_EXCLUSION", ("*.sig",), "1.0.0", True),
        (None, (), "1.0.0", True),  # unknown: assume a PUT could move it
    ],
)
def test_which_tags_a_put_could_move(
    mutability: str | None, exclusions: tuple[str, ...], tag: str, mutable: bool
) -> None:
    assert tag_is_mutable(mutability, exclusions, tag) is mutable
