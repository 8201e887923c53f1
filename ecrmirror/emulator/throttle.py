"""Throttling as ECR answers it, when a test or a user switches it on (`--throttle`).

Each action has a token bucket per account and region, refilled at ECR's default rate quota and
holding one second's worth (userguide/service-quotas.html: BatchGetImage 2,000 per second,
BatchCheckLayerAvailability 1,000; the earlier per-action table: GetAuthorizationToken 200,
InitiateLayerUpload, CompleteLayerUpload and PutImage 10). The quotas are adjustable in AWS, so
`rates` may be replaced. A throttled API call gets ThrottlingException, a registry request 429
TOOMANYREQUESTS "Rate exceeded".
"""

from __future__ import annotations

import threading
import time
from collections import Counter

DEFAULT_RATES = {
    "BatchGetImage": 2000.0,
    "BatchCheckLayerAvailability": 1000.0,
    "GetDownloadUrlForLayer": 3000.0,
    "GetAuthorizationToken": 200.0,
    "InitiateLayerUpload": 10.0,
    "UploadLayerPart": 260.0,
    "CompleteLayerUpload": 10.0,
    "PutImage": 10.0,
}


class Throttle:
    def __init__(self, enabled: bool = False, rates: dict[str, float] | None = None) -> None:
        self.enabled = enabled
        self.rates = dict(DEFAULT_RATES if rates is None else rates)
        self._buckets: dict[tuple[str, str, str], tuple[float, float]] = {}  # -> (tokens, when)
        self._lock = threading.Lock()
        self.throttled: Counter[str] = Counter()  # action -> calls refused, for a test's figures

    def allows(self, account: str, region: str, action: str) -> bool:
        """Take a token for `action`; False when the bucket is empty (the call is throttled)."""
        rate = self.rates.get(action)
        if not self.enabled or rate is None:
            return True
        key = (account, region, action)
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key, (rate, now))
            tokens = min(rate, tokens + (now - then) * rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                self.throttled[action] += 1
                return False
            self._buckets[key] = (tokens - 1, now)
            return True

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self.throttled.clear()
