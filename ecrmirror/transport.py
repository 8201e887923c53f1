"""HTTP sessions for upstream repositories and registries: one place for retries and timeouts."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from ecrmirror import __version__
from ecrmirror.errors import RetriesExhausted, UpstreamError

if TYPE_CHECKING:
    from requests.sessions import _Settings

log = logging.getLogger(__name__)
USER_AGENT = f"ecrmirror/{__version__}"
# (connect, read) seconds: fail a dead host fast, give a slow but alive one time.
TIMEOUT = (10.0, 120.0)
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


# Statuses worth another try: timeouts, throttling, and server errors.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# An error that a new attempt may not repeat: the connection, not the request, was at fault.
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,  # the body was cut short
)


def _worth_another_try(exc: Exception) -> bool:
    """A transient error that urllib3 has not retried already: it retries what it can (connect
    errors, and any error of a GET or HEAD) and then wraps the last in MaxRetryError; retrying
    that again would multiply the attempts. What it leaves alone is a cut-short body and a
    broken upload (POST, PUT): those are ours to retry."""
    cause = exc.args[0] if exc.args else None
    return not isinstance(cause, MaxRetryError)


T = TypeVar("T")


class _CappedRetry(Retry):
    """urllib3's Retry, with a server's Retry-After honoured up to a cap, so one answer cannot
    stall an unattended run for an hour."""

    RETRY_AFTER_CAP = 30.0

    def get_retry_after(self, response: Any) -> float | None:
        wait = super().get_retry_after(response)
        return None if wait is None else min(wait, self.RETRY_AFTER_CAP)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts (the first included), exponential backoff with jitter, and a
    deadline for one step, however many attempts remain."""

    attempts: int = 5
    backoff: float = 0.5  # seconds before the first retry, doubled for each next one
    max_wait: float = 30.0
    deadline: float = 300.0

    def retry(self, methods: frozenset[str] | None) -> Retry:
        return _CappedRetry(
            total=self.attempts - 1,
            backoff_factor=self.backoff,
            backoff_jitter=self.backoff / 2,
            backoff_max=self.max_wait,
            status_forcelist=TRANSIENT_STATUSES,
            allowed_methods=methods,
            respect_retry_after_header=True,
            raise_on_status=False,
        )


DEFAULT_POLICY = RetryPolicy()


class _Session(requests.Session):
    """requests.Session, reading the environment's proxy and CA-bundle settings once per host.

    requests reads them again for every request: two scans of os.environ, about 1 ms of CPU in
    a GitLab job with its 150 variables, more than the rest of a small request costs. The
    environment does not change during a run. The result is what requests itself would merge.
    """

    def __init__(self) -> None:
        super().__init__()
        self._from_environment: dict[tuple[str, str], dict[str, str]] = {}
        self._ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> _Settings:
        if self.trust_env:
            parts = urlsplit(url)
            key = (parts.scheme, parts.netloc)
            if key not in self._from_environment:
                self._from_environment[key] = get_environ_proxies(url, no_proxy=None)
            proxies = dict(proxies or {})
            for scheme, proxy in self._from_environment[key].items():
                proxies.setdefault(scheme, proxy)
            if verify is True or verify is None:
                verify = self._ca_bundle or verify
        merge: Callable[[Any, Any], Any] = merge_setting  # untyped in requests' stubs
        return {
            "proxies": merge(proxies, self.proxies),
            "stream": merge(stream, self.stream),
            "verify": merge(verify, self.verify),
            "cert": merge(cert, self.cert),
        }


def new_session(
    policy: RetryPolicy = DEFAULT_POLICY, connections: int = 10, *, per_host_limit: bool = False
) -> requests.Session:
    """A session whose GETs and HEADs retry transient failures by themselves (urllib3's Retry).

    Uploads are not retried here: an upload session cannot be replayed, and a streamed body
    cannot be rewound by urllib3, so the registry client retries a whole blob with `retrying`.
    `connections` are kept per host; with `per_host_limit`, a request waits for one of them
    (urllib3's pool_block), so that no host gets more requests at once than that, however many
    threads ask.
    """
    session = _Session()
    adapter = HTTPAdapter(
        max_retries=policy.retry(frozenset({"GET", "HEAD"})),
        pool_maxsize=connections,
        pool_block=per_host_limit,
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.trust_env = True
    return session


def retrying(step: Callable[[], T], *, what: str, policy: RetryPolicy) -> T:
    """Run `step` until it succeeds, backing off between attempts as urllib3's Retry computes it.

    A step fails transiently by raising one of TRANSIENT_ERRORS, or by returning a response with
    a TRANSIENT_STATUSES status; anything else it returns or raises is final. When the attempts
    or the deadline run out, RetriesExhausted names the step, the attempts and the last error.
    """
    retry = policy.retry(None)
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        error: Exception | None = None
        response: Any = None
        try:
            result = step()
        except TRANSIENT_ERRORS as exc:
            if not _worth_another_try(exc):
                raise
            error = exc
        else:
            if not (isinstance(result, requests.Response) and result.status_code in TRANSIENT_STATUSES):
                return result
            response = result
        out_of_time = time.monotonic() - started >= policy.deadline
        try:
            if out_of_time:
                raise MaxRetryError(None, what)  # type: ignore[arg-type]
            retry = retry.increment(
                method="PUT", url=what, response=getattr(response, "raw", None), error=error
            )
        except MaxRetryError:
            if response is not None:
                detail = f"HTTP {response.status_code} {response.reason}".strip()
                if response.status_code == 429:
                    detail += (
                        " (throttled: fewer workers (-n), a longer ecrmirror_retry_backoff or more "
                        "--ecrmirror-retries give the server's rate limit time to refill)"
                    )
            elif isinstance(error, requests.RequestException):
                detail = describe_error(error)
            else:
                detail = str(error)
            raise RetriesExhausted(f"{what} failed after {attempt} attempts: {detail}") from None
        log.info(
            "retrying %s (attempt %d failed: %s)", what, attempt, error or f"HTTP {response.status_code}"
        )
        retry.sleep(getattr(response, "raw", None))
        if response is not None:
            response.close()


def describe_error(exc: requests.RequestException) -> str:
    """The cause, without the urllib3 wrappers and object reprs requests puts around it."""
    reason = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", None) or reason  # MaxRetryError wraps the real cause
    text = str(reason)
    return text.split(": ", 1)[-1] if text.startswith("<") else text


class Http:
    """The run's HTTP for upstreams: one session (idempotent retries in urllib3), redirects
    followed by `get`, and `retrying` for steps that read a body or span several requests.
    At most `per_host` requests are in flight to one upstream host: to be a polite mirror."""

    def __init__(
        self, policy: RetryPolicy = DEFAULT_POLICY, per_host: int = 4, pull_reserve: int = 10
    ) -> None:
        self.policy = policy
        self.per_host = per_host
        self.pull_reserve = pull_reserve  # see sources/oci.py: a registry's pull limit
        self.session = new_session(policy, per_host, per_host_limit=True)

    def get(
        self,
        url: str,
        *,
        credentials_for: Callable[[str], dict[str, str]],
        verify: bool | str = True,
        accept: str | None = None,
        stream: bool = False,
        headers: dict[str, str] | None = None,
        method: str = "GET",
    ) -> requests.Response:
        """GET (or HEAD) `url`, following redirects here rather than in requests, so that each
        hop's credentials come from `credentials_for(that URL)`: a redirect to another host
        (object storage, a CDN) gets none unless the caller says so."""
        extra = headers or {}
        for _ in range(MAX_REDIRECTS + 1):
            headers = {**extra, **({"Accept": accept} if accept else {})}
            headers.update(credentials_for(url))
            response = self.session.request(
                method,
                url,
                headers=headers,
                stream=stream,
                timeout=TIMEOUT,
                verify=verify,
                allow_redirects=False,
            )
            if response.status_code not in _REDIRECTS:
                return response
            url = urljoin(url, response.headers.get("Location", ""))
            response.close()
        raise UpstreamError(f"more than {MAX_REDIRECTS} redirects, the last to {url}")

    def retrying(self, step: Callable[[], T], *, what: str) -> T:
        return retrying(step, what=what, policy=self.policy)


def attempts_note(response: requests.Response) -> str:
    """ " after N attempts" when urllib3 retried this response's request, for messages."""
    retries = getattr(response.raw, "retries", None)
    history = getattr(retries, "history", ()) or ()
    return f" after {len(history) + 1} attempts" if history else ""
