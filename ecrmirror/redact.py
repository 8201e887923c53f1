"""Keep credentials out of logs: at DEBUG, botocore and urllib3 log request headers and bodies."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

# Loggers of the libraries that carry our credentials: botocore logs SigV4 headers (with the
# session token of web-identity credentials), GetAuthorizationToken's response body, and STS's
# AssumeRoleWithWebIdentity request (the token) and response (the temporary keys).
_LOGGERS = ("botocore", "boto3", "urllib3", "requests", "oras", "ecrmirror", "s3transfer")
_QUOTED_KEY = (
    r"""\b(?:authorization|x-amz-security-token|authorizationtoken|password|secretaccesskey|"""
    r"""sessiontoken|webidentitytoken)['"]?\s*[:=]\s*b?"""
)
_QUOTED = re.compile(rf"""(?i)({_QUOTED_KEY})(['"])(.*?)\2""")
_PATTERNS = (
    (re.compile(r"(?i)(\b(?:x-amz-security-token|WebIdentityToken)[:=])([^\s&'\"]+)"), r"\1***"),
    (re.compile(r"(?i)(<(SecretAccessKey|SessionToken)>)[^<]*(</)"), r"\1***\3"),
    (re.compile(r"(?i)(\bBasic\s+)[A-Za-z0-9+/=]{8,}"), r"\1***"),
    (re.compile(r"(?i)(\bBearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1***"),
    (re.compile(r"(?i)(Signature=)[0-9a-f]{64}"), r"\1***"),
    # Userinfo of any form (user:password@, :token@, token@): all of it, the user may be the token.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#]+@"), r"\1***@"),
    # Query parameters that carry credentials: tokens, keys, and presigned URLs' signatures.
    (
        re.compile(
            r"(?i)([?&;](?:[a-z_-]*token|[a-z_-]*key|auth|sig|signature|password|secret|"
            r"x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&\s#'\"<>]+"
        ),
        r"\1***",
    ),
)
# Whether a text holds anything the patterns above replace, in one pass: most of what a run
# reports (outcome words, digests, sizes) holds nothing, and one search for the union costs less
# than a substitution by each. For _QUOTED it looks for the key and an opening quote: a superset.
_SUSPECT = re.compile(
    "|".join(
        f"(?:{expression})"
        for expression in (
            rf"""{_QUOTED_KEY}['"]""",
            *(pattern.pattern.removeprefix("(?i)") for pattern, _ in _PATTERNS),
        )
    ),
    re.IGNORECASE,
)
# Secrets shorter than this are not looked for in text: "***" in place of every "ab" in a report
# would hide more than it protects. A spec's URL and auth secrets are longer in practice.
MIN_REMEMBERED = 4
_remembered: set[str] = set()
_remembered_pattern: re.Pattern[str] | None = None
_remembered_lock = threading.Lock()

RecordFactory = Callable[..., logging.LogRecord]


def remember(secret: str) -> None:
    """A value read as a credential (a spec's password, token, URL userinfo or query): from now on
    `redact` replaces it, and its URL-encoded forms, wherever it appears, whatever surrounds it."""
    global _remembered_pattern
    forms = {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}
    forms = {form for form in forms if len(form) >= MIN_REMEMBERED} - _remembered
    if not forms:
        return
    with _remembered_lock:
        _remembered.update(forms)
        # Longest first, so that a secret containing another is replaced whole.
        ordered = sorted(_remembered, key=len, reverse=True)
        _remembered_pattern = re.compile("|".join(re.escape(form) for form in ordered))


def redact(text: str) -> str:
    """`text` with every remembered secret and every credential-looking value replaced by ***."""
    pattern = _remembered_pattern
    if pattern is not None:
        text = pattern.sub("***", text)
    if _SUSPECT.search(text) is None:
        return text
    text = _QUOTED.sub(lambda m: f"{m.group(1)}{m.group(2)}***{m.group(2)}", text)
    for expression, replacement in _PATTERNS:
        text = expression.sub(replacement, text)
    return text


def install() -> RecordFactory:
    """Redact log records of credential-carrying libraries as they are made; returns the previous
    factory for `uninstall`. A record factory rather than a filter: filters on a logger do not see
    records of its children, and pytest adds and removes its handlers at every phase."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name.startswith(_LOGGERS):
            message = record.getMessage()
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, ()
        return record

    logging.setLogRecordFactory(factory)
    return previous


def uninstall(previous: RecordFactory) -> None:
    logging.setLogRecordFactory(previous)
