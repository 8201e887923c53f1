"""What a merge request changes: the chart versions its specs add or remove, against its base commit.

The base is read with `git show BASE:PATH` (GitLab gives CI_MERGE_REQUEST_DIFF_BASE_SHA), so the
job needs that commit fetched. A constraint is resolved against the upstream for both sides, so a
changed constraint shows as the versions it adds and drops. Charts pulled in as dependencies are
derived from the declared ones and are not compared.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ecrmirror import selection
from ecrmirror.errors import EcrMirrorError, PlanError
from ecrmirror.run import Run
from ecrmirror.spec import Spec, parse_spec

GIT_TIMEOUT = 60  # seconds; a local repository answers in milliseconds


@dataclass(frozen=True)
class SpecChanges:
    spec: str  # as the run names it: relative to the rootdir
    added: tuple[str, ...]  # "gitlab 7.9.3", in the spec's order
    removed: tuple[str, ...]
    note: str = ""  # "new spec", "spec deleted"


def compare(run: Run, rootdir: Path, specs: Iterable[str], base: str) -> list[SpecChanges]:
    """Per spec, the chart versions added and removed since `base`; also specs deleted since then
    from the directories of `specs`."""
    top = Path(_git(rootdir, "rev-parse", "--show-toplevel").strip())
    _git(top, "cat-file", "-e", f"{base}^{{commit}}")  # a clear error for a commit not fetched
    names = list(dict.fromkeys(specs))
    directories = sorted({str((rootdir / name).parent.resolve().relative_to(top)) for name in names})
    deleted = _git(top, "diff", "--name-only", "--diff-filter=D", base, "--", *directories).split()
    for gone in deleted:
        name = str((top / gone).relative_to(rootdir)) if (top / gone).is_relative_to(rootdir) else gone
        if name.endswith((".yaml", ".yml")) and name not in names:
            names.append(name)
    found: list[SpecChanges] = []
    for name in names:
        path = (rootdir / name).resolve()
        head_text = path.read_text(encoding="utf-8") if path.is_file() else None
        base_text = _show(top, base, path.relative_to(top))
        if base_text is not None and "charts" not in base_text and head_text is None:
            continue  # a deleted YAML file that was no spec
        try:
            head = _declared(run, path, head_text, name)
            before = _declared(run, path, base_text, f"{name} at {base[:12]}")
        except PlanError as exc:  # this spec cannot be compared; the others still can
            found.append(SpecChanges(name, (), (), f"not compared ({exc})"))
            continue
        note = "new spec" if base_text is None else "spec deleted" if head_text is None else ""
        added = tuple(v for v in head if v not in before)
        removed = tuple(v for v in before if v not in head)
        if added or removed or note:
            found.append(SpecChanges(name, added, removed, note))
    return found


def _declared(run: Run, path: Path, text: str | None, shown: str) -> list[str]:
    """The chart versions a spec's text declares, its constraints resolved upstream."""
    if text is None:
        return []
    try:
        spec: Spec = parse_spec(text, path, display_path=shown)
        return [
            f"{chart.name} {version}"
            for chart in spec.charts
            for version in selection.select(run, spec.path, chart)
        ]
    except EcrMirrorError as exc:
        raise PlanError(f"cannot read {shown}: {exc}") from None


def _show(top: Path, base: str, relative: Path) -> str | None:
    """The file at `base`, or None if it did not exist there."""
    try:
        return _git(top, "show", f"{base}:{relative.as_posix()}")
    except PlanError:
        listed = _git(top, "ls-tree", "--name-only", base, "--", relative.as_posix())
        if listed.strip():
            raise
        return None


def _git(directory: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, timeout=GIT_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PlanError(f"git {args[0]} failed in {directory}: {exc}") from None
    if done.returncode != 0:
        raise PlanError(
            f"git {' '.join(args[:2])} failed in {directory}: {done.stderr.strip() or done.returncode}. "
            "The job needs the merge request's base commit: fetch it (GIT_DEPTH: 0, or "
            "git fetch origin $CI_MERGE_REQUEST_DIFF_BASE_SHA)"
        )
    return done.stdout
