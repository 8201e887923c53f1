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
