"""How ECR answers: the API's JSON errors, the registry's OCI errors, and one refusal for both.

Image and repository rules live once (images.py, repositories.py) and raise `Refused`; the API
answers it with its exception name, the registry with its OCI error code, as ECR does.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response

API_CONTENT_TYPE = "application/x-amz-json-1.1"
# Every registry answer carries it, as ECR's do (the distribution spec's version header).
DISTRIBUTION_HEADER = {"Docker-Distribution-Api-Version": "registry/2.0"}


class Refused(Exception):
    """ECR refuses a request: `code` as the API names it, `oci` as the registry does."""

    def __init__(
        self, code: str, message: str, *, oci: str = "", status: int = 400, oci_status: int = 400
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.oci = oci or "UNSUPPORTED"
        self.status = status
        self.oci_status = oci_status

    def api(self) -> Response:
        return api_error(self.code, self.message, self.status)

    def registry(self) -> Response:
        return oci_error(self.oci_status, self.oci, self.message)


def api_answer(document: Any) -> Response:
    return Response(json.dumps(document, default=str), content_type=API_CONTENT_TYPE)


def api_error(code: str, message: str, status: int = 400) -> Response:
    return Response(
        json.dumps({"__type": code, "message": message}), status=status, content_type=API_CONTENT_TYPE
    )


def validation_error(field: str, value: Any, constraint: str) -> Refused:
    """The message AWS's request validation gives for a parameter outside the API's model."""
    shown = json.dumps(value)[:200]
    return Refused(
        "ValidationException",
        f"1 validation error detected: Value '{shown}' at '{field}' failed to satisfy constraint: "
        + constraint,
    )


def oci_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": {}}]})
    return Response(
        body,
        status=status,
        headers={**DISTRIBUTION_HEADER, **(headers or {})},
        content_type="application/json",
    )
