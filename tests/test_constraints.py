"""Version constraints behave as helm's (Masterminds semver v3): its documented examples, as a table."""

from __future__ import annotations

import pytest

from ecrmirror.constraints import ConstraintError, parse_constraint, select

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


@pytest.mark.parametrize("text", ["", ">= banana", "1.2.3 ||", "~>", ">=1.2.3 <"])
def test_a_constraint_that_does_not_parse_is_an_error(text: str) -> None:
    with pytest.raises(ConstraintError):
        parse_constraint(text)
