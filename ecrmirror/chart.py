"""A chart archive -> the OCI artifact `helm push` makes of it (config, layer, manifest, tag)."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import tarfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from ecrmirror.errors import InvalidChart
from ecrmirror.helmyaml import NotReadable, YamlRefused, decode_metadata, load_helm_yaml

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


# -- the archive as helm's loader reads it -----------------------------------------------------------
# helm's archive loader (pkg/chart/loader/archive.go, LoadArchiveFiles) names each member by
# dropping its first path component, whatever it is (splitting on "\" instead of "/" when the name
# holds one), then path.Clean-ing the rest. LoadFiles (load.go) reads every Chart.yaml, then every
# requirements.yaml, into the one chart.Metadata, so that two of them merge field by field; it
# takes values.yaml, values.schema.json, Chart.lock and requirements.lock from the last one; and
# of templates and other files, which it appends, the template engine and .Files keep the last
# (of a packaged subchart in charts/, it loads the first). So `app/Chart.yaml`, `other/Chart.yaml`,
# `app/./Chart.yaml` and `app\Chart.yaml` are all the chart's Chart.yaml: identity is checked on
# what helm loads, and an archive holding any file twice is refused.
_DRIVE = re.compile(r"[a-zA-Z]:/")


def _helm_name(name: str) -> tuple[str, str | None]:
    """The name helm's loader reads member `name` as, and why helm refuses it (None if it does not)."""
    delimiter = "\\" if "\\" in name else "/"
    parts = name.split(delimiter)
    read_as = delimiter.join(parts[1:]).replace(delimiter, "/")
    if read_as.startswith("/"):
        return read_as, "an absolute path"
    read_as = posixpath.normpath(read_as) if read_as else "."
    if read_as == ".":
        return read_as, "outside the chart's directory"
    if read_as.startswith(".."):
        return read_as, "outside the chart's directory"
    if _DRIVE.match(read_as):
        return read_as, "a Windows drive path"
    if parts[0] == "Chart.yaml":
        return read_as, "under a directory named Chart.yaml"
    return read_as, None


# The files helm's LoadFiles reads into the chart's metadata.
_METADATA_FILES = ("Chart.yaml", "requirements.yaml")


def read_chart_metadata(
    archive: Path, origin: str | None = None, max_chart_size: int = MAX_CHART_SIZE
) -> dict[str, Any]:
    """The chart's metadata as helm's loader reads it from a packaged chart: Chart.yaml, with
    requirements.yaml over it, as chart.Metadata's fields; after checking the whole archive.

    Nothing is extracted to disk. Every member is checked from its header before its data is
    read, so a gzip bomb stops at helm's limits rather than filling memory or disk; a member
    that escapes the chart directory, or a link, makes the archive invalid, and so does a file
    that helm would read twice under one name. `origin` names the archive in messages (its URL),
    since `archive` may be a temporary file.
    """
    shown = origin or str(archive)
    members: dict[str, str] = {}  # the name helm reads a file as -> the member it came from
    texts: dict[str, bytes] = {}  # Chart.yaml and requirements.yaml, as helm reads them
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
                if member.isdir():
                    continue
                if member.mode & ~0o7777 == 0o040000:  # Go's tar FileInfo calls this a directory
                    raise InvalidChart(
                        f"{shown}: member {name!r} is a file with a directory's mode ({member.mode:o}), "
                        "which helm would skip; a chart archive holds plain files"
                    )
                read_as, refused = _helm_name(name)
                if refused is not None:
                    raise InvalidChart(
                        f"{shown}: member {name!r} is {refused} to helm ({read_as!r}), which refuses "
                        "such an archive"
                    )
                if read_as in members:
                    effect = (
                        "reads both into the chart's metadata, the later one's fields winning"
                        if read_as in _METADATA_FILES
                        else "keeps only one of them"
                    )
                    raise InvalidChart(
                        f"{shown}: members {members[read_as]!r} and {name!r} are both the chart's "
                        f"{read_as} to helm, which {effect}; a chart archive holds each file once"
                    )
                members[read_as] = name
                if read_as in _METADATA_FILES:
                    handle = tar.extractfile(member)
                    if handle is None:  # pragma: no cover - isfile() guarantees a handle
                        continue
                    texts[read_as] = handle.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise InvalidChart(f"{shown} is not a gzipped tar archive: {exc}") from None
    if "Chart.yaml" not in texts:
        raise InvalidChart(f"{shown} holds no <name>/Chart.yaml: it is not a Helm chart")
    metadata = _read_metadata({}, texts["Chart.yaml"], f"{shown}: {members['Chart.yaml']}")
    if not metadata.get("apiVersion"):  # helm's loader: a chart without one is apiVersion v1
        metadata["apiVersion"] = "v1"
    if "requirements.yaml" in texts:
        where = f"{shown}: {members['requirements.yaml']}"
        merged = _read_metadata(metadata, texts["requirements.yaml"], where)
        for field in ("name", "version"):
            if merged.get(field) != metadata.get(field):
                raise InvalidChart(
                    f"{where} sets the chart's {field} to {merged.get(field)!r}, and helm reads it over "
                    f"Chart.yaml's {metadata.get(field)!r}; requirements.yaml may only list dependencies"
                )
        metadata = merged
    return metadata


def _read_metadata(current: dict[str, Any], text: bytes, where: str) -> dict[str, Any]:
    """`text` (a Chart.yaml or requirements.yaml) read into `current` as helm reads it."""
    try:
        document = load_helm_yaml(text)
    except YamlRefused as exc:
        raise InvalidChart(f"{where} {exc}") from None
    except yaml.YAMLError as exc:
        raise InvalidChart(f"{where} is not valid YAML: {exc}") from None
    if document is None and current:
        return current  # an empty requirements.yaml changes nothing
    if not isinstance(document, dict):
        raise InvalidChart(f"{where} is not a YAML mapping")
    try:
        return decode_metadata(current, document)
    except NotReadable as exc:
        raise InvalidChart(f"{where}: {exc}, so helm cannot load the chart") from None


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
