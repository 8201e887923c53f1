"""The ECR control plane through botocore: tokens, repositories, and what a repository holds, in batches."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import botocore.exceptions

from ecrmirror import __version__
from ecrmirror.chart import MANIFEST_MEDIA_TYPE, chart_layer_digest, provenance_layer_digest
from ecrmirror.errors import AwsError, CredentialsMissing, CredentialsRefused
from ecrmirror.manifest_store import ManifestStore
from ecrmirror.spec import DEFAULT_TAG_MUTABILITY, Registry, RepositorySettings

if TYPE_CHECKING:
    import botocore.session
    from mypy_boto3_ecr import ECRClient

# transport.USER_AGENT, without importing requests for it before the first ECR call
# (tests/test_startup.py holds the two equal).
USER_AGENT = f"ecrmirror/{__version__}"
# Charts from OCI sources keep their manifest type; Docker's v2 type is what older tools push.
ACCEPTED_MANIFESTS = [MANIFEST_MEDIA_TYPE, "application/vnd.docker.distribution.manifest.v2+json"]
# An image tag may name any of these: ECR converts none of them when asked by its own type.
IMAGE_MANIFESTS = [
    *ACCEPTED_MANIFESTS,
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
]
# ECR's imageStatus (APIReference/API_ImageDetail.html): only ACTIVE images can be pulled.
ACTIVE, ARCHIVED, ACTIVATING = "ACTIVE", "ARCHIVED", "ACTIVATING"
BATCH_GET_IMAGE_LIMIT = 100  # ECR's limit of imageIds per BatchGetImage call
DESCRIBE_REPOSITORIES_LIMIT = 100  # ECR's limit of repositoryNames per DescribeRepositories call
_DENIED_ACTION = re.compile(r"not authorized to perform: (?P<action>[a-z0-9-]+:[A-Za-z]+)")
# Whom AWS denied: "User: arn:aws:sts::111122223333:assumed-role/..." or "...:iam::111122223333:user/..."
_DENIED_CALLER = re.compile(r"User: arn:aws[a-z-]*:(?:iam|sts)::(?P<account>\d{12}):")
# The field each answer we read must have (see Ecr._invoke).
_ANSWERS = {
    "batch_get_image": "images",
    "describe_images": "imageDetails",
    "describe_repositories": "repositories",
    "describe_registry": "registryId",
    "describe_image_replication_status": "replicationStatuses",
    "get_authorization_token": "authorizationData",
    "get_lifecycle_policy": "lifecyclePolicyText",
    "list_tags_for_resource": "tags",
    "create_repository": "repository",
    "put_replication_configuration": "replicationConfiguration",
    "describe_repository_creation_templates": "repositoryCreationTemplates",
}
log = logging.getLogger(__name__)
_NOT_FOUND_NAME = re.compile(r"repository with name '(?P<name>[^']+)' does not exist")
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
    provenance_digest: str | None = None  # the .prov layer, when the chart has one
    status: str = "ACTIVE"  # ECR's imageStatus: ACTIVE, ARCHIVED, or ACTIVATING (being restored)

    @property
    def pullable(self) -> bool:
        return self.status == ACTIVE


@dataclass(frozen=True)
class RepositoryState:
    """A repository's settings as DescribeRepositories reports them."""

    name: str
    arn: str
    image_tag_mutability: str
    mutability_exclusions: tuple[str, ...]
    scan_on_push: bool
    encryption: str
    kms_key: str | None


@dataclass(frozen=True)
class RegistryToken:
    username: str
    password: str
    expires_at: float  # epoch seconds


def require_credentials(session: botocore.session.Session) -> None:
    """Fail once, plainly, before any item runs, when boto3's chain gives no usable credentials.

    Credentials that come from a web identity token or a role are exchanged with STS now, so
    that a token the role's trust policy refuses is said once rather than by every item.
    """
    try:
        credentials = session.get_credentials()
        if credentials is None:
            raise CredentialsMissing(CREDENTIALS_HELP)
        credentials.get_frozen_credentials()
    except botocore.exceptions.ClientError as exc:
        raise credentials_refused(exc) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise CredentialsMissing(f"{CREDENTIALS_HELP} ({exc})") from None
    except OSError as exc:  # AWS_WEB_IDENTITY_TOKEN_FILE that cannot be read
        raise CredentialsMissing(f"cannot read the web identity token: {exc}. {CREDENTIALS_HELP}") from None


def credentials_refused(exc: botocore.exceptions.ClientError) -> CredentialsRefused:
    """STS's refusal, with what the token claimed (never the token) and what the role must allow."""
    error = exc.response.get("Error", {})
    said = f"{error.get('Code', '')}: {error.get('Message', '')}"
    role = os.environ.get("AWS_ROLE_ARN", "the role")
    if exc.operation_name != "AssumeRoleWithWebIdentity":
        return CredentialsRefused(f"AWS STS refused {exc.operation_name} for {role} ({said})")
    claims = _token_claims(os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE", ""))
    shown = ", ".join(f"{key} {claims[key]!r}" for key in ("iss", "aud", "sub") if key in claims)
    return CredentialsRefused(
        f"AWS STS refused the web identity token for {role} ({said}). "
        + (f"The token says {shown}. " if shown else "")
        + "The role's trust policy must allow sts:AssumeRoleWithWebIdentity to the IAM OIDC provider of "
        "the token's issuer (with the token's aud among its audiences), with conditions this job's "
        "token meets: <issuer>:aud, and <issuer>:sub = project_path:<group>/<project>:ref_type:branch:"
        "ref:<branch>. The README's OIDC section shows such a policy."
    )


def _token_claims(path: str) -> dict[str, Any]:
    """The issuer, audience and subject a JWT claims, read without verifying it; {} if unreadable."""
    try:
        payload = Path(path).read_text().strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (OSError, IndexError, ValueError):
        return {}
    return {key: claims[key] for key in ("iss", "aud", "sub") if isinstance(claims, dict) and key in claims}


class Ecr:
    """One registry's control plane (an account in a region)."""

    def __init__(
        self,
        registry: Registry,
        session: botocore.session.Session,
        endpoint_url: str | None = None,
        max_attempts: int = 5,
        connections: int = 10,
        manifest_store: ManifestStore | None = None,
    ) -> None:
        from botocore.config import Config  # with the first client: it loads most of botocore

        self.registry = registry
        self.manifest_store = manifest_store or ManifestStore()
        self.max_attempts = max_attempts
        config = Config(
            region_name=registry.region,
            retries={"mode": "standard", "max_attempts": max_attempts},
            user_agent_extra=USER_AGENT,
            max_pool_connections=connections,
        )
        # endpoint_url=None lets botocore apply AWS_ENDPOINT_URL_ECR / AWS_ENDPOINT_URL itself.
        client = session.create_client("ecr", endpoint_url=endpoint_url, config=config)
        self.client = cast("ECRClient", client)

    def _invoke(self, operation: str, **kwargs: Any) -> Any:
        """Call `operation`; an answer without the field it must have is asked for again.

        botocore reads a 200 whose body is not JSON (cut short on the way, say) as a success
        with no fields, and does not retry it: DescribeRepositories would then say that no
        repository exists. So the answer's shape is checked, and a broken one retried.
        """
        required = _ANSWERS.get(operation)
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = getattr(self.client, operation)(**kwargs)
            except botocore.exceptions.ClientError as exc:
                # An error whose body was cut short has no error code, only its HTTP status:
                # which error it was is unknown (RepositoryNotFound, or AccessDenied?). Ask again.
                if not _code(exc).isdigit() or attempt == self.max_attempts:
                    raise
                log.info("ECR %s answered an unreadable error (attempt %d); asking again", operation, attempt)
                time.sleep(min(0.1 * 2**attempt, 5.0))
                continue
            if required is None or required in response:
                return response
            log.info("ECR %s answered without %r (attempt %d); asking again", operation, required, attempt)
            time.sleep(min(0.1 * 2**attempt, 5.0))
        action = "".join(part.title() for part in operation.split("_"))
        raise AwsError(
            f"ECR {action} in {self.registry.region} answered without {required!r} "
            f"{self.max_attempts} times: the network or a proxy is mangling answers"
        )

    def call(self, operation: str, missing_ok: str | None = None, **kwargs: Any) -> Any:
        """Call `operation`, translating botocore's errors; None when the error code is `missing_ok`."""
        action = "".join(part.title() for part in operation.split("_"))  # as IAM names it
        try:
            return self._invoke(operation, **kwargs)
        except botocore.exceptions.NoCredentialsError:
            raise CredentialsMissing(CREDENTIALS_HELP) from None
        except botocore.exceptions.ClientError as exc:
            if missing_ok is not None and _code(exc) == missing_ok:
                return None
            error = _translate(exc, action, self.registry)
            error.code = _code(exc)
            raise error from None
        except botocore.exceptions.BotoCoreError as exc:
            raise AwsError(f"ECR {action} in {self.registry.region} failed: {exc}") from None

    def pages(
        self,
        operation: str,
        missing_ok: str | None = None,
        *,
        first: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]] | None:
        """Every page of a listing `operation` (following `nextToken`), from `first` if a page is
        already read; None when the first call's error code is `missing_ok`. One loop for ECR's
        listings, some of which botocore has no paginator for (ListPullTimeUpdateExclusions)."""
        page = first if first is not None else self.call(operation, missing_ok, **kwargs)
        if page is None:
            return None
        read = [page]
        while page.get("nextToken"):
            page = self.call(operation, **kwargs, nextToken=page["nextToken"])
            read.append(page)
        return read

    def images(self, repository: str, tags: Iterable[str]) -> dict[str, RemoteImage] | None:
        """The tags among `tags` that `repository` holds, archived ones too; None if no repository.

        What each tag names comes from DescribeImages (metadata, not a pull); its manifest from the
        run's manifest store, else from BatchGetImage (a pull), 100 digests a call."""
        held = self.tagged(repository)
        if held is None:
            return None
        wanted = {tag: held[tag] for tag in set(tags) if tag in held}
        texts = self.manifest_texts(repository, wanted.values(), ACCEPTED_MANIFESTS)
        found: dict[str, RemoteImage] = {}
        for tag, (digest, status) in wanted.items():
            try:
                manifest = json.loads(texts.get(digest) or "{}")
            except ValueError:
                manifest = {}
            found[tag] = RemoteImage(
                tag=tag,
                manifest_digest=digest,
                chart_digest=chart_layer_digest(manifest),
                provenance_digest=provenance_layer_digest(manifest),
                status=status,
            )
        return found

    def manifests(self, repository: str, tags: Iterable[str]) -> dict[str, tuple[str, bytes]]:
        """The tags among `tags` that `repository` holds and whose manifest is known:
        tag -> (digest, manifest bytes)."""
        found = self._manifests_by_tag(repository, tags, [MANIFEST_MEDIA_TYPE]) or {}
        return {tag: (digest, text.encode()) for tag, (digest, text) in found.items() if text}

    def image_manifests(self, repository: str, tags: Iterable[str]) -> dict[str, tuple[str, str]] | None:
        """The tags among `tags` that `repository` holds, whatever they name (an image index too):
        tag -> (digest, manifest text: "" for an archived one never seen); None if no repository."""
        return self._manifests_by_tag(repository, tags, IMAGE_MANIFESTS)

    def _manifests_by_tag(
        self, repository: str, tags: Iterable[str], media_types: list[str]
    ) -> dict[str, tuple[str, str]] | None:
        held = self.tagged(repository)
        if held is None:
            return None
        wanted = {tag: held[tag] for tag in set(tags) if tag in held}
        texts = self.manifest_texts(repository, wanted.values(), media_types)
        return {tag: (digest, texts.get(digest, "")) for tag, (digest, _) in wanted.items()}

    def tagged(self, repository: str) -> dict[str, tuple[str, str]] | None:
        """tag -> (digest, imageStatus) of every tag `repository` holds, whatever its storage class
        (a default listing hides archived images); None if there is no repository.

        DescribeImages reads metadata: it is not a pull, so it leaves lastRecordedPullTime alone.
        It pages 1,000 images a call, over the whole repository (given imageIds, it fails the
        whole call for one that is missing, so it cannot ask for just the run's tags)."""
        details = self._image_details(repository, "TAGGED")
        if details is None:
            return None
        return {
            str(tag): (str(detail["imageDigest"]), str(detail.get("imageStatus") or ACTIVE))
            for detail in details
            for tag in detail.get("imageTags") or []
        }

    def _image_details(self, repository: str, tag_status: str) -> list[dict[str, Any]] | None:
        """Every image of `repository` (DescribeImages' details, 1,000 a call), in any storage
        class; None if there is no repository."""
        pages = self.pages(
            "describe_images",
            "RepositoryNotFoundException",
            registryId=self.registry.account,
            repositoryName=repository,
            filter={"tagStatus": tag_status, "imageStatus": "ANY"},
            maxResults=1000,
        )
        return None if pages is None else [d for page in pages for d in page.get("imageDetails", [])]

    def manifest_texts(
        self, repository: str, held: Iterable[tuple[str, str]], media_types: list[str]
    ) -> dict[str, str]:
        """digest -> manifest text of `held` (digest, status) pairs: from the store, else pulled
        with BatchGetImage (100 a call) and kept. An archived image cannot be pulled: only a
        manifest seen before is known."""
        texts: dict[str, str] = {}
        to_pull: list[str] = []
        for digest, status in dict(held).items():
            known = self.manifest_store.get(digest)
            if known is not None:
                texts[digest] = known.decode("utf-8", "replace")
            elif status == ACTIVE:
                to_pull.append(digest)
        for start in range(0, len(to_pull), BATCH_GET_IMAGE_LIMIT):
            response = self.call(
                "batch_get_image",
                missing_ok="RepositoryNotFoundException",
                registryId=self.registry.account,
                repositoryName=repository,
                imageIds=[{"imageDigest": d} for d in to_pull[start : start + BATCH_GET_IMAGE_LIMIT]],
                acceptedMediaTypes=media_types,
            )
            for image in (response or {}).get("images", []):
                digest, text = str(image["imageId"].get("imageDigest")), str(image.get("imageManifest") or "")
                self.manifest_store.put(digest, text.encode("utf-8"))
                texts[digest] = text
        return texts

    def restore(self, repository: str, digest: str) -> str:
        """Start restoring an archived image to the standard storage class (UpdateImageStorageClass;
        ECR takes up to about 20 minutes): the imageStatus ECR answers, ACTIVATING until done.

        Never a re-push: that restores too, but what it does in an IMMUTABLE repository is not
        documented, and it would send bytes ECR already holds."""
        answer = self.call(
            "update_image_storage_class",
            registryId=self.registry.account,
            repositoryName=repository,
            imageId={"imageDigest": digest},
            targetStorageClass="STANDARD",
        )
        return str(answer.get("imageStatus") or ACTIVATING)

    def lifecycle_preview(self, repository: str, policy: str, wait: float = 60.0) -> dict[str, str] | None:
        """What `policy` would do to `repository`'s images now, by ECR's lifecycle policy preview:
        tag -> EXPIRE or TRANSITION. None when the preview did not finish within `wait` seconds
        (botocore's waiter allows 100; a run should not stall that long for a warning)."""
        self.call(  # one already running (another run's) is waited for instead: the same question
            "start_lifecycle_policy_preview",
            missing_ok="LifecyclePolicyPreviewInProgressException",
            registryId=self.registry.account,
            repositoryName=repository,
            lifecyclePolicyText=policy,
        )
        deadline = time.monotonic() + wait
        asked: dict[str, Any] = {
            "registryId": self.registry.account,
            "repositoryName": repository,
            "maxResults": 100,
        }
        while True:
            first = self.call("get_lifecycle_policy_preview", **asked)
            if first.get("status") != "IN_PROGRESS":
                break
            if time.monotonic() > deadline:
                return None
            time.sleep(2.0)
        pages = self.pages("get_lifecycle_policy_preview", first=first, **asked) or []
        return {
            str(tag): str((result.get("action") or {}).get("type") or "")
            for page in pages
            for result in page.get("previewResults") or []
            for tag in result.get("imageTags") or []
        }

    def image_tags(self, repository: str) -> list[str] | None:
        """Every tag `repository` holds that can be pulled (ListImages, 1,000 a page: without an
        imageStatus filter it lists ACTIVE images only); None if there is no repository."""
        pages = self.pages(
            "list_images",
            "RepositoryNotFoundException",
            registryId=self.registry.account,
            repositoryName=repository,
            filter={"tagStatus": "TAGGED"},
            maxResults=1000,
        )
        if pages is None:
            return None
        return [str(i["imageTag"]) for page in pages for i in page.get("imageIds", []) if i.get("imageTag")]

    def blob_mounting(self) -> bool:
        """Whether the registry mounts a blob from one repository into another (its BLOB_MOUNTING
        setting); False when the caller may not ask (ecr:GetAccountSetting), as if disabled."""
        try:
            answer = self._invoke("get_account_setting", name="BLOB_MOUNTING")
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            return False
        return str(answer.get("value", "")).upper() == "ENABLED"

    def repositories(self, names: Iterable[str]) -> dict[str, RepositoryState]:
        """The repositories among `names` that exist, asked for 100 names a call.

        DescribeRepositories fails the whole call when one name is missing (and names it): the
        call's other names are asked for again in two halves side by side, so that k missing names
        cost at most 2k+1 calls in about log2(n) rounds, not k rounds one after another. Listing the
        registry instead would need ecr:DescribeRepositories on every repository, which a
        least-privilege policy does not give.
        """
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        wanted = sorted(set(names))
        batches = [
            wanted[start : start + DESCRIBE_REPOSITORIES_LIMIT]
            for start in range(0, len(wanted), DESCRIBE_REPOSITORIES_LIMIT)
        ]
        found: dict[str, RepositoryState] = {}
        if not batches:
            return found
        # As many calls at once as the client has connections (botocore's stubs leave that field
        # out); workers never wait on each other: this thread hands out the halves a failure leaves.
        connections = int(getattr(self.client.meta.config, "max_pool_connections", None) or 10)
        pool = ThreadPoolExecutor(connections, "ecrmirror-describe")
        try:
            pending: set[Future[tuple[dict[str, RepositoryState], list[str]]]] = {
                pool.submit(self._describe_batch, batch) for batch in batches
            }
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    described, unanswered = future.result()
                    found.update(described)
                    half = (len(unanswered) + 1) // 2
                    for part in (unanswered[:half], unanswered[half:]):
                        if part:
                            pending.add(pool.submit(self._describe_batch, part))
        finally:
            pool.shutdown(cancel_futures=True)  # after a refusal, the calls not yet sent never go
        return found

    def _describe_batch(self, batch: list[str]) -> tuple[dict[str, RepositoryState], list[str]]:
        """One DescribeRepositories call for `batch`: the repositories it described, and the names
        still unanswered when it failed naming a missing one (every other name in `batch`)."""
        try:
            response = self._invoke(
                "describe_repositories", registryId=self.registry.account, repositoryNames=batch
            )
        except botocore.exceptions.ClientError as exc:
            if _code(exc) != "RepositoryNotFoundException":
                raise _translate(exc, "DescribeRepositories", self.registry) from None
            missing = _NOT_FOUND_NAME.search(str(exc.response.get("Error", {}).get("Message", "")))
            if missing is None or missing["name"] not in batch:  # unexpected wording
                return self._one_by_one(batch), []
            return {}, [name for name in batch if name != missing["name"]]
        except botocore.exceptions.NoCredentialsError:
            raise CredentialsMissing(CREDENTIALS_HELP) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise AwsError(f"ECR DescribeRepositories in {self.registry.region} failed: {exc}") from None
        states = [_repository_state(repository) for repository in response.get("repositories", [])]
        return {state.name: state for state in states}, []

    def _one_by_one(self, names: list[str]) -> dict[str, RepositoryState]:
        found: dict[str, RepositoryState] = {}
        for name in names:
            response = self.call(
                "describe_repositories",
                missing_ok="RepositoryNotFoundException",
                registryId=self.registry.account,
                repositoryNames=[name],
            )
            for repository in (response or {}).get("repositories", []):
                found[name] = _repository_state(repository)
        return found

    def tags(self, arn: str) -> dict[str, str]:
        response = self.call("list_tags_for_resource", resourceArn=arn)
        return {tag["Key"]: tag["Value"] for tag in response.get("tags", [])}

    def lifecycle_policy(self, name: str) -> str | None:
        response = self.call(
            "get_lifecycle_policy",
            missing_ok="LifecyclePolicyNotFoundException",
            registryId=self.registry.account,
            repositoryName=name,
        )
        return None if response is None else str(response.get("lifecyclePolicyText") or "") or None

    def create_repository(self, name: str, settings: RepositorySettings) -> bool:
        """Create `name` with every declared setting; False if someone else created it first."""
        kwargs: dict[str, Any] = {
            "registryId": self.registry.account,
            "repositoryName": name,
            "imageTagMutability": settings.image_tag_mutability or DEFAULT_TAG_MUTABILITY,
        }
        if settings.mutability_exclusions is not None:
            kwargs["imageTagMutabilityExclusionFilters"] = _exclusion_filters(settings.mutability_exclusions)
        if settings.scan_on_push is not None:
            kwargs["imageScanningConfiguration"] = {"scanOnPush": settings.scan_on_push}
        if settings.encryption is not None:
            kwargs["encryptionConfiguration"] = {"encryptionType": settings.encryption}
            if settings.kms_key:
                kwargs["encryptionConfiguration"]["kmsKey"] = settings.kms_key
        if settings.tags:
            kwargs["tags"] = [{"Key": key, "Value": value} for key, value in settings.tags]
        created = self.call("create_repository", missing_ok="RepositoryAlreadyExistsException", **kwargs)
        if created is None:
            return False
        if settings.lifecycle_policy is not None:
            self.put_lifecycle_policy(name, settings.lifecycle_policy)
        return True

    def put_image_tag_mutability(
        self, name: str, mutability: str, exclusions: tuple[str, ...] | None
    ) -> None:
        kwargs: dict[str, Any] = {}
        if exclusions is not None:
            kwargs["imageTagMutabilityExclusionFilters"] = _exclusion_filters(exclusions)
        self.call(
            "put_image_tag_mutability",
            registryId=self.registry.account,
            repositoryName=name,
            imageTagMutability=mutability,
            **kwargs,
        )

    def put_image_scanning_configuration(self, name: str, scan_on_push: bool) -> None:
        self.call(
            "put_image_scanning_configuration",
            registryId=self.registry.account,
            repositoryName=name,
            imageScanningConfiguration={"scanOnPush": scan_on_push},
        )

    def tag_resource(self, arn: str, tags: dict[str, str]) -> None:
        self.call("tag_resource", resourceArn=arn, tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def put_lifecycle_policy(self, name: str, policy: str) -> None:
        self.call(
            "put_lifecycle_policy",
            registryId=self.registry.account,
            repositoryName=name,
            lifecyclePolicyText=policy,
        )

    def replication_configuration(self) -> dict[str, Any]:
        """The registry's replication rules (DescribeRegistry), `{"rules": []}` when none.

        DescribeRegistry and PutReplicationConfiguration act on the credentials' own registry,
        whatever the spec says: when that is another account's, nothing is read or changed.
        """
        response = self.call("describe_registry")
        if str(response["registryId"]) != self.registry.account:
            raise AwsError(
                f"the credentials belong to account {response['registryId']}, but the spec's registry "
                f"{self.registry.host} is in account {self.registry.account}: replication is configured "
                "by the registry's own account. Run with credentials of that account, or, if "
                f"{self.registry.account} is a typo, correct `registry:` in the spec."
            )
        configuration = response.get("replicationConfiguration") or {}
        return {"rules": list(configuration.get("rules") or [])}

    def creation_templates(self, prefixes: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The registry's repository creation templates for `prefixes`, as ECR describes them."""
        pages = self.pages("describe_repository_creation_templates", prefixes=sorted(set(prefixes))) or []
        return {
            str(template.get("prefix")): template
            for page in pages
            for template in page.get("repositoryCreationTemplates") or []
        }

    def create_creation_template(self, template: dict[str, Any]) -> bool:
        """Create a repository creation template; False if one for its prefix appeared meanwhile."""
        created = self.call(
            "create_repository_creation_template", missing_ok="TemplateAlreadyExistsException", **template
        )
        return created is not None

    def update_creation_template(self, template: dict[str, Any]) -> None:
        self.call("update_repository_creation_template", **template)

    def put_replication_configuration(self, configuration: dict[str, Any]) -> None:
        self.call("put_replication_configuration", replicationConfiguration=configuration)

    def replication_statuses(self, repository: str, tag: str) -> list[dict[str, Any]] | None:
        """Per-destination replication status of one image; None when the image is not there."""
        response = self.call(
            "describe_image_replication_status",
            missing_ok="ImageNotFoundException",
            registryId=self.registry.account,
            repositoryName=repository,
            imageId={"imageTag": tag},
        )
        return None if response is None else list(response.get("replicationStatuses") or [])

    def registry_token(self) -> RegistryToken:
        # For the spec's registry by name: its proxyEndpoint is that registry's, whichever account
        # the credentials belong to (the token itself works wherever IAM allows).
        response = self.call("get_authorization_token", registryIds=[self.registry.account])
        data = response["authorizationData"][0]
        username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        expires = data.get("expiresAt")
        expires_at = expires.timestamp() if isinstance(expires, datetime) else time.time() + 3600
        return RegistryToken(username=username, password=password, expires_at=expires_at)


def _exclusion_filters(filters: tuple[str, ...]) -> list[dict[str, str]]:
    return [{"filterType": "WILDCARD", "filter": pattern} for pattern in filters]


def _repository_state(repository: Any) -> RepositoryState:
    encryption = repository.get("encryptionConfiguration") or {}
    return RepositoryState(
        name=repository["repositoryName"],
        arn=repository["repositoryArn"],
        image_tag_mutability=repository.get("imageTagMutability", "MUTABLE"),
        mutability_exclusions=tuple(
            f["filter"] for f in repository.get("imageTagMutabilityExclusionFilters") or []
        ),
        scan_on_push=bool((repository.get("imageScanningConfiguration") or {}).get("scanOnPush")),
        encryption=encryption.get("encryptionType", "AES256"),
        kms_key=encryption.get("kmsKey"),
    )


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _translate(exc: botocore.exceptions.ClientError, operation: str, registry: Registry) -> AwsError:
    if getattr(exc, "operation_name", "").startswith("AssumeRole"):  # renewing credentials failed
        return credentials_refused(exc)
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
        # CreateRepository can be denied for another action (ecr:TagResource, kms:CreateGrant).
        denied = _DENIED_ACTION.search(message)
        action = denied["action"] if denied else f"ecr:{operation}"
        caller = _DENIED_CALLER.search(message)
        if caller is not None and caller["account"] != registry.account:
            return AwsError(
                f"access denied for ECR {operation}: the credentials belong to account "
                f"{caller['account']}, but the spec's registry is in account {registry.account} "
                f"({registry.region}). If {registry.account} is a typo, correct `registry:` in the spec; "
                f"if the registry is another account's, its repository policy must allow {action} to "
                f"account {caller['account']}. AWS said: {message}"
            )
        return AwsError(
            f"access denied for ECR {operation} in account {registry.account}, "
            f"region {registry.region}: {message}. Grant the {action} action; "
            "`pytest --ecrmirror-policy=sync` (or =audit) prints the policy the run needs."
        )
    return AwsError(f"ECR {operation} failed in {registry.region}: {code}: {message}")
