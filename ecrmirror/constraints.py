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
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import semver

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


class ConstraintError(ValueError):
    """A version constraint string does not parse."""


def parse_version(text: str) -> semver.Version | None:
    """A chart version as Masterminds reads it (a `v` prefix and missing parts allowed), or None."""
    try:
        return semver.Version.parse(text.strip().removeprefix("v"), optional_minor_and_patch=True)
    except ValueError:
        return None


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
        raise ConstraintError(f"{text.strip()!r} is not a version comparison")
    major, minor, patch = match["major"], match["minor"], match["patch"]
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
    return _Comparison(
        match["op"] or "", semver.Version.parse(core + suffix), minor_wild, patch_wild, any_wild
    )


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
            raise ConstraintError(f"{text!r} has an empty alternative around ||")
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
