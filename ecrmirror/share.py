"""What the processes of one run (pytest-xdist workers) fetch once and then share.

Every worker collects every item, so each would read the same index and ask ECR the same
batched questions. Under a file lock the first one fetches and writes the answer as JSON into
the run's own directory; the others read it. A run's answers are a snapshot, as one process's
would be: a worker that needs a fresh answer (after a conflicting push, say) asks again itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def once_per_run(directory: Path | None, key: str, fetch: Callable[[], Any]) -> Any:
    """`fetch()`'s JSON-able answer, fetched by whichever process of the run asked first.

    Without a directory (a run without xdist) there is nobody to share with: it just fetches.
    """
    if directory is None:
        return fetch()
    from filelock import FileLock  # here: a run without xdist never takes the lock

    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / f"{name}.json"
    with FileLock(directory / f"{name}.lock"):
        if copy.is_file():
            return json.loads(copy.read_bytes())
        answer = fetch()
        write_atomically(copy, json.dumps(answer, default=str).encode())
        return answer


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` so that a reader sees the whole file or none of it."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
