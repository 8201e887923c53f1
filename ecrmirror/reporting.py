"""What a run tells its reader beyond pass and fail: outcome words, totals per kind, what was pulled in."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecrmirror import escape, junit, plan, redact
from ecrmirror.errors import PlanError
from ecrmirror.items import RUN_KEY, ChartVersionItem
from ecrmirror.junit import (
    BYTES_PROPERTY,
    DIGEST_PROPERTY,
    ERROR_PROPERTY,
    KIND_PROPERTY,
    LINE_PROPERTY,
    NOTE_PROPERTY,
    OUTCOME_PROPERTY,
    PLATFORM_PROPERTY,
    POINTING_PROPERTY,
    PULLED_IN_BY_PROPERTY,
    RANGE_PROPERTY,
    SPEC_PROPERTY,
    TITLE_PROPERTY,
    USED_BY_PROPERTY,
    VALUES_PROPERTY,
)
from ecrmirror.outcome import Outcome
from ecrmirror.share import write_atomically
from ecrmirror.sources.release import version_key

_KIND_ORDER = {"repository": 0, "replica": 1, "replication": 2, "registry": 2, "version": 3}


def clean(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Make a report safe to show, in place, before pytest or xdist hands it on: no remembered or
    credential-looking secret (redact.py), and no control character from an upstream (escape.py).

    Every output is made from reports (the terminal, JUnit, the plan, --collect-only's errors,
    tracebacks with their locals under -l), so this is the one place they pass through. A report
    is rewritten only when something had to go; its traceback then becomes plain text.
    """
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
        path, line, reason = longrepr
        report.longrepr = (path, line, _safe(reason))
    elif longrepr is not None:
        text = str(longrepr)
        safe = _safe(text)
        if safe != text:
            report.longrepr = safe
    report.sections = [(title, _safe(content)) for title, content in report.sections]
    if isinstance(report, pytest.TestReport):
        properties = report.user_properties
        report.user_properties = [(name, _safe(v) if isinstance(v, str) else v) for name, v in properties]


def _safe(text: str) -> str:
    return escape.for_terminal(redact.redact(text))


def teststatus(report: pytest.TestReport) -> tuple[str, str, Any] | None:
    """pytest's (category, letter, word) for one of our call reports: the outcome word itself."""
    if report.when != "call":
        return None
    outcome = report_outcome(report)
    if outcome is None:
        error = _property(report, ERROR_PROPERTY) if report.failed else None
        # An error that ended the item names itself as an outcome would: UNVERIFIED, AWS ERROR, ...
        return None if error is None else ("failed", "F", (error, {"red": True}))
    if outcome.ok:
        letter = "P" if outcome is Outcome.PUSHED else "."
        return "passed", letter, (outcome.value, {"green": True})
    return "failed", "F", (outcome.value, {"red": True})


def resolved_constraints(items: list[pytest.Item]) -> list[str]:
    """How each version constraint resolved, one line per spec and constraint."""
    resolved: dict[tuple[str, str], list[str]] = {}
    for item in items:
        if isinstance(item, ChartVersionItem) and item.planned.chart.range is not None:
            chart = item.planned.chart
            key = (item.nodeid.split("::")[0], f"{chart.name} {item.planned.chart.range.describe()}")
            resolved.setdefault(key, []).append(item.planned.version.version)
    return [
        _safe(f"ecrmirror: {spec}: {what} resolves to {', '.join(v)}") for (spec, what), v in resolved.items()
    ]


@dataclass(eq=False)  # a plugin object must stay hashable
class Totals:
    """Counts outcomes from reports, so it also works on an xdist controller."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    bytes_uploaded: dict[str, int] = field(default_factory=dict)  # kind -> bytes
    notes: list[str] = field(default_factory=list)
    ranges: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (spec, range) -> versions
    dependencies: list[str] = field(default_factory=list)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        kind = report_kind(report)
        if kind is None:
            return  # not one of ours
        # One count per item: its call report, or the setup report if setup already failed.
        if report.when == "call" or (report.when == "setup" and not report.passed):
            outcome = report_outcome(report)
            word = outcome.value.lower() if outcome is not None and outcome.ok else "failed"
            counts = self.counts.setdefault(kind, {})
            counts[word] = counts.get(word, 0) + 1
            self.bytes_uploaded[kind] = self.bytes_uploaded.get(kind, 0) + report_bytes(report)
            self.notes.extend(f"{report.nodeid}: {note}" for note in report_notes(report))
            pulled_in_by = report_pulled_in_by(report)
            if pulled_in_by is not None:
                self.dependencies.append(f"{report.nodeid.split('::', 1)[1]} (dependency of {pulled_in_by})")
            version_range = report_range(report)
            if version_range is not None:
                spec = report.nodeid.split("::")[0]
                self.ranges.setdefault((spec, version_range), []).append(report.nodeid.rsplit("::", 1)[1])

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.counts:
            return
        terminalreporter.write_sep("-", "ecrmirror")
        for kind, label in (
            ("repository", "repositories"),
            ("replica", "replica repositories"),
            ("replication", "replication rules"),
            ("registry", "registry settings"),
        ):
            if kind in self.counts:
                terminalreporter.write_line(f"{count_line(self.counts[kind], label)}")
        for kind, label in (("version", "versions"), ("image", "images")):
            if self.counts.get(kind):
                line = count_line(self.counts[kind], label, ("pushed", "present"))
                terminalreporter.write_line(f"{line}; {self.bytes_uploaded.get(kind, 0)} bytes uploaded")
        for (spec, version_range), selected in self.ranges.items():
            terminalreporter.write_line(f"{spec}: {version_range} resolved to {', '.join(selected)}")
        for dependency in self.dependencies:
            terminalreporter.write_line(f"pulled in: {dependency}")
        for note in self.notes:
            terminalreporter.write_line(f"note: {note}")


def count_line(counts: dict[str, int], label: str, always: tuple[str, ...] = ()) -> str:
    words = [
        w
        for w in ("pushed", "created", "updated", "present", "backfilled", "behind")
        if w in always or counts.get(w)
    ]
    parts = [f"{counts.get(w, 0)} {w}" for w in words] + [f"{counts.get('failed', 0)} failed"]
    return f"{sum(counts.values())} {label}: {', '.join(parts)}"


def report_outcome(report: pytest.TestReport) -> Outcome | None:
    value = _property(report, OUTCOME_PROPERTY)
    return None if value is None else Outcome(value)


def report_bytes(report: pytest.TestReport) -> int:
    return int(_property(report, BYTES_PROPERTY) or 0)


def report_kind(report: pytest.TestReport) -> str | None:
    return _property(report, KIND_PROPERTY)


def report_notes(report: pytest.TestReport) -> list[str]:
    return [str(value) for name, value in report.user_properties if name == NOTE_PROPERTY]


def report_range(report: pytest.TestReport) -> str | None:
    return _property(report, RANGE_PROPERTY)


def report_pulled_in_by(report: pytest.TestReport) -> str | None:
    return _property(report, PULLED_IN_BY_PROPERTY)


def _property(report: pytest.TestReport, wanted: str) -> str | None:
    for name, value in report.user_properties:
        if name == wanted:
            return str(value)
    return None


class JunitNames:
    """Names our testcases in the --junitxml file for GitLab once pytest has written it (junit.py)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spec_errors: list[str] = []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed and report.nodeid.split("::")[0].endswith((".yaml", ".yml")):
            self.spec_errors.append(report.nodeid)

    @pytest.hookimpl(trylast=True)  # after junitxml's own sessionfinish has written the file
    def pytest_sessionfinish(self) -> None:
        if self.path.is_file():
            junit.rewrite(self.path, self.spec_errors)


class PlanWriter:
    """--ecrmirror-plan: collects every item's result and writes the plan (plan.py) at the end."""

    def __init__(self, config: pytest.Config, path: Path, heading: plan.Heading) -> None:
        self.config = config
        self.path = path
        self.heading = heading
        self.rows: list[plan.Row] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        kind = report_kind(report)
        if kind is None or not (report.when == "call" or (report.when == "setup" and not report.passed)):
            return
        outcome = report_outcome(report)
        properties = {str(name): str(value) for name, value in report.user_properties}
        title = properties.get(TITLE_PROPERTY, report.nodeid)
        word = outcome.value if outcome is not None else properties.get(ERROR_PROPERTY, "FAILED")
        target = "/".join(properties[key] for key in ("registry", "repository") if key in properties)
        tag = properties.get("tag")
        # Workers report in the order they finish: the plan lists items in the spec's order.
        line = int(properties.get(LINE_PROPERTY) or 0)
        order = (_KIND_ORDER.get(kind, 9), line, version_key(tag.replace("_", "+")) if tag else ())
        self.rows.append(
            plan.Row(
                spec=properties.get(SPEC_PROPERTY, report.nodeid.split("::")[0]),
                kind=kind,
                title=title,
                word=word,
                ok=outcome is not None and outcome.ok,
                target=f"{target}:{tag}" if tag else target,
                bytes_uploaded=report_bytes(report),
                reason=_reason(report, f"{word} {title}: ") if report.failed else "",
                order=order,
                pointing=tuple(str(v) for name, v in report.user_properties if name == POINTING_PROPERTY),
            )
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        from ecrmirror import changes  # --ecrmirror-plan-base only: git, and specs read at the base

        self.rows.sort(key=lambda row: (row.spec, row.order))
        found: list[changes.SpecChanges] = []
        error = ""
        if self.heading.base:
            specs = [row.spec for row in self.rows]
            try:
                found = changes.compare(
                    self.config.stash[RUN_KEY].run, self.config.rootpath, specs, self.heading.base
                )
            except PlanError as exc:
                error = str(exc)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(plan.render(self.heading, self.rows, found, error), encoding="utf-8")


class ImageLock:
    """--ecrmirror-images PATH: every image item's result, written as a lock (JSON) at the end, and
    beside it a values override per chart version (relocation.py) that points its images at ECR."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.images: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report_kind(report) != "image" or report.when != "call":
            return
        properties = report.user_properties
        upstream = _property(report, "upstream")
        if upstream is None:
            return  # an item for a version whose images could not be found
        outcome = report_outcome(report)
        registry, repository = _property(report, "registry"), _property(report, "repository")
        digest = _property(report, DIGEST_PROPERTY)
        self.images.append(
            {
                "upstream": upstream,
                "outcome": outcome.value if outcome is not None else _property(report, ERROR_PROPERTY),
                "in_ecr": outcome is not None and outcome.ok,
                "ecr": f"{registry}/{repository}",
                "digest": digest,
                "platforms": dict(
                    str(value).split(" ", 1) for name, value in properties if name == PLATFORM_PROPERTY
                ),
                "used_by": [str(value) for name, value in properties if name == USED_BY_PROPERTY],
                "in_values": [
                    json.loads(str(value)) for name, value in properties if name == VALUES_PROPERTY
                ],
            }
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        from ecrmirror.images import relocation

        self.images.sort(key=lambda image: str(image["upstream"]))
        overrides: dict[str, tuple[list[tuple[tuple[str, ...], str, str]], bool]] = {}
        for image in self.images:
            registry, _, repository = str(image["ecr"]).partition("/")
            for held in image["in_values"]:
                moved, bitnami = overrides.setdefault(str(held["chart"]), ([], False))
                if image["in_ecr"]:  # an override may point only at what ECR holds
                    moved.append((tuple(held["path"]), registry, repository))
                overrides[str(held["chart"])] = (moved, bitnami or bool(held["bitnami"]))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        values: dict[str, str] = {}
        for chart, (moved, bitnami) in sorted(overrides.items()):
            if not moved:
                continue
            name = self.path.parent / f"{chart.replace(' ', '-')}.ecr-values.yaml"
            text = yaml.safe_dump(relocation.values_override(moved, bitnami), sort_keys=True)
            write_atomically(
                name, f"# ecrmirror: {chart}'s images from ECR (helm -f {name.name})\n{text}".encode()
            )
            values[chart] = name.name
        lock = {"images": self.images, "values": values}
        write_atomically(self.path, (json.dumps(lock, indent=2) + "\n").encode())


def _reason(report: pytest.TestReport, header: str) -> str:
    """The failure's message after the line that names the outcome, the item and its target."""
    lines = [line.strip() for line in report.longreprtext.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith(header):
            return " ".join(lines[index + 1 :])
    return lines[-1] if lines else ""  # not one of our messages: a crash's last line
