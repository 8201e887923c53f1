"""Chart version constraints with helm's semantics (Masterminds semver v3), on python-semver.

No maintained Python library implements Masterminds' rules (npm's differ on prereleases and on
`!=` with wildcards; PEP 440 is another language altogether), so the constraint grammar is
written here, on python-semver's maintained version parsing and precedence. The behaviours are
Masterminds' documented ones, tested against its README's examples in tests/test_constraints.py:

- a comparison string is `||`-separated groups of space- or comma-separated comparisons that
  must all hold; `A - B` is `>= A, <= B`;
- operators `=` (or none), `!=`, `>`, `<`, `>=`, `=>`, `<=`, `=<`, `~`, `~>`, `^`;
- `x`, `X` and `*` are wildcards, and a missing minor or patch counts as one;
- a prerelease version passes a comparison only when that comparison names a prerelease
  (`>=1.2.3-0`), or when prereleases are asked for (our `include_prereleases: true`);
- build metadata is ignored in comparisons.

A version is read as Masterminds' `NewVersion` reads it (helm's loader drops index entries it
refuses): the whole string, ASCII digits, each number at most 2^64-1, no surrounding whitespace.
`version_problem` is the one rule every chart version meets before it is mirrored, whether a spec
lists it, a constraint chooses it from an upstream's listing, or a chart names it as a dependency:
helm reads it, and ECR can hold it as a tag. A listed version that helm cannot read is never
chosen by a constraint (as helm would not choose it); one that helm would choose but ECR cannot hold
is an error for whoever chose it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import semver

from ecrmirror.ecr_rules import oci_tag_problem

_PART = r"[0-9xX*]+"
_VERSION = (
    rf"v?(?P<major>{_PART})(?:\.(?P<minor>{_PART}))?(?:\.(?P<patch>{_PART}))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_OPERATOR = r"!=|>=|=>|<=|=<|~>|>|<|=|~|\^"
_COMPARISON = re.compile(rf"^\s*(?P<op>{_OPERATOR})?\s*{_VERSION}\s*$")
_HYPHEN = re.compile(r"(?P<low>v?[0-9xX*][^\s,|]*)\s+-\s+(?P<high>v?[0-9xX*][^\s,|]*)")
_SPLIT = re.compile(r"[\s,]+")


# Masterminds' own grammar (ASCII only: Go's regexp classes are), numbers without leading zeros as
# python-semver requires them.
_NUMBER = r"0|[1-9][0-9]*"
_SEMVER = re.compile(
    rf"v?(?P<major>{_NUMBER})(?:\.(?P<minor>{_NUMBER}))?(?:\.(?P<patch>{_NUMBER}))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
MAX_NUMBER = 2**64 - 1  # Masterminds parses each number as a uint64
_MAX_DIGITS = len(str(MAX_NUMBER))  # checked before int(), which refuses more than 4,300 digits
_SHOWN = 40  # characters of a version a message quotes


class ConstraintError(ValueError):
    """A version constraint string does not parse."""


def parse_version(text: str) -> semver.Version | None:
    """A chart version as Masterminds reads it (a `v` prefix and missing parts allowed), or None."""
    match = _SEMVER.fullmatch(text)
    if match is None or not all(_fits(match[part]) for part in ("major", "minor", "patch")):
        return None
    try:
        return semver.Version.parse(text.removeprefix("v"), optional_minor_and_patch=True)
    except ValueError:  # a prerelease number with a leading zero, which Masterminds refuses too
        return None


def _fits(number: str | None) -> bool:
    return number is None or (len(number) <= _MAX_DIGITS and int(number) <= MAX_NUMBER)


def version_problem(version: str) -> str | None:
    """Why `version` cannot be mirrored, in words that follow "version X of CHART"; None if it can.

    The one rule for every chart version: ECR can hold it as a tag (with `+` as `_`, as helm
    pushes it), and helm reads it as a semantic version."""
    problem = oci_tag_problem(version.replace("+", "_"))
    if problem is not None:
        return f"cannot be an OCI tag: {problem}"
    if parse_version(version) is None:
        return (
            "is not a semantic version as helm reads it: MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD], "
            f"numbers without leading zeros and at most {MAX_NUMBER}"
        )
    return None


def unreadable(versions: Iterable[str]) -> list[str]:
    """The versions among `versions` that helm does not read, so that no constraint chooses them."""
    return sorted({v for v in versions if parse_version(v) is None}, key=lambda v: (len(v), v))


def shown(version: str) -> str:
    """`version` as a message quotes it: escapes visible, and cut short when it is long."""
    if len(version) <= _SHOWN:
        return repr(version)
    return f"{version[:_SHOWN]!r}… ({len(version)} characters)"


def _wild(part: str | None) -> bool:
    return part is None or part in ("x", "X", "*")


@dataclass(frozen=True)
class _Comparison:
    op: str
    version: semver.Version  # wildcards as 0
    minor_wild: bool  # 1, 1.x
    patch_wild: bool  # 1.2, 1.2.x
    any_wild: bool  # *, x, or one of the above

    def allows(self, v: semver.Version, prereleases: bool) -> bool:
        if v.prerelease and not prereleases:
            return False
        c = self.version
        if self.op in ("", "="):
            return self._tilde(v) if self.any_wild else v.compare(c) == 0
        if self.op == "!=":
            if not self.any_wild:
                return v.compare(c) != 0
            if v.major != c.major:
                return True
            if self.minor_wild:
                return False
            if v.minor != c.minor:
                return True
            return bool((v.prerelease or c.prerelease) and v.prerelease != c.prerelease)
        if self.op == ">":
            if not self.any_wild:
                return v.compare(c) > 0
            if v.major != c.major:
                return v.major > c.major
            if self.minor_wild:
                return False
            return v.minor > c.minor
        if self.op == "<":
            return v.compare(c) < 0
        if self.op in (">=", "=>"):
            return v.compare(c) >= 0
        if self.op in ("<=", "=<"):
            if not self.any_wild:
                return v.compare(c) <= 0
            if v.major > c.major:
                return False
            return not (v.major == c.major and v.minor > c.minor and not self.minor_wild)
        if self.op in ("~", "~>"):
            return self._tilde(v)
        return self._caret(v)

    def _tilde(self, v: semver.Version) -> bool:
        c = self.version
        if v.compare(c) < 0:
            return False
        if (c.major, c.minor, c.patch) == (0, 0, 0) and not self.minor_wild and not self.patch_wild:
            return True  # ~0.0.0 and * accept everything
        if v.major != c.major:
            return False
        return self.minor_wild or v.minor == c.minor

    def _caret(self, v: semver.Version) -> bool:
        c = self.version
        if v.compare(c) < 0:
            return False
        if c.major > 0 or self.minor_wild:
            return v.major == c.major
        if v.major > 0:
            return False
        if c.minor > 0 or self.patch_wild:
            return v.minor == c.minor
        if v.minor > 0:
            return False
        return v.patch == c.patch


def _comparison(text: str) -> _Comparison:
    match = _COMPARISON.match(text)
    if match is None:
        raise ConstraintError(f"{shown(text.strip())} is not a version comparison")
    major, minor, patch = match["major"], match["minor"], match["patch"]
    for part in (major, minor, patch):
        if _wild(part):
            continue
        if not part.isdigit():  # `1x`, `**`: the part's characters, but neither a number nor a wildcard
            raise ConstraintError(f"{shown(text.strip())} is not a version comparison")
        if not _fits(part):
            raise ConstraintError(
                f"{shown(text.strip())} has a number larger than {MAX_NUMBER}, which helm cannot read"
            )
    suffix = (f"-{match['pre']}" if match["pre"] else "") + (f"+{match['build']}" if match["build"] else "")
    minor_wild = patch_wild = any_wild = False
    if _wild(major):
        core, any_wild = "0.0.0", True
    elif _wild(minor):
        core, minor_wild, any_wild = f"{int(major)}.0.0", True, True
    elif _wild(patch):
        core, patch_wild, any_wild = f"{int(major)}.{int(minor)}.0", True, True
    else:
        core = f"{int(major)}.{int(minor)}.{int(patch)}"
    try:
        version = semver.Version.parse(core + suffix)
    except ValueError:  # a prerelease number with a leading zero
        raise ConstraintError(f"{shown(text.strip())} is not a version comparison") from None
    return _Comparison(match["op"] or "", version, minor_wild, patch_wild, any_wild)


@dataclass(frozen=True)
class Constraint:
    """A parsed constraint: OR of AND-groups of comparisons."""

    text: str
    groups: tuple[tuple[_Comparison, ...], ...]

    def allows(self, version: str, include_prereleases: bool = False) -> bool:
        parsed = parse_version(version)
        if parsed is None:
            return False  # helm skips versions that are not semver
        # As helm 3 decides it (checked against helm 3.17 in the tests): a prerelease passes a
        # comparison only when that comparison names a prerelease itself. Masterminds' README
        # describes a per-group rule; helm's behaviour is what users see, so it wins.
        return any(
            all(c.allows(parsed, include_prereleases or bool(c.version.prerelease)) for c in group)
            for group in self.groups
        )


def parse_constraint(text: str) -> Constraint:
    """Parse a Masterminds constraint; ConstraintError names the part that does not parse."""
    if not text.strip():
        raise ConstraintError("the constraint is empty")
    rewritten = _HYPHEN.sub(lambda m: f">={m['low']} <={m['high']}", text)
    groups: list[tuple[_Comparison, ...]] = []
    for alternative in rewritten.split("||"):
        tokens = [t for t in _SPLIT.split(alternative.strip()) if t]
        # An operator may stand apart from its version: `>= 1.2`.
        merged: list[str] = []
        for token in tokens:
            if merged and re.fullmatch(_OPERATOR, merged[-1]):
                merged[-1] += token
            else:
                merged.append(token)
        if not merged:
            raise ConstraintError(f"{shown(text)} has an empty alternative around ||")
        groups.append(tuple(_comparison(token) for token in merged))
    return Constraint(text.strip(), tuple(groups))


def newest_first(versions: Iterable[str]) -> list[str]:
    """Semver versions, newest first (equal precedence: the later string first, for stability)."""
    parsed = [(v, parse_version(v)) for v in set(versions)]
    valid = [(v, p) for v, p in parsed if p is not None]
    ordered = sorted(valid, key=lambda vp: (_Key(vp[1]), vp[0]), reverse=True)
    return [v for v, _ in ordered]


class _Key:
    """Sort key with semver precedence (python-semver compares, it does not order tuples)."""

    def __init__(self, version: semver.Version) -> None:
        self.version = version

    def __lt__(self, other: _Key) -> bool:
        return self.version.compare(other.version) < 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and self.version.compare(other.version) == 0


def select(
    available: Iterable[str],
    constraint: Constraint,
    *,
    include_prereleases: bool = False,
    latest: int | None = None,
    exclude: Iterable[str] = (),
) -> list[str]:
    """The versions that `constraint` allows, minus `exclude`, newest first, at most `latest`."""
    excluded = set(exclude)
    chosen = [
        v for v in newest_first(available) if v not in excluded and constraint.allows(v, include_prereleases)
    ]
    return chosen[:latest] if latest is not None else chosen
