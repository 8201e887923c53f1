"""SigV4 signatures as AWS checks them, when the emulator enforces IAM: a signed API request must
carry the signature that the secret the emulator issued for its access key gives, else the service
refuses it, in its protocol's words.

The secret is the emulator's own for its administrator keys, else the one moto's IAM issued with
a user's access key or moto's STS with an assumed role's (whose session token must match). The
expected signature is botocore's (`SigV4Auth` over the request as it arrived), compared in constant
time. JSON services (ECR, KMS) answer an unknown key with `UnrecognizedClientException` and a wrong
signature with `InvalidSignatureException`, HTTP 400; query services (IAM, STS) with
`InvalidClientTokenId` and `SignatureDoesNotMatch`, HTTP 403 (see docs/emulator-fidelity.md, row 23).
The registry (`/v2/`) is not signed: it takes the Basic token GetAuthorizationToken issued.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping

from werkzeug.wrappers import Request, Response

from ecrmirror.emulator.answers import api_error
from ecrmirror.emulator.iam import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY
from ecrmirror.emulator.sts import STS_NAMESPACE, query_error

QUERY_SERVICES = {"iam": "https://iam.amazonaws.com/doc/2010-05-08/", "sts": STS_NAMESPACE}
# JSON services end the sentence with a period, STS and IAM do not.
UNKNOWN_KEY = "The security token included in the request is invalid"
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)
_ADMIN_KEY = re.compile(rf"^{ADMIN_ACCESS_KEY}(-\d{{12}})?$")
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<headers>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]+)$"
)


def refuse_signature(request: Request, body: bytes) -> Response | None:
    """The service's refusal of a signed request whose key or signature AWS would not accept;
    None for a request that is not SigV4-signed, or whose signature holds."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("AWS4-HMAC-SHA256 "):
        return None  # unsigned: web identity, or the registry's own Basic auth
    signed = _AUTHORIZATION.match(header.strip())
    service = signed["service"] if signed else ""
    if signed is None:
        return _refusal(service, unknown_key=False)
    token = request.headers.get("X-Amz-Security-Token", "")
    secret = issued_secret(signed["key"], token)
    if secret is None:
        return _refusal(service, unknown_key=True)
    expected = _signature(request, body, signed, secret, token)
    if expected is None or not hmac.compare_digest(expected, signed["signature"]):
        return _refusal(service, unknown_key=False)
    return None


def issued_secret(access_key: str, session_token: str = "") -> str | None:
    """The secret the emulator issued with `access_key`, or None if it issued no such key (or the
    key is an assumed role's and `session_token` is not that session's)."""
    if _ADMIN_KEY.match(access_key):
        return ADMIN_SECRET_KEY
    from moto.iam.access_control import CreateAccessKeyFailure, create_access_key
    from moto.iam.models import get_account_id_from

    headers = {"X-Amz-Security-Token": session_token} if session_token else {}
    try:
        key = create_access_key(
            account_id=get_account_id_from(access_key),
            partition="aws",
            access_key_id=access_key,
            headers=headers,
        )
    except CreateAccessKeyFailure:
        return None
    return str(key.create_credentials().secret_key)


def _signature(request: Request, body: bytes, signed: re.Match[str], secret: str, token: str) -> str | None:
    """botocore's SigV4 signature of the request as it arrived, with its signed headers only."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    names = signed["headers"].split(";")
    headers: Mapping[str, str] = {name: request.headers.get(name, "") for name in names}
    if "x-amz-date" not in names or not headers["x-amz-date"].startswith(signed["date"]):
        return None  # AWS refuses a signature whose date it cannot check
    # The path and query exactly as sent: werkzeug's PATH_INFO is already decoded.
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path
    aws_request = AWSRequest(
        method=request.method, url=f"http://{request.host}{raw}", data=body, headers=dict(headers)
    )
    aws_request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(Credentials(signed["key"], secret, token or None), signed["service"], signed["region"])
    canonical = auth.canonical_request(aws_request)
    return str(auth.signature(auth.string_to_sign(aws_request, canonical), aws_request))


def _refusal(service: str, *, unknown_key: bool) -> Response:
    if service in QUERY_SERVICES:
        code = "InvalidClientTokenId" if unknown_key else "SignatureDoesNotMatch"
        return query_error(403, code, UNKNOWN_KEY if unknown_key else MISMATCH, QUERY_SERVICES[service])
    code = "UnrecognizedClientException" if unknown_key else "InvalidSignatureException"
    return api_error(code, UNKNOWN_KEY + "." if unknown_key else MISMATCH)
