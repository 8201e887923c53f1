"""Build real Helm chart archives and repository indexes for tests, reproducibly (no helm needed)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EPOCH = 1_700_000_000  # a fixed mtime, so the same chart always packages to the same bytes


@dataclass
class ChartFile:
    path: Path
    name: str
    version: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def package_chart(
    directory: Path,
    name: str,
    version: str,
    *,
    files: dict[str, str] | None = None,
    chart_dir: str | None = None,
    **metadata: Any,
) -> ChartFile:
    """Write <name>-<version>.tgz the way `helm package` lays it out: <name>/Chart.yaml, ..."""
    chart_yaml = {
        "apiVersion": "v2",
        "name": name,
        "version": version,
        "description": f"The {name} chart",
        "type": "application",
        **metadata,
    }
    root = chart_dir if chart_dir is not None else name
    members = {
        f"{root}/Chart.yaml".lstrip("/"): yaml.safe_dump(chart_yaml, sort_keys=False),
        f"{root}/values.yaml".lstrip("/"): "replicaCount: 1\n",
        f"{root}/templates/configmap.yaml".lstrip("/"): (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
            f"data:\n  chart: {name}-{version}\n"
        ),
        **(files or {}),
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{version}.tgz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for member_name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(member_name)
            info.size, info.mtime, info.mode = len(data), EPOCH, 0o644
            tar.addfile(info, io.BytesIO(data))
    with open(path, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=EPOCH, filename="") as gz:
        gz.write(raw.getvalue())
    return ChartFile(path, name, version, chart_yaml)


def write_index(
    directory: Path,
    charts: Iterable[ChartFile],
    *,
    base_url: str = "",
    created: str = "2024-03-01T12:34:56.123456789Z",
    overrides: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> Path:
    """index.yaml as `helm repo index` writes it; `overrides` bends entries for failure tests."""
    entries: dict[str, list[dict[str, Any]]] = {}
    for chart in charts:
        entry = {
            **chart.metadata,
            "created": created,
            "digest": chart.digest,
            "urls": [f"{base_url}{chart.path.name}"],
        }
        entry.update((overrides or {}).get((chart.name, chart.version), {}))
        entries.setdefault(chart.name, []).append(entry)
    index = {"apiVersion": "v1", "entries": entries, "generated": created}
    path = directory / "index.yaml"
    path.write_text(yaml.safe_dump(index, sort_keys=True))
    return path


def archive_bytes(
    members: Iterable[tuple[str, str | bytes]], *, modes: dict[str, int] | None = None
) -> bytes:
    """A .tgz of exactly these (name, content) members, in order, names as given (duplicates,
    "./", backslashes and all): archives that `helm package` would never write."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in members:
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), EPOCH, 0o644
            tar.addfile(info, io.BytesIO(data))
    data = bytearray(raw.getvalue())
    offset = 0  # tarfile writes permission bits only: patch the mode into the headers asked for
    while modes and data[offset : offset + 1] not in (b"", b"\0"):
        name = data[offset : offset + 100].rstrip(b"\0").decode()
        if name in modes:
            data[offset + 100 : offset + 108] = b"%07o\0" % modes[name]
            data[offset + 148 : offset + 156] = b" " * 8
            data[offset + 148 : offset + 156] = b"%06o\0 " % sum(data[offset : offset + 512])
        size = int(data[offset + 124 : offset + 136].rstrip(b"\0 ") or b"0", 8)
        offset += 512 + (size + 511) // 512 * 512
    return gzip.compress(bytes(data), mtime=EPOCH)


def write_archive(
    directory: Path, filename: str, members: Iterable[tuple[str, str | bytes]], **options: Any
) -> ChartFile:
    """archive_bytes written to directory/filename, as a ChartFile (name and version from the file name)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_bytes(archive_bytes(members, **options))
    name, _, version = filename.removesuffix(".tgz").rpartition("-")
    return ChartFile(path, name, version)


def serve_archive(directory: Path, archive: bytes) -> None:
    """`archive` as app 1.0.0 of the repository in `directory`, whatever it holds: its index
    lists its true digest, so only what is inside it can be refused."""
    (directory / "app-1.0.0.tgz").write_bytes(archive)
    entry = {
        "name": "app",
        "version": "1.0.0",
        "digest": hashlib.sha256(archive).hexdigest(),
        "urls": ["app-1.0.0.tgz"],
    }
    (directory / "index.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "entries": {"app": [entry]}}))
