"""HTTP sessions for upstream repositories and registries: one place for retries and timeouts."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ecrmirror import __version__
from ecrmirror.errors import UpstreamError

USER_AGENT = f"ecrmirror/{__version__}"
# (connect, read) seconds: fail a dead host fast, give a slow but alive one time.
TIMEOUT = (10.0, 120.0)
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


def new_session(retries: int = 3) -> requests.Session:
    """A session that retries transient failures of idempotent requests, honouring Retry-After.

    Uploads (POST/PUT of an upload session) are not retried here: a blob upload session cannot be
    replayed, so the registry client restarts the whole blob instead.
    """
    retry = Retry(
        total=retries,
        backoff_factor=0.5,
        backoff_jitter=0.25,
        status_forcelist=(408, 429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.trust_env = True
    return session


def describe_error(exc: requests.RequestException) -> str:
    """The cause, without the urllib3 wrappers and object reprs requests puts around it."""
    reason = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", None) or reason  # MaxRetryError wraps the real cause
    text = str(reason)
    return text.split(": ", 1)[-1] if text.startswith("<") else text


def get(
    session: requests.Session,
    url: str,
    *,
    credentials_for: Callable[[str], dict[str, str]],
    verify: bool | str = True,
    accept: str | None = None,
    stream: bool = False,
) -> requests.Response:
    """GET `url`, following redirects here rather than in requests, so that each hop's
    credentials come from `credentials_for(that URL)`: a redirect to another host (object
    storage, a CDN) gets none unless the caller says so."""
    for _ in range(MAX_REDIRECTS + 1):
        headers = {"Accept": accept} if accept else {}
        headers.update(credentials_for(url))
        response = session.get(
            url, headers=headers, stream=stream, timeout=TIMEOUT, verify=verify, allow_redirects=False
        )
        if response.status_code not in _REDIRECTS:
            return response
        url = urljoin(url, response.headers.get("Location", ""))
        response.close()
    raise UpstreamError(f"more than {MAX_REDIRECTS} redirects, the last to {url}")
