"""A chart archive -> the OCI artifact `helm push` makes of it (config, layer, manifest, tag)."""

from __future__ import annotations

import hashlib
import json
import tarfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from ecrmirror.errors import InvalidChart

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.cncf.helm.config.v1+json"
CHART_LAYER_MEDIA_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
PROVENANCE_MEDIA_TYPE = "application/vnd.cncf.helm.chart.provenance.v1.prov"

# helm's chart.Metadata, in the order Go's encoding/json writes its struct fields.
_METADATA_FIELDS = (
    "name",
    "home",
    "sources",
    "version",
    "description",
    "keywords",
    "maintainers",
    "icon",
    "apiVersion",
    "condition",
    "tags",
    "appVersion",
    "deprecated",
    "annotations",
    "kubeVersion",
    "dependencies",
    "type",
)
_MAINTAINER_FIELDS = ("name", "email", "url")
# helm's chart.Dependency: name and repository are written even when empty.
_DEPENDENCY_FIELDS = (
    "name",
    "version",
    "repository",
    "condition",
    "tags",
    "enabled",
    "import-values",
    "alias",
)
_DEPENDENCY_ALWAYS = ("name", "repository")
# Chart.yaml annotations may not override these manifest annotations (helm's rule).
_IMMUTABLE_ANNOTATIONS = ("org.opencontainers.image.version", "org.opencontainers.image.title")


def tag_for(version: str) -> str:
    """OCI tags cannot hold `+`; helm writes `_` instead and maps it back on pull."""
    return version.replace("+", "_")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def as_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class HelmArtifact:
    """Everything a registry needs to hold one chart version the way helm stores it."""

    tag: str
    config: bytes
    config_descriptor: Descriptor
    chart_descriptor: Descriptor
    manifest: bytes
    provenance_descriptor: Descriptor | None = None

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)


# helm's loader limits (pkg/chart/loader): a chart may not decompress to more than these.
# helm 3.17.3 made both fixed; later helm drops the per-file one and discusses making the total
# configurable, which ecrmirror does (ini ecrmirror_max_chart_size) for charts helm users raise it for.
MAX_CHART_SIZE = 100 * 1024 * 1024
MAX_FILE_SIZE = 5 * 1024 * 1024


def read_chart_metadata(
    archive: Path, origin: str | None = None, max_chart_size: int = MAX_CHART_SIZE
) -> dict[str, Any]:
    """Chart.yaml of a packaged chart, after checking the whole archive as helm's loader does.

    Nothing is extracted to disk. Every member is checked from its header before its data is
    read, so a gzip bomb stops at helm's limits rather than filling memory or disk; a member
    that escapes the chart directory, or a link, makes the archive invalid. `origin` names the
    archive in messages (its URL), since `archive` may be a temporary file.
    """
    shown = origin or str(archive)
    metadata: dict[str, Any] | None = None
    total = 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                name = member.name
                parts = [p for p in name.split("/") if p not in ("", ".")]
                if name.startswith("/") or ".." in parts:
                    raise InvalidChart(f"{shown}: member {name!r} points outside the chart directory")
                if member.issym() or member.islnk():
                    raise InvalidChart(
                        f"{shown}: member {name!r} is a link; a chart archive holds files only"
                    )
                if not (member.isfile() or member.isdir()):
                    raise InvalidChart(f"{shown}: member {name!r} is not a file or directory")
                if member.size > MAX_FILE_SIZE:
                    raise InvalidChart(
                        f"{shown}: {name} is {member.size} bytes decompressed; helm allows at most "
                        f"{MAX_FILE_SIZE} per file"
                    )
                total += member.size
                if total > max_chart_size:
                    raise InvalidChart(
                        f"{shown} decompresses to more than {max_chart_size} bytes, the limit for a chart "
                        f"(helm's is {MAX_CHART_SIZE}; raise it with ini ecrmirror_max_chart_size)"
                    )
                if parts == ["Chart.yaml"]:
                    raise InvalidChart(
                        f"{shown}: Chart.yaml is at the archive root; a chart archive holds <name>/Chart.yaml"
                    )
                if len(parts) == 2 and parts[1] == "Chart.yaml" and member.isfile() and metadata is None:
                    handle = tar.extractfile(member)
                    if handle is None:  # pragma: no cover - isfile() guarantees a handle
                        continue
                    loaded = yaml.safe_load(handle.read())
                    if not isinstance(loaded, dict):
                        raise InvalidChart(f"{shown}: {name} is not a YAML mapping")
                    metadata = loaded
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise InvalidChart(f"{shown} is not a gzipped tar archive: {exc}") from None
    except yaml.YAMLError as exc:
        raise InvalidChart(f"{shown}: Chart.yaml is not valid YAML: {exc}") from None
    if metadata is None:
        raise InvalidChart(f"{shown} holds no <name>/Chart.yaml: it is not a Helm chart")
    return metadata


def helm_config(metadata: dict[str, Any]) -> bytes:
    """The config blob helm pushes: Chart.yaml as JSON, in helm's field order, empty fields left out."""
    meta = dict(metadata)
    if not meta.get("apiVersion"):
        meta["apiVersion"] = "v1"
    ordered = _ordered(meta, _METADATA_FIELDS)
    if "maintainers" in ordered:
        ordered["maintainers"] = [
            _ordered(m, _MAINTAINER_FIELDS) for m in ordered["maintainers"] if isinstance(m, dict)
        ]
    if "dependencies" in ordered:
        ordered["dependencies"] = [
            _ordered(d, _DEPENDENCY_FIELDS, _DEPENDENCY_ALWAYS)
            for d in ordered["dependencies"]
            if isinstance(d, dict)
        ]
    if "annotations" in ordered:
        ordered["annotations"] = {str(k): str(v) for k, v in ordered["annotations"].items()}
    return go_json(ordered)


def helm_annotations(metadata: dict[str, Any], created: str | None) -> dict[str, str]:
    """The manifest annotations helm sets, with `created` from the index instead of the clock."""
    annotations: dict[str, str] = {}

    def add(key: str, value: Any) -> None:
        if isinstance(value, str) and value.strip():
            annotations[key] = value

    add("org.opencontainers.image.description", metadata.get("description"))
    add("org.opencontainers.image.title", metadata.get("name"))
    add("org.opencontainers.image.version", str(metadata.get("version", "")))
    add("org.opencontainers.image.url", metadata.get("home"))
    add("org.opencontainers.image.created", created)
    sources = metadata.get("sources") or []
    if sources:
        add("org.opencontainers.image.source", sources[0])
    maintainers = [m for m in metadata.get("maintainers") or [] if isinstance(m, dict)]
    if maintainers:
        authors = []
        for m in maintainers:
            text = str(m.get("name") or "")
            if m.get("email"):
                text += f" ({m['email']})"
            authors.append(text)
        add("org.opencontainers.image.authors", ", ".join(authors))
    for key, value in (metadata.get("annotations") or {}).items():
        if key not in _IMMUTABLE_ANNOTATIONS:
            annotations[str(key)] = str(value)
    return annotations


def normalize_created(created: Any) -> str | None:
    """An index `created` timestamp as helm writes annotations: RFC 3339, UTC, whole seconds."""
    if isinstance(created, datetime):
        moment = created
    elif isinstance(created, str) and created.strip():
        text = created.strip().replace("Z", "+00:00")
        # Go writes nanoseconds; Python parses at most microseconds.
        head, dot, rest = text.partition(".")
        if dot:
            digits = len(rest) - len(rest.lstrip("0123456789"))
            text = head + rest[digits:]
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_artifact(
    archive: Path,
    archive_digest: str,
    *,
    name: str,
    version: str,
    created: str | None,
    origin: str | None = None,
    provenance: Path | None = None,
    max_chart_size: int = MAX_CHART_SIZE,
) -> HelmArtifact:
    """Build helm's artifact for a verified archive, refusing one that is not `name` at `version`."""
    metadata = read_chart_metadata(archive, origin, max_chart_size)
    shown = origin or str(archive)
    if str(metadata.get("name", "")) != name:
        raise InvalidChart(
            f"{shown}: Chart.yaml names the chart {metadata.get('name')!r}, "
            f"but the spec and the index say {name!r}"
        )
    if str(metadata.get("version", "")) != version:
        raise InvalidChart(
            f"{shown}: Chart.yaml has version {metadata.get('version')!r}, "
            f"but the index lists it as {version!r}"
        )
    config = helm_config(metadata)
    config_descriptor = Descriptor(CONFIG_MEDIA_TYPE, sha256_digest(config), len(config))
    chart_descriptor = Descriptor(CHART_LAYER_MEDIA_TYPE, archive_digest, archive.stat().st_size)
    layers = [chart_descriptor]
    provenance_descriptor = None
    if provenance is not None:
        provenance_descriptor = Descriptor(
            PROVENANCE_MEDIA_TYPE, sha256_digest(provenance.read_bytes()), provenance.stat().st_size
        )
        layers.append(provenance_descriptor)
    layers.sort(key=lambda layer: layer.digest)  # as helm does, for a reproducible manifest
    manifest = go_json(
        {
            "schemaVersion": 2,
            "config": config_descriptor.as_json(),
            "layers": [layer.as_json() for layer in layers],
            "annotations": dict(sorted(helm_annotations(metadata, created).items())),
        }
    )
    return HelmArtifact(
        tag_for(version), config, config_descriptor, chart_descriptor, manifest, provenance_descriptor
    )


def chart_layer_digest(manifest: dict[str, Any]) -> str | None:
    """The digest of the chart archive a Helm manifest points at, or None if it is no chart."""
    return _layer_digest(manifest, CHART_LAYER_MEDIA_TYPE)


def provenance_layer_digest(manifest: dict[str, Any]) -> str | None:
    """The digest of a Helm manifest's provenance (.prov) layer, or None without one."""
    return _layer_digest(manifest, PROVENANCE_MEDIA_TYPE)


def _layer_digest(manifest: dict[str, Any], media_type: str) -> str | None:
    for layer in manifest.get("layers") or []:
        if isinstance(layer, dict) and layer.get("mediaType") == media_type:
            digest = layer.get("digest")
            return digest if isinstance(digest, str) else None
    return None


def go_json(value: Any) -> bytes:
    """JSON bytes as Go's encoding/json writes them, so our blobs match helm's byte for byte."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text.encode("utf-8")


def _ordered(values: dict[str, Any], fields: tuple[str, ...], always: tuple[str, ...] = ()) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for field in fields:
        value = values.get(field)
        if field == "annotations" and isinstance(value, dict):
            value = dict(sorted(value.items()))  # Go sorts map keys
        if field in always:
            result[field] = "" if value is None else value
        elif value not in (None, "", [], {}, False):
            result[field] = str(value) if field in ("version", "appVersion") else value
    return result
