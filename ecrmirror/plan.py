"""The mirror plan: a short Markdown page of what a run pushed, or would push, spec by spec.

A merge request links it (`--ecrmirror-plan PATH`, published with GitLab's `artifacts:expose_as`):
the versions a sync pushes, the repositories and replication rules it creates or changes, the
bytes, every failure with its reason, and which chart versions the merge request adds or removes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ecrmirror.escape import for_markdown

if TYPE_CHECKING:
    from ecrmirror.changes import SpecChanges

MAX_REASON = 400  # characters of a failure's reason; the JUnit report has all of it
MAX_LISTED = 20  # versions named per line before "and N more"


@dataclass(frozen=True)
class Row:
    """One item's result, as the plan needs it."""

    spec: str
    kind: str  # version, repository, replica, replication, image
    title: str
    word: str  # the outcome word, or the error's
    ok: bool
    target: str = ""
    bytes_uploaded: int = 0
    reason: str = ""
    order: tuple[Any, ...] = ()  # where the item stands in its spec
    pointing: tuple[str, ...] = ()  # GitOps sources: the change that makes them pull from ECR


@dataclass(frozen=True)
class Heading:
    sync: bool
    where: str  # "the offline emulator", "AWS"
    base: str = ""  # the merge request's base, when compared


def render(
    heading: Heading, rows: Iterable[Row], changes: Iterable[SpecChanges] = (), changes_error: str = ""
) -> str:
    rows = list(rows)
    by_spec: dict[str, list[Row]] = {}
    for row in rows:
        by_spec.setdefault(row.spec, []).append(row)
    changed = {change.spec: change for change in changes}
    for spec in changed:
        by_spec.setdefault(spec, [])
    mode = "sync" if heading.sync else "audit (read-only)"
    lines = [f"# ecrmirror plan: {mode} against {heading.where}", ""]
    lines.append(_summary(rows, heading.sync))
    if heading.base:
        compared = f"Compared with the merge request's base, {heading.base[:12]}"
        if changes_error:
            lines += ["", f"{compared}: {for_markdown(changes_error)}"]
        else:
            lines += ["", f"{compared}{'.' if changed else ': no chart version added or removed.'}"]
    for spec, spec_rows in by_spec.items():
        lines += ["", f"## {for_markdown(spec)}", ""]
        lines += _changes(changed.get(spec))
        lines += _spec(spec_rows, heading.sync)
    return "\n".join(lines).rstrip() + "\n"


def _summary(rows: list[Row], sync: bool) -> str:
    charts = [row for row in rows if row.kind == "version"]
    if not rows:
        return "No chart version ran."
    failed = sum(not row.ok for row in rows)
    moved = sum(row.word == ("PUSHED" if sync else "MISSING") for row in charts)
    verb = "pushed" if sync else "to push"
    uploaded = sum(row.bytes_uploaded for row in charts)
    text = f"{len(charts)} chart versions: {moved} {verb}"
    images = [row for row in rows if row.kind == "image"]
    if images:
        copied = sum(row.word == ("PUSHED" if sync else "MISSING") for row in images)
        text += f"; {len(images)} images: {copied} {'copied' if sync else 'to copy'}"
        uploaded += sum(row.bytes_uploaded for row in images)
    text += f", {failed} failed items"
    return text + (f"; {uploaded:,} bytes uploaded." if sync else ".")


def _changes(change: SpecChanges | None) -> list[str]:
    if change is None:
        return []
    lines = []
    if change.note:
        lines.append(f"- This merge request: {for_markdown(change.note)}.")
    if change.added:
        lines.append(f"- Adds: {_names(change.added)}")
    if change.removed:
        lines.append(f"- Removes: {_names(change.removed)} (ecrmirror deletes nothing from ECR)")
    return lines


def _spec(rows: list[Row], sync: bool) -> list[str]:
    lines: list[str] = []
    versions = [row for row in rows if row.kind == "version"]
    pushed = [row for row in versions if row.word == ("PUSHED" if sync else "MISSING")]
    if pushed:
        uploaded = sum(row.bytes_uploaded for row in pushed)
        label = f"Pushed ({uploaded:,} bytes)" if sync else "Would push"
        lines.append(f"- {label}: {_names([row.title for row in pushed])}")
        for target in dict.fromkeys(row.target.rpartition(":")[0] for row in pushed):
            lines.append(f"  into `{target}`")
    present = [row for row in versions if row.word == "PRESENT"]
    if present:
        lines.append(f"- Already in ECR: {_names([row.title for row in present])}")
    backfilled = [row for row in versions if row.word == "BACKFILLED"]
    if backfilled:
        uploaded = sum(row.bytes_uploaded for row in backfilled)
        lines.append(
            f"- Backfilled into regions replication had not reached ({uploaded:,} bytes sent): "
            + _names([row.title for row in backfilled])
        )
    for kind, label in (("repository", "Repositories"), ("replica", "Replica repositories")):
        changed = [row for row in rows if row.kind == kind and row.ok and row.word != "PRESENT"]
        for word in dict.fromkeys(row.word for row in changed):
            names = [row.title.removeprefix("repository ") for row in changed if row.word == word]
            lines.append(f"- {label} {word.lower()}: {_names(names)}")
    for row in rows:
        if row.kind == "replication" and row.ok and row.word != "PRESENT":
            title = for_markdown(row.title.removeprefix("replication "))
            lines.append(f"- Replication rule {title}: {row.word.lower()}")
        if row.kind == "registry" and row.ok and row.word != "PRESENT":
            lines.append(f"- Registry setting {for_markdown(row.title)}: {row.word.lower()}")
    images = [row for row in rows if row.kind == "image"]
    copied = [row for row in images if row.word == ("PUSHED" if sync else "MISSING")]
    if copied:
        uploaded = sum(row.bytes_uploaded for row in copied)
        label = f"Images copied ({uploaded:,} bytes)" if sync else "Images to copy"
        lines.append(f"- {label}: {_names([row.title for row in copied])}")
    held = [row for row in images if row.word == "PRESENT"]
    if held:
        lines.append(f"- Images already in ECR: {len(held)}")
    pointing = list(dict.fromkeys(change for row in rows for change in row.pointing))
    if pointing:
        lines.append("- To pull these charts from ECR, change:")
        lines += [f"  - {for_markdown(change)}" for change in pointing]
    listed = pushed + copied  # an audit's MISSING is listed above
    failures = [row for row in rows if not row.ok and row not in listed]
    if failures:
        lines += ["", f"**{len(failures)} failed:**", ""]
        for row in failures:
            reason = row.reason if len(row.reason) <= MAX_REASON else row.reason[:MAX_REASON] + "…"
            line = f"- **{for_markdown(row.word)}** {for_markdown(row.title)}: {for_markdown(reason)}"
            lines.append(line.rstrip(": "))
    if not lines:
        lines.append("- Nothing to do.")
    return lines


def _names(names: Iterable[str]) -> str:
    listed = [for_markdown(name) for name in names]
    shown = ", ".join(listed[:MAX_LISTED])
    return shown + (f", and {len(listed) - MAX_LISTED} more" if len(listed) > MAX_LISTED else "")
