"""A repository index shaped like a big publisher's (many charts, many versions, full metadata)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml


def write_big_index(path: Path, megabytes: int) -> int:
    """Write an index of about `megabytes` MB to `path`; returns its size in bytes."""
    versions = 200
    charts = max(1, megabytes * 6)  # about 170 kB per chart of 200 versions
    entries = {}
    for c in range(charts):
        name = f"chart-{c:04d}"
        entries[name] = [
            {
                "apiVersion": "v2",
                "name": name,
                "version": f"{v // 50}.{(v // 10) % 5}.{v % 10}",
                "appVersion": f"{v}.0.0",
                "description": f"A Helm chart for {name}, with the long description big publishers write.",
                "home": "https://example.com/charts",
                "sources": [f"https://github.com/example/{name}"],
                "keywords": ["example", "chart", name],
                "maintainers": [{"name": "Example", "email": "charts@example.com"}],
                "annotations": {"category": "Infrastructure", "licenses": "Apache-2.0"},
                "dependencies": [
                    {
                        "name": "common",
                        "version": "2.x.x",
                        "repository": "oci://registry-1.docker.io/bitnamicharts",
                    }
                ],
                "created": "2024-03-01T12:34:56.123456789Z",
                "digest": hashlib.sha256(f"{name}{v}".encode()).hexdigest(),
                "urls": [f"https://charts.example.com/{name}-{v}.tgz"],
            }
            for v in range(versions)
        ]
    text = yaml.dump({"apiVersion": "v1", "entries": entries}, Dumper=yaml.CSafeDumper, sort_keys=False)
    path.write_text(text)
    return len(text)
