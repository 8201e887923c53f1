"""The one error hierarchy of ecrmirror: every failure a user can act on is one of these."""

from __future__ import annotations


class EcrMirrorError(Exception):
    """Base class: the message is complete, plain and safe to show as it is (no secrets)."""

    word = "ERROR"  # how a report names the failure, in place of an outcome word


class SpecError(EcrMirrorError):
    """A spec file is malformed, has an unknown key, a wrong type or an unset ${VARIABLE}."""

    word = "SPEC ERROR"

    def __init__(self, where: str, problem: str, fix: str = "") -> None:
        self.where = where
        self.problem = problem
        self.fix = fix
        message = f"{where}: {problem}"
        if fix:
            message += f"\n  fix: {fix}"
        super().__init__(message)


class UpstreamError(EcrMirrorError):
    """An upstream chart repository could not be read (network, HTTP status, bad index)."""

    word = "UPSTREAM ERROR"


class VersionNotFound(EcrMirrorError):
    """The spec names a chart version that the upstream repository does not have."""

    word = "NOT UPSTREAM"


class DigestMismatch(EcrMirrorError):
    """A downloaded archive's sha256 differs from the digest in the upstream index."""

    word = "DIGEST MISMATCH"


class InvalidChart(EcrMirrorError):
    """An archive is not a valid Helm chart, or is not the chart and version the spec names."""

    word = "INVALID CHART"


class RenderFailed(EcrMirrorError):
    """`helm template` failed on a chart version whose images the spec finds by rendering it."""

    word = "RENDER FAILED"


class Unverified(EcrMirrorError):
    """A chart's provenance does not verify (`verify:`): no .prov, a bad or unknown signature, or a
    signed digest that is not the archive's. Nothing is pushed."""

    word = "UNVERIFIED"


class AwsError(EcrMirrorError):
    """The ECR API refused or failed a call (missing credentials, access denied, network)."""

    word = "AWS ERROR"
    code = ""  # AWS's error code, when AWS answered one (AccessDeniedException, ...)


class CredentialsError(AwsError):
    """boto3's standard chain gives no usable AWS credentials: one message ends the whole run."""

    word = "CREDENTIALS ERROR"


class CredentialsMissing(CredentialsError):
    """No AWS credentials can be found by boto3's standard chain."""

    word = "NO CREDENTIALS"


class CredentialsRefused(CredentialsError):
    """AWS STS refused to exchange what the chain found (a web identity token, a role) for credentials."""

    word = "CREDENTIALS REFUSED"


class RepositoryMissing(EcrMirrorError):
    """The ECR repository does not exist and the spec does not allow ecrmirror to create it."""

    word = "NO REPOSITORY"


class RegistryError(EcrMirrorError):
    """The registry (the OCI data plane) refused or failed a push."""

    word = "REGISTRY ERROR"


class TagConflict(RegistryError):
    """The tag already exists in ECR with other content; ecrmirror never overwrites it."""

    word = "TAG CONFLICT"


class ReplicationLimit(AwsError):
    """Merging the spec's replication rule would exceed ECR's quotas for the registry."""

    word = "REPLICATION LIMIT"


class RetriesExhausted(EcrMirrorError):
    """A network step failed transiently (connection, 408/429/5xx) on every attempt it had."""

    word = "RETRIES EXHAUSTED"


class Interrupted(EcrMirrorError):
    """The run was interrupted (Ctrl-C) while this item's work was running: it stopped before
    writing a tag, so nothing is half pushed; the next run does it."""

    word = "INTERRUPTED"


class PlanError(EcrMirrorError):
    """The mirror plan cannot compare the specs with the merge request's base (no git, no such commit)."""

    word = "PLAN ERROR"
