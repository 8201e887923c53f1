"""Keep credentials out of logs: at DEBUG, botocore and urllib3 log request headers and bodies."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

# Loggers of the libraries that carry our credentials: botocore logs SigV4 headers (with the
# session token of web-identity credentials), GetAuthorizationToken's response body, and STS's
# AssumeRoleWithWebIdentity request (the token) and response (the temporary keys).
_LOGGERS = ("botocore", "boto3", "urllib3", "requests", "oras", "ecrmirror", "s3transfer")
_QUOTED = re.compile(
    r"""(?i)(\b(?:authorization|x-amz-security-token|authorizationtoken|password|secretaccesskey|"""
    r"""sessiontoken|webidentitytoken)"""
    r"""['"]?\s*[:=]\s*b?)(['"])(.*?)\2"""
)
_PATTERNS = (
    (re.compile(r"(?i)(\b(?:x-amz-security-token|WebIdentityToken)[:=])([^\s&'\"]+)"), r"\1***"),
    (re.compile(r"(?i)(<(SecretAccessKey|SessionToken)>)[^<]*(</)"), r"\1***\3"),
    (re.compile(r"(?i)(\bBasic\s+)[A-Za-z0-9+/=]{8,}"), r"\1***"),
    (re.compile(r"(?i)(\bBearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1***"),
    (re.compile(r"(?i)(Signature=)[0-9a-f]{64}"), r"\1***"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@"), r"\1***@"),  # user:password@host
)

RecordFactory = Callable[..., logging.LogRecord]


def redact(text: str) -> str:
    """`text` with every credential-looking value replaced by ***."""
    text = _QUOTED.sub(lambda m: f"{m.group(1)}{m.group(2)}***{m.group(2)}", text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
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
