"""`sign: {kms_key: ...}`: every version the mirror holds carries a cosign signature and an in-toto
attestation by an AWS KMS key. Verified here with code written from cosign's published formats
(specs/SIGNATURE_SPEC.md, ATTESTATION_SPEC.md; DSSE's envelope), not with ecrmirror's verifier."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from ecrclient import Registry, admin, become_user, enforcing_iam, printed_policy, without_action

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator

ALIAS = "alias/chart-mirror"


@pytest.fixture
def key(emulator: Emulator) -> ec.EllipticCurvePublicKey:
    """An ECC_NIST_P256 signing key in the emulator's KMS, as the account would have; its public key."""
    kms = boto3.client("kms", region_name="eu-west-1", endpoint_url=emulator.url)
    created = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]
    kms.create_alias(AliasName=ALIAS, TargetKeyId=created["KeyId"])
    public = load_der_public_key(kms.get_public_key(KeyId=ALIAS)["PublicKey"])
    assert isinstance(public, ec.EllipticCurvePublicKey)
    return public


def spec(server: ChartServer) -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n"
        f"  sign: {{kms_key: {ALIAS}}}\n"
        f"charts:\n  - name: gitlab\n    repo: {server.url}\n    versions: ['7.1.1', '7.1.2']\n"
    )


def digest_of(repository: str, tag: str) -> str:
    ecr = boto3.client("ecr", region_name="eu-west-1")
    image = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}])["images"][0]
    return str(image["imageId"]["imageDigest"])


def fetch(registry: Registry, repository: str, tag: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """A one-layer signature image: its manifest, its layer descriptor and the layer's bytes."""
    manifest = registry.request("GET", f"/v2/{repository}/manifests/{tag}").json()
    (layer,) = manifest["layers"]
    body = registry.request("GET", f"/v2/{repository}/blobs/{layer['digest']}").content
    assert "sha256:" + hashlib.sha256(body).hexdigest() == layer["digest"]
    return manifest, layer, body


def cosign_verify(
    registry: Registry, public: ec.EllipticCurvePublicKey, repository: str, digest: str
) -> None:
    """What `cosign verify --key` checks of the signature image under sha256-<hex>.sig."""
    _, layer, payload = fetch(registry, repository, f"sha256-{digest.partition(':')[2]}.sig")
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    critical = json.loads(payload)["critical"]
    assert critical["type"] == "cosign container image signature"
    assert critical["image"]["docker-manifest-digest"] == digest
    signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))  # raises InvalidSignature


def attestation_verify(
    registry: Registry, public: ec.EllipticCurvePublicKey, repository: str, digest: str
) -> dict[str, Any]:
    """What `cosign verify-attestation --key` checks of sha256-<hex>.att; the statement."""
    _, layer, body = fetch(registry, repository, f"sha256-{digest.partition(':')[2]}.att")
    assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json"
    envelope = json.loads(body)
    payload = base64.b64decode(envelope["payload"])
    kind = envelope["payloadType"].encode()
    assert kind == b"application/vnd.in-toto+json"
    signed = (
        b"DSSEv1 "
        + str(len(kind)).encode()
        + b" "
        + kind
        + b" "
        + str(len(payload)).encode()
        + b" "
        + payload
    )
    (entry,) = envelope["signatures"]
    public.verify(base64.b64decode(entry["sig"]), signed, ec.ECDSA(hashes.SHA256()))
    statement: dict[str, Any] = json.loads(payload)
    assert layer["annotations"]["predicateType"] == statement["predicateType"]
    assert [s["digest"]["sha256"] for s in statement["subject"]] == [digest.partition(":")[2]]
    return statement


def test_every_version_carries_a_signature_and_an_attestation_that_verify_with_the_kms_key(
    two_charts: ChartServer, emulator: Emulator, key: ec.EllipticCurvePublicKey, write_spec, run
) -> None:
    write_spec(spec(two_charts))

    run("--sync", "-v", "mirror.yaml").assert_outcomes(passed=3)

    registry = Registry(emulator)
    for chart in two_charts.charts:
        if chart.name != "gitlab":
            continue
        digest = digest_of("mirror/gitlab", chart.version)
        cosign_verify(registry, key, "mirror/gitlab", digest)
        statement = attestation_verify(registry, key, "mirror/gitlab", digest)
        predicate = statement["predicate"]
        assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
        parameters = predicate["buildDefinition"]["externalParameters"]
        assert (parameters["chart"], parameters["version"]) == ("gitlab", chart.version)
        assert parameters["archiveDigest"] == f"sha256:{chart.digest}"
        assert predicate["buildDefinition"]["resolvedDependencies"][0]["uri"].endswith(
            f"gitlab-{chart.version}.tgz"
        )
        assert predicate["runDetails"]["builder"]["id"].startswith("urn:ecrmirror:")
    # and the audit finds every version signed, and a second sync signs nothing again
    run("--check-only", "mirror.yaml").assert_outcomes(passed=3)
    emulator.app.requests.clear()
    run("--sync", "mirror.yaml").assert_outcomes(passed=3)
    assert emulator.writes() == []


def test_the_audit_catches_a_deleted_signature_and_the_next_sync_signs_again(
    two_charts: ChartServer, emulator: Emulator, key: ec.EllipticCurvePublicKey, write_spec, run
) -> None:
    write_spec(spec(two_charts))
    run("--sync", "mirror.yaml").assert_outcomes(passed=3)
    digest = digest_of("mirror/gitlab", "7.1.2")
    signature = f"sha256-{digest.partition(':')[2]}.sig"
    ecr = boto3.client("ecr", region_name="eu-west-1")
    ecr.batch_delete_image(repositoryName="mirror/gitlab", imageIds=[{"imageTag": signature}])

    audited = run("--check-only", "-v", "mirror.yaml")

    audited.assert_outcomes(passed=2, failed=1)
    audited.stdout.fnmatch_lines(
        ["mirror.yaml::gitlab::7.1.2 UNSIGNED*", f"*is in ECR, but no signature ({signature})*"]
    )
    run("--sync", "mirror.yaml").assert_outcomes(passed=3)
    run("--check-only", "mirror.yaml").assert_outcomes(passed=3)
    cosign_verify(Registry(emulator), key, "mirror/gitlab", digest)


def test_a_signature_by_another_key_fails_the_audit(
    two_charts: ChartServer, emulator: Emulator, key: ec.EllipticCurvePublicKey, write_spec, run
) -> None:
    write_spec(spec(two_charts))
    run("--sync", "mirror.yaml").assert_outcomes(passed=3)
    # the alias now names another key: what ECR holds was signed by the old one
    kms = boto3.client("kms", region_name="eu-west-1", endpoint_url=emulator.url)
    other = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]
    kms.update_alias(AliasName=ALIAS, TargetKeyId=other["KeyId"])

    audited = run("--check-only", "-v", "mirror.yaml")

    audited.assert_outcomes(passed=1, failed=2)
    audited.stdout.fnmatch_lines(["*holds no signature by alias/chart-mirror of sha256:*"])


def test_an_offline_rehearsal_signs_with_a_key_of_its_own(
    two_charts: ChartServer, pytester: pytest.Pytester, run_subprocess
) -> None:
    pytester.makefile(".yaml", mirror=spec(two_charts))

    result = run_subprocess("mirror.yaml", "--sync", "--offline", "-v")

    result.assert_outcomes(passed=3)


def test_a_sign_key_that_is_not_one_is_a_spec_error(write_spec, run) -> None:
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  sign: {{kms_key: my-key}}\n"
        "charts:\n  - name: app\n    repo: ./c\n    versions: ['1.0.0']\n"
    )

    result = run("--collect-only", "mirror.yaml")

    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["mirror.yaml:3: sign.kms_key 'my-key' is not an AWS KMS key", "  fix: *"])


def test_the_printed_policies_name_the_signing_key_and_the_audit_needs_its_reads(
    two_charts: ChartServer,
    emulator: Emulator,
    key: ec.EllipticCurvePublicKey,
    pytester: pytest.Pytester,
    write_spec,
    run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_spec(spec(two_charts))
    run("--sync", "mirror.yaml").assert_outcomes(passed=3)  # as the administrator
    policies = {mode: printed_policy(run, mode) for mode in ("sync", "audit")}
    signing_key = {
        "Effect": "Allow",
        "Resource": "arn:aws:kms:eu-west-1:123456789012:key/*",
        "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": ALIAS}},
    }
    assert {**signing_key, "Sid": "SigningKey1", "Action": ["kms:GetPublicKey", "kms:Sign"]} in policies[
        "sync"
    ]["Statement"]
    assert {**signing_key, "Sid": "SigningKey1", "Action": ["kms:GetPublicKey"]} in policies["audit"][
        "Statement"
    ]

    # the audit, as a user holding exactly its policy; and without one of its reads
    become_user(emulator, policies["audit"], monkeypatch, "auditor")
    with enforcing_iam(emulator):
        audited = run("--check-only", "mirror.yaml")
        without = without_action(policies["audit"], "ecr:GetDownloadUrlForLayer")
        admin("iam", emulator, "us-east-1").put_user_policy(
            UserName="auditor", PolicyName="ecrmirror", PolicyDocument=json.dumps(without)
        )
        refused = run("--check-only", "mirror.yaml")

    audited.assert_outcomes(passed=3)
    assert refused.ret == pytest.ExitCode.TESTS_FAILED
    assert "ecr:GetDownloadUrlForLayer" in refused.stdout.str()


@pytest.mark.parametrize("removed", [None, "kms:Sign", "kms:GetPublicKey"])
def test_a_signing_sync_needs_each_kms_action_of_its_policy(
    removed: str | None,
    two_charts: ChartServer,
    emulator: Emulator,
    key: ec.EllipticCurvePublicKey,
    pytester: pytest.Pytester,
    write_spec,
    run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_spec(spec(two_charts))
    become_user(emulator, without_action(printed_policy(run, "sync"), removed), monkeypatch)
    with enforcing_iam(emulator):
        synced = run("--sync", "mirror.yaml")

    if removed is None:
        synced.assert_outcomes(passed=3)
    else:
        assert synced.ret == pytest.ExitCode.TESTS_FAILED
        assert removed in synced.stdout.str()
