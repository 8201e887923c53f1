"""HTTP sessions for upstream repositories and registries: one place for retries and timeouts."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ecrmirror import __version__

USER_AGENT = f"ecrmirror/{__version__}"
# (connect, read) seconds: fail a dead host fast, give a slow but alive one time.
TIMEOUT = (10.0, 120.0)


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
