"""Reading a mirror spec: YAML with file:line for every value, ${VAR} expansion, strict validation.

reader.py reads YAML nodes with their lines, variables.py expands ${VAR}, target.py and charts.py
hold the schema of the two sections, model.py the frozen data a spec becomes. gitops_section.py
reads `gitops:`, whose manifests gitops.py reads as Flux and Argo CD do, into chart entries.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from ecrmirror.errors import SpecError
from ecrmirror.spec.charts import read_chart
from ecrmirror.spec.model import (
    DEFAULT_TAG_MUTABILITY,
    Access,
    ChartEntry,
    Credentials,
    Destination,
    ExtraImage,
    ImageNaming,
    ImageSettings,
    NotMirrored,
    Registry,
    Render,
    Replication,
    RepositorySettings,
    Signing,
    SigningRule,
    Spec,
    Target,
    Verification,
    VersionEntry,
    VersionRange,
)
from ecrmirror.spec.reader import Reader, compose, nodes
from ecrmirror.spec.target import read_target

__all__ = [
    "DEFAULT_TAG_MUTABILITY",
    "Access",
    "ChartEntry",
    "Credentials",
    "Destination",
    "ExtraImage",
    "ImageNaming",
    "ImageSettings",
    "NotMirrored",
    "Registry",
    "Render",
    "Replication",
    "RepositorySettings",
    "Signing",
    "SigningRule",
    "Spec",
    "Target",
    "Verification",
    "VersionEntry",
    "VersionRange",
    "load_spec",
    "looks_like_spec",
    "parse_spec",
]

_SPEC_MARKER = re.compile(r"^(?:charts|gitops)\s*:", re.MULTILINE)


def looks_like_spec(path: Path) -> bool:
    """A YAML file is a spec when its top level has `charts` or `gitops`; anything else is not ours."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if not _SPEC_MARKER.search(text):
        return False
    try:
        root = nodes(text)
    except yaml.YAMLError:
        return True  # it says `charts:` at the top: report its syntax error rather than skip it
    return isinstance(root, yaml.MappingNode) and any(
        isinstance(k, yaml.ScalarNode) and k.value in ("charts", "gitops") for k, _ in root.value
    )


def load_spec(path: Path, environ: Mapping[str, str] | None = None, display_path: str | None = None) -> Spec:
    """Parse and validate one spec file; raises SpecError naming the file, line and fix.

    `display_path` is how messages name the file (pytest passes it relative to the invocation).
    """
    shown = display_path or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(shown, f"cannot read the spec: {exc}") from None
    return parse_spec(text, path, environ, shown)


def parse_spec(
    text: str, path: Path, environ: Mapping[str, str] | None = None, display_path: str | None = None
) -> Spec:
    """A spec from its text, as if read from `path` (local repos and ca_file are relative to it)."""
    shown = display_path or str(path)
    reader = Reader(path, shown, os.environ if environ is None else environ)
    return _read_spec(reader, compose(text, shown))


def _read_spec(reader: Reader, root: yaml.Node | None) -> Spec:
    fields = reader.mapping(root, "the spec", ("target",), ("charts", "gitops"))
    target = read_target(reader, fields["target"])
    if "charts" not in fields and "gitops" not in fields:
        raise reader.fail(
            root,
            "the spec has no 'charts' and no 'gitops'",
            "add `charts:` entries, or `gitops:` manifest paths",
        )
    charts: tuple[ChartEntry, ...] = ()
    if "charts" in fields:
        charts_node = fields["charts"]
        if not isinstance(charts_node, yaml.SequenceNode) or not charts_node.value:
            raise reader.fail(
                charts_node, "charts must be a non-empty list", "list charts as `- name: ...` entries"
            )
        charts = tuple(read_chart(reader, node, target) for node in charts_node.value)
    gitops: tuple[ChartEntry, ...] = ()
    not_mirrored: tuple[NotMirrored, ...] = ()
    if "gitops" in fields:
        from ecrmirror.spec.gitops_section import read_gitops_section  # Flux and Argo CD: specs that ask

        gitops, not_mirrored = read_gitops_section(reader, fields["gitops"], target)
    seen: dict[tuple[str, str], ChartEntry] = {}
    for chart in charts:
        key = (chart.name, chart.repo)
        if key in seen:
            raise SpecError(
                chart.where,
                f"chart {chart.name!r} from {chart.repo} is listed twice (first at {seen[key].where})",
                "merge the two entries' versions",
            )
        seen[key] = chart
    names: dict[str, ChartEntry] = {}
    for chart in charts:
        if chart.name in names and names[chart.name].repo != chart.repo:
            raise SpecError(
                chart.where,
                f"chart {chart.name!r} comes from two repositories "
                f"({names[chart.name].repo} and {chart.repo}) into one ECR repository",
                "mirror one of them into another spec with a different prefix",
            )
        names[chart.name] = chart
    from_gitops: dict[str, ChartEntry] = {}
    for chart in gitops:
        first = from_gitops.setdefault(chart.name, chart)
        if first.repo != chart.repo:
            raise SpecError(
                chart.where,
                f"chart {chart.name!r} comes from two repositories ({first.repo}, asked for at "
                f"{first.where}, and {chart.repo}) into one ECR repository",
                "mirror one of them with another spec, under another prefix",
            )
        if chart.name in names:
            raise SpecError(
                chart.where,
                f"{chart.gitops.asked_by if chart.gitops else chart.name} asks for chart {chart.name!r}, "
                f"which the spec also lists under charts (at {names[chart.name].where})",
                "keep it in one of them",
            )
    return Spec(
        path=reader.path, target=target, charts=charts, gitops_charts=gitops, gitops_skipped=not_mirrored
    )
