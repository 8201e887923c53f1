"""HTTP sessions for upstream repositories and registries: one place for retries and timeouts."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
import requests.auth
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from requests.structures import CaseInsensitiveDict
from requests.utils import get_environ_proxies
from urllib3.exceptions import DecodeError, MaxRetryError, ProtocolError, ReadTimeoutError
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.util.retry import Retry

from ecrmirror import __version__
from ecrmirror.errors import RetriesExhausted, UpstreamError

if TYPE_CHECKING:
    from types import TracebackType

    from requests.sessions import _Settings
    from typing_extensions import Self
    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

log = logging.getLogger(__name__)
USER_AGENT = f"ecrmirror/{__version__}"
# (connect, read) seconds: fail a dead host fast, give a slow but alive one time.
TIMEOUT = (10.0, 120.0)
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
# What one step may spend reading an upstream's answers (an index, an archive and its .prov, a
# manifest, a blob, a tag list and its pages, a token), however the server paces its bytes:
# requests' read timeout (TIMEOUT) applies to each socket read, so a server sending a byte every
# few seconds never reaches it. 300 s is RetryPolicy's deadline for a step, and reads a 100 MiB
# chart (helm's limit) at 350 KB/s. A server that falls silent instead ends one read timeout
# later: no step reads for longer than READ_DEADLINE + TIMEOUT[1] seconds.
READ_DEADLINE = 300.0
_CHUNK = 1 << 20
# An answer whose body nobody wants (a HEAD's, a redirect's, a 401's) is read to its end when its
# Content-Length says it is this short, so that its connection serves the next request, as
# requests does for redirects; a longer or unsized one costs the connection instead.
_DISCARD = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


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

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if response is not None:
            # urllib3 reads the body of an answer it retries to its end, to reuse the connection
            # (drain_conn), and offers no limit: a server answering 503 with an endless body would
            # hold the step for ever. The connection is closed instead (and returned to the pool,
            # which connects it again), and the body never read.
            response.close()
            response.release_conn()
        return retry


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


class _NoNetrc(requests.auth.AuthBase):
    """A session's own auth that adds nothing: its presence keeps requests from reading netrc."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


class _Session(requests.Session):
    """requests.Session, reading the environment's proxy and CA-bundle settings once per host.

    requests reads them again for every request: two scans of os.environ, about 1 ms of CPU in
    a GitLab job with its 150 variables, more than the rest of a small request costs. The
    environment does not change during a run. The result is what requests itself would merge.
    """

    def __init__(self) -> None:
        super().__init__()
        # Never ~/.netrc: requests (trusting the environment, for proxies and CA bundles) would
        # add its credentials to any request without its own, a plain-http hop an upstream
        # redirected to included. Credentials come from the spec alone, as helm's do.
        self.auth = _NoNetrc()
        # No session-wide query parameters, as None rather than {}: requests then has nothing to
        # merge into each request's own. Merging two dicts costs it 6 to 17 us on Python 3.11
        # (isinstance checks against a runtime-checkable Protocol), several times a request.
        self.params = None  # type: ignore[assignment]
        self._from_environment: dict[tuple[str, str], dict[str, str]] = {}
        self._ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = True,
        proxies: Any = None,
        hooks: Any = None,
        stream: bool | None = None,
        verify: Any = None,
        cert: Any = None,
        json: Any = None,
    ) -> requests.Response:
        """requests.Session.request; a request without redirects to follow, cookies, auth or the
        like (every registry and upstream request ecrmirror makes) goes straight to the adapter.

        requests' full path merges cookies, hooks and session settings and looks for the next
        redirect: about 55 us of a plain GET's 420 us of client CPU here, at some 46 requests an
        image. The adapter still connects, retries (urllib3's Retry), picks the proxy, checks TLS,
        raises requests' errors and builds requests' Response. No cookie is sent or kept, as
        helm's HTTP client keeps none."""
        extra = (params, cookies, files, auth, proxies, hooks, cert)
        if allow_redirects or json is not None or any(each is not None for each in extra):
            return super().request(
                method,
                url,
                params,
                data,
                headers,
                cookies,
                files,
                auth,
                timeout,
                allow_redirects,
                proxies,
                hooks,
                stream,
                verify,
                cert,
                json,
            )
        merged = CaseInsensitiveDict(self.headers)
        merged.update(headers or {})
        prepared = requests.PreparedRequest()
        prepared.prepare(method=method.upper(), url=url, headers=merged, data=data)
        # What requests' own path would pass the adapter (verify is never None once merged).
        settings: dict[str, Any] = dict(self.merge_environment_settings(url, None, stream, verify, None))
        response = self.get_adapter(url).send(prepared, timeout=timeout, **settings)
        if not settings["stream"]:
            response.content  # noqa: B018 - read now, as requests does for a request not streamed
        return response

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
            "proxies": merge(proxies, self.proxies) if self.proxies else proxies,
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


def origin(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of `url`, the port filled in for http(s); None when it has no valid port."""
    parts = urlsplit(url)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def may_carry_credentials(url: str, plain_http: str | None) -> bool:
    """Whether a request to `url` may carry credentials: over https, or to the very scheme, host
    and port the user configured as plain http (`plain_http`: an http:// repository URL, a
    plain_http registry): the user chose that one, not a redirect or a URL an upstream lists."""
    where = origin(url)
    if where is None:
        return False
    if where[0] == "https":
        return True
    return where[0] == "http" and plain_http is not None and where == origin(plain_http)


class Http:
    """The run's HTTP for upstreams: one session (idempotent retries in urllib3), redirects
    followed by `get`, bodies read by `chunks` and `read` (bounded in size and time), and
    `retrying` for steps that read a body or span several requests. At most `per_host` requests
    are in flight to one upstream host: to be a polite mirror."""

    def __init__(
        self,
        policy: RetryPolicy = DEFAULT_POLICY,
        per_host: int = 4,
        pull_reserve: int = 10,
        read_deadline: float | None = None,
    ) -> None:
        self.policy = policy
        self.per_host = per_host
        self.pull_reserve = pull_reserve  # see sources/oci.py: a registry's pull limit
        # Seconds a step may spend reading answers (see READ_DEADLINE, read when the run starts).
        self.read_deadline = READ_DEADLINE if read_deadline is None else read_deadline
        self.session = new_session(policy, per_host, per_host_limit=True)

    def get(
        self,
        url: str,
        *,
        credentials_for: Callable[[str], dict[str, str]],
        verify: bool | str = True,
        accept: str | None = None,
        headers: dict[str, str] | None = None,
        method: str = "GET",
        plain_http: str | None = None,
    ) -> requests.Response:
        """GET (or HEAD) `url`, following redirects here rather than in requests, so that each
        hop's credentials come from `credentials_for(that URL)`: a redirect to another host
        (object storage, a CDN) gets none unless the caller says so. Whatever the caller says, a
        hop over plain http gets none unless it is `plain_http`, the scheme and host the user
        configured as plain http (see may_carry_credentials): a redirect from https to http, on
        the same host too, sends none.

        The answer is streamed: its body is read with `chunks` or `read`, or the response closed.
        """
        extra = headers or {}
        for _ in range(MAX_REDIRECTS + 1):
            headers = {**extra, **({"Accept": accept} if accept else {})}
            if may_carry_credentials(url, plain_http):
                headers.update(credentials_for(url))
            response = self.session.request(
                method,
                url,
                headers=headers,
                stream=True,
                timeout=TIMEOUT,
                verify=verify,
                allow_redirects=False,
            )
            if response.status_code not in _REDIRECTS:
                return response
            self.discard(response)
            location = urljoin(url, response.headers.get("Location", ""))
            if urlsplit(location).scheme.lower() not in _DEFAULT_PORTS:
                raise UpstreamError(f"{url} redirects to {location[:100]}; only http(s) is followed")
            url = location
        raise UpstreamError(f"more than {MAX_REDIRECTS} redirects, the last to {url}")

    def discard(self, response: requests.Response) -> None:
        """Done with `response` without wanting its body: read to its end if it is short (see
        _DISCARD), so that the connection is kept, and closed."""
        left = getattr(response.raw, "length_remaining", None)
        try:
            if isinstance(left, int) and left <= _DISCARD:
                for _ in self.chunks(response, str(response.url), limit=_DISCARD):
                    pass
        except (UpstreamError, requests.RequestException):
            pass  # then the connection is closed with the response
        finally:
            response.close()

    def deadline(self) -> float:
        """When a step starting now must be done reading (time.monotonic()), for `chunks`."""
        return time.monotonic() + self.read_deadline

    def chunks(
        self,
        response: requests.Response,
        url: str,
        *,
        limit: int | None = None,
        deadline: float | None = None,
        too_large: str | None = None,
    ) -> Iterator[bytes]:
        """The body of a response from `get`, in pieces as they arrive: the one way ecrmirror
        reads an upstream's answer. Past `limit` bytes it stops with UpstreamError (`too_large`,
        or a message naming `url`); so it does at `deadline` (a step's `deadline()`, by default
        one from now), however slowly the bytes come. Errors of the connection are requests' own,
        as iter_content raises them, so that `retrying` retries them."""
        ends = self.deadline() if deadline is None else deadline
        size = 0
        while True:
            if time.monotonic() >= ends:
                raise UpstreamError(
                    f"{url} was still arriving when the {self.read_deadline:g} s ecrmirror gives a step "
                    f"to read an upstream's answers ran out ({size} bytes read); it stopped reading. The "
                    "server is overloaded or sends slowly on purpose: try again later (ini "
                    "ecrmirror_upstream_read_deadline gives a slow but honest server more time)"
                )
            chunk = _read_some(response)
            if not chunk:
                return
            size += len(chunk)
            if limit is not None and size > limit:
                raise UpstreamError(
                    too_large or f"{url} is larger than {limit} bytes; ecrmirror stopped reading it"
                )
            yield chunk

    def read(
        self,
        response: requests.Response,
        url: str,
        *,
        limit: int,
        deadline: float | None = None,
        too_large: str | None = None,
    ) -> bytes:
        """The whole body of a response from `get`, bounded as `chunks` bounds it."""
        return b"".join(self.chunks(response, url, limit=limit, deadline=deadline, too_large=too_large))

    def retrying(self, step: Callable[[], T], *, what: str) -> T:
        return retrying(step, what=what, policy=self.policy)


def _read_some(response: requests.Response) -> bytes:
    """What has arrived of the body, at most _CHUNK bytes, from one read of the socket: urllib3's
    read(n), under requests' iter_content, waits until n bytes have come, which a trickling server
    stretches without end, so that no deadline could be checked between pieces. urllib3's read1
    returns what one read gives; its errors become requests' own, as iter_content does it."""
    try:
        return response.raw.read1(_CHUNK, decode_content=True) or b""
    except ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from None
    except DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from None
    except ReadTimeoutError as exc:
        raise requests.ConnectionError(exc) from None
    except Urllib3SSLError as exc:
        raise requests.exceptions.SSLError(exc) from None


def hop_note(response: requests.Response, url: str, plain_http: str | None = None) -> str:
    """For a message about `response` to a request for `url`: "redirected to URL" when it came
    from elsewhere, and that it carried no credentials when it came over plain http that
    `plain_http` does not name (Http.get withholds them there), which explains a 401; "" when
    there is nothing to say. The URL is shown without its query (a presigned URL's signature)."""
    final = response.url or url
    parts = urlsplit(final)
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"[:200]
    notes = [f"redirected to {shown}"] if final != url else []
    if not may_carry_credentials(final, plain_http) and (notes or response.status_code in (401, 403)):
        notes.append("over plain http: ecrmirror sent no credentials there")
    return ", ".join(notes)


def attempts_note(response: requests.Response) -> str:
    """ " after N attempts" when urllib3 retried this response's request, for messages."""
    retries = getattr(response.raw, "retries", None)
    history = getattr(retries, "history", ()) or ()
    return f" after {len(history) + 1} attempts" if history else ""
