"""The ECR control plane through boto3: tokens, repositories, and what a repository holds, in batches."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions
from botocore.config import Config

from ecrmirror.chart import MANIFEST_MEDIA_TYPE, chart_layer_digest
from ecrmirror.errors import AwsError, CredentialsMissing
from ecrmirror.spec import Registry, RepositorySettings
from ecrmirror.transport import USER_AGENT

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

BATCH_GET_IMAGE_LIMIT = 100  # ECR's limit of imageIds per BatchGetImage call
CREDENTIALS_HELP = (
    "ecrmirror found no AWS credentials. Provide them the way boto3 looks for them: "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or web identity "
    "(AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE, as GitLab's OIDC id_tokens give). "
    "To run without AWS, add --offline."
)


@dataclass(frozen=True)
class RemoteImage:
    """A tag as ECR holds it."""

    tag: str
    manifest_digest: str
    chart_digest: str | None  # None when the tag holds something other than a Helm chart


@dataclass(frozen=True)
class RegistryToken:
    username: str
    password: str
    expires_at: float  # epoch seconds


def require_credentials(session: boto3.session.Session) -> None:
    """Fail once, plainly, before any item runs, when boto3's chain finds no credentials."""
    try:
        credentials = session.get_credentials()
    except botocore.exceptions.BotoCoreError as exc:
        raise CredentialsMissing(f"{CREDENTIALS_HELP} ({exc})") from None
    if credentials is None:
        raise CredentialsMissing(CREDENTIALS_HELP)


class Ecr:
    """One registry's control plane (an account in a region)."""

    def __init__(
        self,
        registry: Registry,
        session: boto3.session.Session,
        endpoint_url: str | None = None,
        max_attempts: int = 5,
    ) -> None:
        self.registry = registry
        config = Config(
            region_name=registry.region,
            retries={"mode": "standard", "max_attempts": max_attempts},
            user_agent_extra=USER_AGENT,
        )
        # endpoint_url=None lets boto3 apply AWS_ENDPOINT_URL_ECR / AWS_ENDPOINT_URL itself.
        self.client: ECRClient = session.client("ecr", endpoint_url=endpoint_url, config=config)

    def _call(self, operation: str, missing_ok: str | None = None, **kwargs: Any) -> Any:
        """Call `operation`, translating botocore's errors; None when the error code is `missing_ok`."""
        action = "".join(part.title() for part in operation.split("_"))  # as IAM names it
        try:
            return getattr(self.client, operation)(**kwargs)
        except botocore.exceptions.NoCredentialsError:
            raise CredentialsMissing(CREDENTIALS_HELP) from None
        except botocore.exceptions.ClientError as exc:
            if missing_ok is not None and _code(exc) == missing_ok:
                return None
            raise _translate(exc, action, self.registry) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise AwsError(f"ECR {action} in {self.registry.region} failed: {exc}") from None

    def images(self, repository: str, tags: Iterable[str]) -> dict[str, RemoteImage] | None:
        """The tags among `tags` that `repository` holds, in ceil(n/100) calls; None if no repository."""
        wanted = sorted(set(tags))
        found: dict[str, RemoteImage] = {}
        for start in range(0, len(wanted), BATCH_GET_IMAGE_LIMIT):
            batch = wanted[start : start + BATCH_GET_IMAGE_LIMIT]
            response = self._call(
                "batch_get_image",
                missing_ok="RepositoryNotFoundException",
                registryId=self.registry.account,
                repositoryName=repository,
                imageIds=[{"imageTag": tag} for tag in batch],
                acceptedMediaTypes=[MANIFEST_MEDIA_TYPE],
            )
            if response is None:
                return None
            for image in response.get("images", []):
                tag = image["imageId"].get("imageTag")
                if tag not in batch:
                    continue
                try:
                    manifest = json.loads(image.get("imageManifest") or "{}")
                except ValueError:
                    manifest = {}
                found[tag] = RemoteImage(
                    tag=tag,
                    manifest_digest=image["imageId"].get("imageDigest", ""),
                    chart_digest=chart_layer_digest(manifest),
                )
        return found

    def create_repository(self, name: str, settings: RepositorySettings) -> bool:
        """Create `name` with the spec's settings; False if someone else created it first."""
        created = self._call(
            "create_repository",
            missing_ok="RepositoryAlreadyExistsException",
            registryId=self.registry.account,
            repositoryName=name,
            imageTagMutability=settings.image_tag_mutability,
            imageScanningConfiguration={"scanOnPush": settings.scan_on_push},
        )
        return created is not None

    def registry_token(self) -> RegistryToken:
        response = self._call("get_authorization_token")
        data = response["authorizationData"][0]
        username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        expires = data.get("expiresAt")
        expires_at = expires.timestamp() if isinstance(expires, datetime) else time.time() + 3600
        return RegistryToken(username=username, password=password, expires_at=expires_at)


def create_repository_command(registry: Registry, name: str, settings: RepositorySettings) -> str:
    return (
        f"aws ecr create-repository --region {registry.region} --repository-name {name} "
        f"--image-tag-mutability {settings.image_tag_mutability} "
        f"--image-scanning-configuration scanOnPush={str(settings.scan_on_push).lower()}"
    )


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _translate(exc: botocore.exceptions.ClientError, operation: str, registry: Registry) -> AwsError:
    code = _code(exc)
    message = exc.response.get("Error", {}).get("Message", "")
    if code in (
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
    ):
        return AwsError(
            f"AWS rejected the credentials for ECR {operation} ({code}: {message}). "
            "Refresh them, or run with --offline."
        )
    if code in ("AccessDeniedException", "AccessDenied"):
        return AwsError(
            f"access denied for ECR {operation} in account {registry.account}, "
            f"region {registry.region}: {message}. Grant the ecr:{operation} action."
        )
    return AwsError(f"ECR {operation} failed in {registry.region}: {code}: {message}")
