"""Manifests ECR holds, kept by digest, so that an audit reads what a tag holds without pulling it.

Every pull (BatchGetImage, a manifest GET) stamps the image's `lastRecordedPullTime`, which
lifecycle rules with `sinceImagePulled` go by (userguide/pull-time-update-exclusions.html): an
audit that pulled each version every night would keep all of them "recently pulled" and the
owner's archive rules would never fire. DescribeImages names each tag's digest without pulling,
and a digest names the same bytes forever: a manifest ecrmirror pushed or fetched once is kept
here and never asked for again. What is read back is checked against its digest first, so
whoever can write the directory (a CI cache) cannot change what ecrmirror believes ECR holds.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class ManifestStore:
    """Manifests by digest: in memory for the run, and in `directory` (if any) across runs."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._known: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> bytes | None:
        with self._lock:
            if digest in self._known:
                return self._known[digest]
        path = self._path(digest)
        if path is None or not path.is_file():
            return None
        data = path.read_bytes()
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            return None  # not what the digest names: never believed, fetched again instead
        with self._lock:
            self._known[digest] = data
        return data

    def put(self, digest: str, data: bytes) -> None:
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            return  # the caller's digest is of other bytes: keep nothing rather than a lie
        with self._lock:
            self._known[digest] = data
        path = self._path(digest)
        if path is None or path.is_file():
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Written aside and renamed: a reader (another xdist worker) never sees half a file.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)

    def _path(self, digest: str) -> Path | None:
        if self.directory is None or not _DIGEST.match(digest):
            return None
        return self.directory / digest.replace(":", "-")
