"""The one error hierarchy of ecrmirror: every failure a user can act on is one of these."""

from __future__ import annotations


class EcrMirrorError(Exception):
    """Base class: the message is complete, plain and safe to show as it is (no secrets)."""


class SpecError(EcrMirrorError):
    """A spec file is malformed, has an unknown key, a wrong type or an unset ${VARIABLE}."""

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


class VersionNotFound(EcrMirrorError):
    """The spec names a chart version that the upstream repository does not have."""


class DigestMismatch(EcrMirrorError):
    """A downloaded archive's sha256 differs from the digest in the upstream index."""


class InvalidChart(EcrMirrorError):
    """An archive is not a valid Helm chart, or is not the chart and version the spec names."""


class AwsError(EcrMirrorError):
    """The ECR API refused or failed a call (missing credentials, access denied, network)."""


class CredentialsMissing(AwsError):
    """No AWS credentials can be found by boto3's standard chain."""


class RepositoryMissing(EcrMirrorError):
    """The ECR repository does not exist and the spec does not allow ecrmirror to create it."""


class RegistryError(EcrMirrorError):
    """The registry (the OCI data plane) refused or failed a push."""


class TagConflict(RegistryError):
    """The tag already exists in ECR with other content; ecrmirror never overwrites it."""


class ReplicationLimit(AwsError):
    """Merging the spec's replication rule would exceed ECR's quotas for the registry."""


class RetriesExhausted(EcrMirrorError):
    """A network step failed transiently (connection, 408/429/5xx) on every attempt it had."""
