"""oras-py's registry client, fitted to ECR: imported only by a run that writes to a registry."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import oras.provider
import requests
from botocore.retries import bucket, throttling
from botocore.retries.adaptive import ClientRateLimiter, RateClocker

from ecrmirror.ecr import RegistryToken
from ecrmirror.transport import DEFAULT_POLICY, TIMEOUT, RetryPolicy, new_session


class OrasRegistry(oras.provider.Registry):  # type: ignore[misc]
    """oras-py's Registry with the three things ECR needs that it lacks (see the facts file).

    - credentials go with every request: oras' "ecr" backend waits for a 401 each time;
    - the ECR token is renewed before it expires, and once on ECR's expired-token 403;
    - no oras retry decorator: it sleeps 2 + 3^n seconds on any exception and retries
      non-idempotent uploads. Idempotent retries live in the session (transport.new_session).
    """

    def __init__(
        self,
        endpoint: str,
        token: Callable[[bool], RegistryToken],
        policy: RetryPolicy = DEFAULT_POLICY,
        connections: int = 10,
    ) -> None:
        parts = urlsplit(endpoint)
        super().__init__(hostname=parts.netloc, insecure=parts.scheme == "http")
        self.session = new_session(policy, connections)
        self._token = token
        self._limiter = _adaptive_limiter()

    def _authorization(self, refresh: bool = False) -> str:
        token = self._token(refresh)
        basic = base64.b64encode(f"{token.username}:{token.password}".encode()).decode()
        return f"Basic {basic}"

    def do_request(
        self,
        url: str,
        method: str = "GET",
        data: Any = None,
        headers: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        request_headers = dict(headers or {})
        for attempt in (0, 1):
            request_headers["Authorization"] = self._authorization(refresh=attempt == 1)
            if hasattr(data, "seek"):
                data.seek(0)
            self._limiter.on_sending_request(None)
            response = self.session.request(
                method,
                url,
                data=data,
                json=json,
                headers=request_headers,
                stream=stream,
                timeout=TIMEOUT,
                allow_redirects=False,
            )
            self._limiter.on_receiving_response(status=response.status_code)
            # ECR answers an expired token with 403 and no WWW-Authenticate (and HEAD has no body
            # to say so): renew once and retry.
            if response.status_code == 403 and attempt == 0 and "WWW-Authenticate" not in response.headers:
                continue
            return response
        return response  # pragma: no cover - the loop always returns


class _Throttled:
    """The throttling detector botocore's rate limiter asks: ECR's registry says 429."""

    def is_throttling_error(self, status: int | None = None, **_: Any) -> bool:
        return status == 429


def _adaptive_limiter() -> ClientRateLimiter:
    """botocore's adaptive retry mode, for the registry's HTTP as boto3 has it for the API: no limit
    until ECR throttles (its upload and PutImage quotas are a few per second, and jobs push
    faster), then a client-side token bucket whose rate follows CUBIC, shared by the jobs."""
    clock = bucket.Clock()
    return ClientRateLimiter(
        rate_adjustor=throttling.CubicCalculator(starting_max_rate=0, start_time=clock.current_time()),
        rate_clocker=RateClocker(clock),
        token_bucket=bucket.TokenBucket(max_rate=1, clock=clock),
        throttling_detector=_Throttled(),
        clock=clock,
    )
