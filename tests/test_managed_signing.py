"""ECR managed signing: the emulator's signing configuration and signing statuses (boto3 and plain
HTTP against it, as any ECR user has them), and the mirror's domain module (ecrmirror.managed_signing)
through `Ecr`, against the emulator."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import botocore.session
import pytest
import requests
from botocore.exceptions import ClientError
from ecrclient import ACCOUNT, OCI_INDEX, OCI_MANIFEST, Registry, admin, client, enforcing_iam

from ecrmirror import ecr_rules, managed_signing
from ecrmirror.ecr import Ecr
from ecrmirror.emulator import Emulator
from ecrmirror.emulator import managed_signing as emulated
from ecrmirror.errors import AwsError
from ecrmirror.managed_signing import SigningStatus
from ecrmirror.policy import managed_signing_statements
from ecrmirror.run import aws_session
from ecrmirror.spec import Registry as SpecRegistry
from ecrmirror.spec import SigningRule

REGION = "eu-west-1"
PROFILE = f"arn:aws:signer:{REGION}:{ACCOUNT}:/signing-profiles/mirror"
OTHER_PROFILE = f"arn:aws:signer:{REGION}:111122223333:/signing-profiles/platform_team"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
NOTARY = "application/vnd.cncf.notary.signature"


def rule(profile: str = PROFILE, *filters: str) -> dict[str, Any]:
    found: dict[str, Any] = {"signingProfileArn": profile}
    if filters:
        found["repositoryFilters"] = [{"filter": f, "filterType": "WILDCARD_MATCH"} for f in filters]
    return found


def refusal(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    error = caught.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def advance(emulator: Emulator, seconds: float) -> None:
    """Move the emulator's clock, as a user of `python -m ecrmirror.emulator` would."""
    answer = requests.post(f"{emulator.url}/_emulator/clock", json={"advance": seconds}, timeout=10)
    assert answer.status_code == 200, answer.text


def pushed_image(ecr: Any, registry: Registry, repository: str, tag: str = "1.0") -> str:
    """Create `repository` if need be, push an image as `tag`; its digest."""
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=repository)
    answer = registry.image(repository, tag)
    assert answer.status_code == 201, answer.text
    return str(answer.headers["Docker-Content-Digest"])


def statuses(ecr: Any, repository: str, digest: str) -> list[dict[str, Any]]:
    found = ecr.describe_image_signing_status(repositoryName=repository, imageId={"imageDigest": digest})
    return list(found["signingStatuses"])


def referrers(registry: Registry, repository: str, digest: str) -> list[dict[str, Any]]:
    answer = registry.request("GET", f"/v2/{repository}/referrers/{digest}")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["manifests"])


@pytest.fixture
def ecr(emulator: Emulator) -> Any:
    return admin("ecr", emulator, REGION)


@pytest.fixture
def registry(emulator: Emulator) -> Registry:
    return Registry(emulator, REGION)


@pytest.fixture
def mirror_ecr(emulator: Emulator) -> Ecr:
    """The mirror's own client, as a run builds it (the fixture's environment: admin keys)."""
    spec_registry = SpecRegistry(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com", ACCOUNT, REGION)
    return Ecr(spec_registry, aws_session(None, None), endpoint_url=emulator.url)


# -- the configuration -------------------------------------------------------------------------------
def test_a_signing_configuration_is_put_read_and_deleted(ecr: Any) -> None:
    missing = (
        "SigningConfigurationNotFoundException",
        f"Signing configuration not found for registry '{ACCOUNT}'",
    )
    assert refusal(ecr.get_signing_configuration) == missing
    assert refusal(ecr.delete_signing_configuration) == missing
    configuration = {"rules": [rule(PROFILE, "mirror/*"), rule(OTHER_PROFILE)]}

    put = ecr.put_signing_configuration(signingConfiguration=configuration)
    got = ecr.get_signing_configuration()
    deleted = ecr.delete_signing_configuration()

    assert put["signingConfiguration"] == configuration
    assert (got["registryId"], got["signingConfiguration"]) == (ACCOUNT, configuration)
    assert (deleted["registryId"], deleted["signingConfiguration"]) == (ACCOUNT, configuration)
    assert refusal(ecr.get_signing_configuration) == missing


def test_a_configuration_without_rules_is_one(ecr: Any) -> None:
    ecr.put_signing_configuration(signingConfiguration={"rules": []})

    assert ecr.get_signing_configuration()["signingConfiguration"] == {"rules": []}


def test_each_registry_has_its_own_configuration(emulator: Emulator, ecr: Any) -> None:
    ecr.put_signing_configuration(signingConfiguration={"rules": [rule()]})

    code, _ = refusal(admin("ecr", emulator, "us-east-1").get_signing_configuration)

    assert code == "SigningConfigurationNotFoundException"


ARN_PATTERN = r"^arn:aws(-[a-z]+)*:signer:[a-z0-9-]+:[0-9]{12}:\/signing-profiles\/[a-zA-Z0-9_]{2,}$"
FILTER_PATTERN = r"^(?:[a-z0-9*]+(?:[._-][a-z0-9*]+)*/)*[a-z0-9*]+(?:[._-][a-z0-9*]+)*$"
AT = "signingConfiguration.rules.1.member"
MANY_FILTERS = [{"filter": f"r{n}", "filterType": "WILDCARD_MATCH"} for n in range(101)]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            [rule()] * 11,
            f"1 validation error detected: Value '{json.dumps([rule()] * 11)[:200]}' at "
            "'signingConfiguration.rules' failed to satisfy constraint: Member must have length less than "
            "or equal to 10",
        ),
        (
            [rule("arn:aws:signer:eu-west-1:123456789012:signing-profiles/mirror")],
            "1 validation error detected: Value "
            "'arn:aws:signer:eu-west-1:123456789012:signing-profiles/mirror' "
            f"at '{AT}.signingProfileArn' failed to satisfy constraint: Member must satisfy regular "
            f"expression pattern: {ARN_PATTERN}",
        ),
        (
            [{"repositoryFilters": [{"filter": "mirror/*", "filterType": "WILDCARD_MATCH"}]}],
            f"1 validation error detected: Value null at '{AT}.signingProfileArn' failed to satisfy "
            "constraint: Member must not be null",
        ),
        (
            [{"signingProfileArn": PROFILE, "repositoryFilters": []}],
            f"1 validation error detected: Value '[]' at '{AT}.repositoryFilters' failed to satisfy "
            "constraint: Member must have length greater than or equal to 1",
        ),
        (
            [{"signingProfileArn": PROFILE, "repositoryFilters": MANY_FILTERS}],
            f"1 validation error detected: Value '{json.dumps(MANY_FILTERS)[:200]}' "
            f"at '{AT}.repositoryFilters' failed to satisfy constraint: Member must have length less than "
            "or equal to 100",
        ),
        (
            [
                {
                    "signingProfileArn": PROFILE,
                    "repositoryFilters": [{"filter": "Mirror/*", "filterType": "PREFIX_MATCH"}],
                }
            ],
            f"2 validation errors detected: Value 'Mirror/*' at '{AT}.repositoryFilters.1.member.filter' "
            "failed to satisfy constraint: Member must satisfy regular expression pattern: "
            f"{FILTER_PATTERN}; "
            f"Value 'PREFIX_MATCH' at '{AT}.repositoryFilters.1.member.filterType' failed to satisfy "
            "constraint: Member must satisfy enum value set: [WILDCARD_MATCH]",
        ),
    ],
    ids=["11 rules", "not a profile ARN", "no profile", "no filters", "101 filters", "filter and type"],
)
def test_a_configuration_outside_the_model_is_refused(
    emulator: Emulator, ecr: Any, rules: list[Any], message: str
) -> None:
    unvalidated = admin("ecr", emulator, REGION, validate=False)

    refused = refusal(unvalidated.put_signing_configuration, signingConfiguration={"rules": rules})

    assert refused == ("ValidationException", message)
    assert refusal(ecr.get_signing_configuration)[0] == "SigningConfigurationNotFoundException"


def test_a_profile_of_another_region_is_refused(ecr: Any) -> None:
    elsewhere = f"arn:aws:signer:us-east-1:{ACCOUNT}:/signing-profiles/mirror"

    refused = refusal(ecr.put_signing_configuration, signingConfiguration={"rules": [rule(elsewhere)]})

    assert refused == (
        "InvalidParameterException",
        "Invalid parameter at 'signingConfiguration' failed to satisfy constraint: 'The signing profile "
        f"{elsewhere} must be in the registry's region {REGION}'",
    )


# -- signing on push -------------------------------------------------------------------------------------
def test_a_pushed_image_is_in_progress_then_complete_with_a_signature_referrer(
    emulator: Emulator, ecr: Any, registry: Registry
) -> None:
    ecr.put_signing_configuration(signingConfiguration={"rules": [rule(PROFILE, "mirror/*")]})
    digest = pushed_image(ecr, registry, "mirror/app")

    before = statuses(ecr, "mirror/app", digest)
    unsigned = referrers(registry, "mirror/app", digest)
    advance(emulator, emulated.DEFAULT_DELAY)
    after = statuses(ecr, "mirror/app", digest)
    signatures = referrers(registry, "mirror/app", digest)

    assert before == [{"signingProfileArn": PROFILE, "status": "IN_PROGRESS"}]
    assert unsigned == []  # the signature comes with COMPLETE
    assert after == [{"signingProfileArn": PROFILE, "status": "COMPLETE"}]
    assert [s["artifactType"] for s in signatures] == [NOTARY]
    signature = registry.request("GET", f"/v2/mirror/app/manifests/{signatures[0]['digest']}").json()
    assert signature["subject"]["digest"] == digest
    assert statuses(ecr, "mirror/app", signatures[0]["digest"]) == []  # a signature is not signed


def test_the_delay_is_a_knob(emulator: Emulator, ecr: Any, registry: Registry) -> None:
    emulated.of(emulator.app.state).delay = 60
    ecr.put_signing_configuration(signingConfiguration={"rules": [rule()]})
    digest = pushed_image(ecr, registry, "mirror/app")

    advance(emulator, 59)
    still = statuses(ecr, "mirror/app", digest)[0]["status"]
    advance(emulator, 1)

    assert (still, statuses(ecr, "mirror/app", digest)[0]["status"]) == ("IN_PROGRESS", "COMPLETE")


def test_one_status_per_matching_profile(ecr: Any, registry: Registry) -> None:
    configuration = {
        "rules": [
            rule(PROFILE, "mirror/*"),
            rule(OTHER_PROFILE, "*/app"),
            rule(PROFILE, "*app*"),
            rule(PROFILE, "other"),
        ]
    }
    ecr.put_signing_configuration(signingConfiguration=configuration)

    app = pushed_image(ecr, registry, "mirror/app")
    tool = pushed_image(ecr, registry, "mirror/tool")
    elsewhere = pushed_image(ecr, registry, "elsewhere/tool")

    assert [s["signingProfileArn"] for s in statuses(ecr, "mirror/app", app)] == [PROFILE, OTHER_PROFILE]
    assert [s["signingProfileArn"] for s in statuses(ecr, "mirror/tool", tool)] == [PROFILE]
    assert statuses(ecr, "elsewhere/tool", elsewhere) == []


def test_a_helm_chart_gets_no_status(emulator: Emulator, ecr: Any, registry: Registry) -> None:
    ecr.put_signing_configuration(signingConfiguration={"rules": [rule()]})
    ecr.create_repository(repositoryName="charts/nginx")
    config = {
        **registry.blob("charts/nginx", b'{"name":"nginx","version":"1.0.0"}'),
        "mediaType": HELM_CONFIG,
    }
    layer = {**registry.blob("charts/nginx", b"chart archive"), "mediaType": HELM_LAYER}
    document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
    answer = registry.manifest("charts/nginx", "1.0.0", document, OCI_MANIFEST)
    assert answer.status_code == 201, answer.text
    digest = answer.headers["Docker-Content-Digest"]

    advance(emulator, 3600)

    assert statuses(ecr, "charts/nginx", digest) == []
    assert referrers(registry, "charts/nginx", digest) == []


def test_an_image_index_is_signed_as_its_images_are(emulator: Emulator, ecr: Any, registry: Registry) -> None:
    ecr.put_signing_configuration(signingConfiguration={"rules": [rule()]})
    child = pushed_image(ecr, registry, "mirror/app", "1.0-amd64")
    size = len(registry.request("GET", f"/v2/mirror/app/manifests/{child}").content)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": size}],
    }
    answer = registry.manifest("mirror/app", "1.0", index, OCI_INDEX)
    assert answer.status_code == 201, answer.text

    advance(emulator, emulated.DEFAULT_DELAY)

    assert statuses(ecr, "mirror/app", answer.headers["Docker-Content-Digest"])[0]["status"] == "COMPLETE"
    assert statuses(ecr, "mirror/app", child)[0]["status"] == "COMPLETE"


def test_an_image_put_through_the_api_is_signed(ecr: Any, registry: Registry) -> None:
    ecr.put_signing_configuration(signingConfiguration={"rules": [rule()]})
    digest = pushed_image(ecr, registry, "mirror/app")
    manifest = ecr.batch_get_image(repositoryName="mirror/app", imageIds=[{"imageDigest": digest}])["images"][
        0
    ]
    ecr.create_repository(repositoryName="mirror/copy")

    put = ecr.put_image(repositoryName="mirror/copy", imageManifest=manifest["imageManifest"], imageTag="1.0")

    assert statuses(ecr, "mirror/copy", put["image"]["imageId"]["imageDigest"]) == [
        {"signingProfileArn": PROFILE, "status": "IN_PROGRESS"}
    ]


def test_deleting_the_configuration_stops_signing_and_keeps_statuses(
    emulator: Emulator, ecr: Any, registry: Registry
) -> None:
    ecr.put_signing_configuration(signingConfiguration={"rules": [rule()]})
    signed = pushed_image(ecr, registry, "mirror/app", "1.0")
    ecr.delete_signing_configuration()

    later = pushed_image(ecr, registry, "mirror/app", "2.0")
    advance(emulator, emulated.DEFAULT_DELAY)

    assert statuses(ecr, "mirror/app", signed) == [{"signingProfileArn": PROFILE, "status": "COMPLETE"}]
    assert statuses(ecr, "mirror/app", later) == []


def test_statuses_of_what_is_not_there(ecr: Any, registry: Registry) -> None:
    pushed_image(ecr, registry, "mirror/app")
    image_id = {"imageDigest": "sha256:" + "0" * 64}

    no_repository = refusal(ecr.describe_image_signing_status, repositoryName="nothing", imageId=image_id)
    no_image = refusal(ecr.describe_image_signing_status, repositoryName="mirror/app", imageId=image_id)
    no_tag = refusal(
        ecr.describe_image_signing_status, repositoryName="mirror/app", imageId={"imageTag": "9"}
    )

    assert no_repository == (
        "RepositoryNotFoundException",
        f"The repository with name 'nothing' does not exist in the registry with id '{ACCOUNT}'",
    )
    assert no_image == (
        "ImageNotFoundException",
        f"The image with imageId {json.dumps(image_id)} does not exist within the repository with name "
        f"'mirror/app' in the registry with id '{ACCOUNT}'",
    )
    assert no_tag[0] == "ImageNotFoundException"


# -- who signs: the pusher, who needs signer:SignPayload ------------------------------------------------
PUSH = [
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
]


def user(emulator: Emulator, name: str, statements: list[dict[str, Any]]) -> dict[str, str]:
    iam = admin("iam", emulator, "us-east-1")
    iam.create_user(UserName=name)
    document = {"Version": "2012-10-17", "Statement": statements}
    iam.put_user_policy(UserName=name, PolicyName="push", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


def session(keys: dict[str, str]) -> botocore.session.Session:
    return aws_session(keys["aws_access_key_id"], keys["aws_secret_access_key"])


def test_a_pusher_without_sign_payload_pushes_and_signing_fails(emulator: Emulator, ecr: Any) -> None:
    ecr.put_signing_configuration(signingConfiguration={"rules": [rule()]})
    ecr.create_repository(repositoryName="mirror/app")
    push_only = user(emulator, "pusher", [{"Effect": "Allow", "Action": PUSH, "Resource": "*"}])
    signer = user(
        emulator,
        "signer",
        [
            {"Effect": "Allow", "Action": PUSH, "Resource": "*"},
            {"Effect": "Allow", "Action": "signer:SignPayload", "Resource": PROFILE},
        ],
    )

    with enforcing_iam(emulator):
        refused = Registry(emulator, REGION, client("ecr", emulator, push_only, REGION)).image(
            "mirror/app", "1.0"
        )
        allowed = Registry(emulator, REGION, client("ecr", emulator, signer, REGION)).image(
            "mirror/app", "2.0"
        )
    first = statuses(ecr, "mirror/app", refused.headers["Docker-Content-Digest"])
    advance(emulator, emulated.DEFAULT_DELAY)
    failed = statuses(ecr, "mirror/app", refused.headers["Docker-Content-Digest"])
    signed = statuses(ecr, "mirror/app", allowed.headers["Docker-Content-Digest"])

    assert (refused.status_code, allowed.status_code) == (201, 201)  # the push itself succeeds
    assert first == [{"signingProfileArn": PROFILE, "status": "IN_PROGRESS"}]
    assert failed == [
        {
            "signingProfileArn": PROFILE,
            "status": "FAILED",
            "failureCode": "AccessDeniedException",
            "failureReason": f"User: arn:aws:iam::{ACCOUNT}:user/pusher is not authorized to perform: "
            f"signer:SignPayload on resource: {PROFILE}",
        }
    ]
    assert signed == [{"signingProfileArn": PROFILE, "status": "COMPLETE"}]


# -- the mirror's module ------------------------------------------------------------------------------------
def test_rule_problems_name_what_ecr_would_refuse() -> None:
    assert ecr_rules.signing_rule_problems(PROFILE, ("mirror/*", "*/prod", "*app*"), REGION) == []
    assert ecr_rules.signing_rule_problems("arn:aws:signer:eu-west-1:1:/signing-profiles/x", (), REGION) == [
        "'arn:aws:signer:eu-west-1:1:/signing-profiles/x' is not a signing profile ARN: ECR takes "
        "arn:aws:signer:REGION:ACCOUNT:/signing-profiles/NAME (NAME of 2 or more letters, digits or _)"
    ]
    assert ecr_rules.signing_rule_problems(PROFILE, (), "us-east-1") == [
        f"the signing profile {PROFILE} is in {REGION}, but the registry is in us-east-1: ECR signs only "
        "with profiles of the registry's region (the profile may be another account's)"
    ]
    assert len(ecr_rules.signing_rule_problems(PROFILE, ("Mirror/*", "mirror//x", "a" * 257), REGION)) == 3
    assert ecr_rules.signing_rule_problems(PROFILE, [f"r{n}" for n in range(101)], REGION) == [
        "101 repository filters; a signing rule holds at most 100"
    ]


def test_covering_matches_as_ecr_s_wildcards() -> None:
    rules = [
        SigningRule(PROFILE, ("mirror/*",)),
        SigningRule(OTHER_PROFILE, ("*/prod",)),
        SigningRule(PROFILE),
    ]

    assert managed_signing.covering(rules, "mirror/app") == [rules[0], rules[2]]
    assert managed_signing.covering(rules, "team/prod") == [rules[1], rules[2]]
    assert managed_signing.covering(rules[:2], "mirror") == []


def test_missing_counts_a_rule_of_the_same_profile_that_covers_its_filters() -> None:
    configuration = {"rules": [rule(PROFILE, "mirror/*"), rule(OTHER_PROFILE)]}

    assert (
        managed_signing.missing(configuration, [SigningRule(PROFILE, ("mirror/charts-*", "mirror/x"))]) == []
    )
    assert managed_signing.missing(configuration, [SigningRule(OTHER_PROFILE, ("anything/*",))]) == []
    wider = [SigningRule(PROFILE, ("mirror/*", "charts/*")), SigningRule(PROFILE)]
    assert managed_signing.missing(configuration, wider) == wider
    assert managed_signing.missing(None, [SigningRule(PROFILE)]) == [SigningRule(PROFILE)]


def test_merged_keeps_others_rules_and_refuses_an_eleventh(mirror_ecr: Ecr, ecr: Any) -> None:
    theirs = [rule(OTHER_PROFILE, "platform/*"), rule(PROFILE, "legacy")]
    ecr.put_signing_configuration(signingConfiguration={"rules": theirs})
    declared = [SigningRule(PROFILE, ("mirror/*",))]

    changed = managed_signing.ensure(mirror_ecr, declared)
    again = managed_signing.ensure(mirror_ecr, declared)

    assert (changed, again) == (True, False)
    assert ecr.get_signing_configuration()["signingConfiguration"]["rules"] == [
        *theirs,
        rule(PROFILE, "mirror/*"),
    ]
    full = {"rules": [rule(OTHER_PROFILE, f"team{n}/*") for n in range(10)]}
    with pytest.raises(AwsError) as caught:
        managed_signing.merged(full, declared)
    assert str(caught.value).startswith(
        "the registry's signing configuration has 10 rules and the spec's would add 1, "
        "but ECR holds at most 10"
    )
    assert managed_signing.merged(full, [SigningRule(OTHER_PROFILE, ("team3/x",))]) == full


def test_read_put_and_statuses_through_the_mirror_s_client(
    emulator: Emulator, mirror_ecr: Ecr, ecr: Any, registry: Registry
) -> None:
    assert managed_signing.read_configuration(mirror_ecr) is None
    managed_signing.put_configuration(mirror_ecr, {"rules": [SigningRule(PROFILE, ("mirror/*",)).document()]})
    digest = pushed_image(ecr, registry, "mirror/app")

    assert managed_signing.read_configuration(mirror_ecr) == {"rules": [rule(PROFILE, "mirror/*")]}
    assert managed_signing.statuses(mirror_ecr, "mirror/app", digest) == [
        SigningStatus(PROFILE, "IN_PROGRESS")
    ]
    advance(emulator, emulated.DEFAULT_DELAY)
    assert managed_signing.statuses(mirror_ecr, "mirror/app", digest) == [SigningStatus(PROFILE, "COMPLETE")]
    with pytest.raises(AwsError, match="ImageNotFoundException"):
        managed_signing.statuses(mirror_ecr, "mirror/app", "sha256:" + "1" * 64)


def test_the_policy_statements_are_what_a_sync_and_an_audit_need(emulator: Emulator, ecr: Any) -> None:
    declared = [SigningRule(PROFILE, ("mirror/*",))]
    spec_registry = SpecRegistry(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com", ACCOUNT, REGION)
    sync = managed_signing_statements(declared, spec_registry)
    audit = managed_signing_statements(declared, spec_registry, "audit")
    ecr.create_repository(repositoryName="mirror/app")
    push = {"Effect": "Allow", "Action": [*PUSH, "ecr:BatchGetImage"], "Resource": "*"}
    syncing = user(emulator, "sync", [push, *sync])
    auditing = user(emulator, "audit", audit)

    with enforcing_iam(emulator):
        as_sync = Ecr(spec_registry, session(syncing), endpoint_url=emulator.url)
        assert managed_signing.ensure(as_sync, declared)
        pushed = Registry(emulator, REGION, client("ecr", emulator, syncing, REGION)).image(
            "mirror/app", "1.0"
        )
        digest = pushed.headers["Docker-Content-Digest"]
        advance(emulator, emulated.DEFAULT_DELAY)
        assert managed_signing.statuses(as_sync, "mirror/app", digest) == [SigningStatus(PROFILE, "COMPLETE")]
        as_audit = Ecr(spec_registry, session(auditing), endpoint_url=emulator.url)
        assert managed_signing.missing(managed_signing.read_configuration(as_audit), declared) == []
        assert managed_signing.statuses(as_audit, "mirror/app", digest) == [
            SigningStatus(PROFILE, "COMPLETE")
        ]
        with pytest.raises(AwsError, match="ecr:PutSigningConfiguration"):
            managed_signing.put_configuration(as_audit, {"rules": []})
        with pytest.raises(AwsError, match="ecr:DescribeImageSigningStatus"):
            managed_signing.statuses(as_audit, "other/app", digest)
    assert sync == [
        {
            "Sid": "ManagedSigningProfiles",
            "Effect": "Allow",
            "Action": ["signer:SignPayload"],
            "Resource": PROFILE,
        },
        {
            "Sid": "ManagedSigningConfiguration",
            "Effect": "Allow",
            "Action": ["ecr:GetSigningConfiguration", "ecr:PutSigningConfiguration"],
            "Resource": "*",
        },
        {
            "Sid": "ManagedSigningStatus",
            "Effect": "Allow",
            "Action": ["ecr:DescribeImageSigningStatus"],
            "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/mirror/*",
        },
    ]
    assert managed_signing_statements([], spec_registry) == []
