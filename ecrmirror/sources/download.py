"""Archives and provenance files fetched over HTTP: streamed to disk, capped, verified by digest."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

from ecrmirror import transport
from ecrmirror.chart import MAX_CHART_SIZE
from ecrmirror.errors import DigestMismatch, EcrMirrorError, UpstreamError
from ecrmirror.sources.release import ChartRelease
from ecrmirror.transport import describe_error

_CHUNK = 1 << 20


MAX_PROVENANCE_SIZE = 1 << 20


def no_credentials(url: str) -> dict[str, str]:
    return {}


def download_archive(
    http: transport.Http,
    release: ChartRelease,
    workdir: Path,
    credentials_for: Callable[[str], dict[str, str]] = no_credentials,
    verify: bool | str = True,
    max_bytes: int = MAX_CHART_SIZE,
    plain_http: str | None = None,
) -> Path:
    """Stream the archive to disk and verify it; a body cut short is downloaded again, within
    the step's time (transport.READ_DEADLINE). `plain_http`: see transport.Http.get.

    An archive is never bigger than the chart it decompresses to, so the chart limit caps it too.
    """
    target = Path(tempfile.mkstemp(dir=workdir, suffix=".tgz")[1])
    deadline = http.deadline()
    too_large = (
        f"{release.url} is larger than {max_bytes} bytes, more than a chart may be "
        f"(helm's limit is {MAX_CHART_SIZE} decompressed; ini ecrmirror_max_chart_size "
        "raises ecrmirror's); nothing was pushed"
    )

    def attempt() -> Path:
        with (
            open(target, "wb") as out,
            http.get(
                release.url, credentials_for=credentials_for, verify=verify, plain_http=plain_http
            ) as resp,
        ):
            if resp.status_code != 200:
                note = transport.hop_note(resp, release.url, plain_http)
                raise UpstreamError(
                    f"cannot download {release.url}{f' ({note})' if note else ''}: "
                    f"HTTP {resp.status_code} {resp.reason}{transport.attempts_note(resp)}"
                )
            for chunk in http.chunks(
                resp, release.url, limit=max_bytes, deadline=deadline, too_large=too_large
            ):
                out.write(chunk)
        return target

    try:
        http.retrying(attempt, what=f"download of {release.url}")
        verify_digest(target, release)
    except requests.RequestException as exc:
        target.unlink(missing_ok=True)
        raise UpstreamError(f"cannot download {release.url}: {describe_error(exc)}") from None
    except EcrMirrorError:
        target.unlink(missing_ok=True)
        raise
    return target


def download_provenance(
    http: transport.Http,
    release: ChartRelease,
    workdir: Path,
    credentials_for: Callable[[str], dict[str, str]],
    verify: bool | str,
    plain_http: str | None = None,
) -> Path | None:
    url = _with_suffix(release.url, ".prov")
    try:
        with http.get(url, credentials_for=credentials_for, verify=verify, plain_http=plain_http) as resp:
            if resp.status_code in (403, 404):  # object stores answer 403 for a missing key
                return None
            if resp.status_code != 200:
                note = transport.hop_note(resp, url, plain_http)
                raise UpstreamError(
                    f"cannot download {url}{f' ({note})' if note else ''}: "
                    f"HTTP {resp.status_code} {resp.reason}"
                )
            target = Path(tempfile.mkstemp(dir=workdir, suffix=".prov")[1])
            # An upstream that never ends its answer must not fill the disk: a .prov is a signed
            # Chart.yaml and a digest, a few KiB (helm package --sign writes about 1).
            target.write_bytes(http.read(resp, url, limit=MAX_PROVENANCE_SIZE))
            return target
    except requests.RequestException as exc:
        raise UpstreamError(f"cannot download {url}: {describe_error(exc)}") from None


def _with_suffix(url: str, suffix: str) -> str:
    """`url` with `suffix` after its path, keeping a query string (helm keeps the repo's query)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path + suffix))


def verify_digest(path: Path, release: ChartRelease) -> None:
    actual = file_digest(path)
    if actual != release.digest:
        path.unlink(missing_ok=True)
        raise DigestMismatch(
            f"{release.name} {release.version}: the archive from {release.url} has digest {actual}, "
            f"but {release.source} says {release.digest}. Nothing was pushed. The upstream may have "
            "republished this version or the download was corrupted; investigate before mirroring."
        )


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()
