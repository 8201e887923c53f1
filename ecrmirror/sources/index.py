"""Helm repository indexes: parsed (yaml-rs, PyYAML as the fallback), looked up, and where they are kept."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ecrmirror.chart import normalize_created
from ecrmirror.errors import UpstreamError
from ecrmirror.helmyaml import YamlRefused, load_helm_yaml
from ecrmirror.sources.release import ChartRelease, lookup, versions_of


class Index:
    """A parsed index.yaml: chart name -> version -> entry."""

    def __init__(self, location: str, document: Any) -> None:
        # As helm's loadIndex (pkg/repo/index.go): `entries` that is not a mapping fails to
        # unmarshal, while no `entries` (or `entries: null`) is an empty repository.
        entries = document.get("entries") if isinstance(document, dict) else []
        if entries is None:
            entries = {}
        if not isinstance(entries, dict):
            raise UpstreamError(f"{location} is not a Helm repository index (no `entries` mapping)")
        if not document.get("apiVersion"):
            raise UpstreamError(f"{location} has no apiVersion, so helm would not read it either")
        self.location = location
        self.entries: dict[str, dict[str, dict[str, Any]]] = {}
        # name, version -> its entries, for a version listed more than once with different archives
        self._different: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for name, versions in entries.items():
            by_version: dict[str, dict[str, Any]] = {}
            for entry in versions or []:
                if isinstance(entry, dict) and entry.get("version") is not None:
                    version = str(entry["version"])
                    earlier = by_version.get(version)
                    if earlier is not None and _archive(earlier) != _archive(entry):
                        self._different.setdefault((str(name), version), [earlier]).append(entry)
                    by_version[version] = entry
            self.entries[str(name)] = by_version

    def entry(self, name: str, version: str) -> dict[str, Any]:
        different = self._different.get((name, version))
        if different:
            # helm keeps every entry and takes the first after an unstable sort: a silent pick.
            urls = ", ".join(str((entry.get("urls") or ["(no URL)"])[0]) for entry in different)
            raise UpstreamError(
                f"{self.location} lists {name} {version} {len(different)} times, as different archives "
                f"({urls}); helm would pick one of them, ecrmirror picks none. Ask the publisher to list "
                "the version once."
            )
        return lookup(self.entries, name, version, self.location)

    def listed(self, name: str, version: str) -> list[dict[str, Any]]:
        """Every entry the index has for a version: one, or more when it lists different archives."""
        return self._different.get((name, version)) or [self.entries[name][version]]

    def versions(self, name: str) -> list[str]:
        return list(versions_of(self.entries, name, self.location))


@dataclass(frozen=True)
class IndexCache:
    """Where parsed indexes are kept as JSON (which loads many times faster than YAML parses).

    `shared` is this run's own directory: under pytest-xdist the first worker downloads and parses
    an index, the others read its JSON. `keep` (ecrmirror_cache_dir, for CI caches) lasts across
    runs: an index there is revalidated with a conditional GET (ETag, Last-Modified).
    """

    shared: Path | None = None
    keep: Path | None = None


def parse_index(location: str, text: str | bytes, fast: bool = True) -> Index:
    return Index(location, load_index_document(location, text, fast))


def load_index_document(location: str, text: str | bytes, fast: bool = True) -> Any:
    """An index file, parsed with yaml-rs (Rust) when it is installed: a 25 MB index takes it about
    1.5 s, where PyYAML's C loader needs about 28 s, because PyYAML builds its objects in Python.
    PyYAML stays as the fallback (and for spec files, where line numbers matter); tests check
    that both read indexes alike."""
    fast_yaml = _fast_yaml() if fast else None
    if fast_yaml is not None:
        try:
            raw = text.decode("utf-8") if isinstance(text, bytes) else text
            document = fast_yaml.loads(
                raw, parse_datetime=False, duplicate_key_policy=fast_yaml.DuplicateKeyPolicy.LastWins
            )
        except (ValueError, UnicodeDecodeError) as exc:
            raise UpstreamError(f"{location}: the index is not valid YAML or JSON: {exc}") from None
        return document
    try:  # as helm reads YAML: go-yaml's limit on aliases, and no nesting that crashes PyYAML
        return load_helm_yaml(text if isinstance(text, bytes) else text.encode("utf-8"))
    except YamlRefused as exc:
        raise UpstreamError(f"{location}: the index {exc}") from None
    except yaml.YAMLError as exc:
        raise UpstreamError(f"{location}: the index is not valid YAML or JSON: {exc}") from None


def _fast_yaml() -> Any:
    """yaml-rs, a Rust YAML parser much faster on big indexes (optional), or None. Imported with the
    first index: a run whose charts all come from OCI registries reads none, and skips its load."""
    try:
        import yaml_rs
    except ImportError:  # pragma: no cover - depends on the platform's wheels
        return None
    return yaml_rs


def _archive(entry: dict[str, Any]) -> Any:
    """What tells an entry's archive apart: its digest, else its URLs."""
    digest = entry.get("digest")
    if isinstance(digest, str) and digest.strip():
        return digest.strip().lower().removeprefix("sha256:")
    return repr(entry.get("urls"))


def release_from_index(index: Index, name: str, version: str, url: str) -> ChartRelease:
    entry = index.entry(name, version)
    digest = entry.get("digest")
    digest = digest.strip().lower() if isinstance(digest, str) else None
    if digest is None or not re.fullmatch(r"(sha256:)?[0-9a-f]{64}", digest):
        raise UpstreamError(
            f"{name} {version} in {index.location} has no valid sha256 digest, so "
            "its archive cannot be verified; ask the publisher to regenerate the "
            "index with `helm repo index`"
        )
    return ChartRelease(
        name=name,
        version=version,
        digest=digest if digest.startswith("sha256:") else f"sha256:{digest}",
        url=url,
        created=normalize_created(entry.get("created")),
        source=index.location,
    )
