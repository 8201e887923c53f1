"""Pull-through cache rules in the emulator, through boto3 as any ECR user calls them: each
operation's answer, each error ECR names, and the upstream/credential combinations it takes."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from ecrclient import ACCOUNT, OCI_MANIFEST, admin, client, enforcing_iam

from ecrmirror.emulator import Emulator

REGION = "eu-west-1"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/docker-hub-AbCdEf"
OTHER_ACCOUNT = "210987654321"
NOT_FOUND = (
    f"The pull through cache rule with the prefix 'k8s' does not exist in the registry with id '{ACCOUNT}'"
)
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ecr-pull-through"
PREFIX_PATTERN = r"^([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*\/?|ROOT)$"


def refused(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


@pytest.fixture
def ecr(emulator: Emulator) -> Any:
    return admin("ecr", emulator, REGION)


@pytest.fixture
def raw(emulator: Emulator) -> Any:
    """A client that sends what botocore would refuse itself, to see what the service says."""
    return admin("ecr", emulator, REGION, validate=False)


def docker_hub(ecr: Any, prefix: str = "docker-hub") -> dict[str, Any]:
    return dict(
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=prefix,
            upstreamRegistryUrl="registry-1.docker.io",
            upstreamRegistry="docker-hub",
            credentialArn=SECRET,
        )
    )


# -- CreatePullThroughCacheRule ------------------------------------------------------------------------------
def test_create_answers_the_rule_as_the_model_shapes_it(ecr: Any) -> None:
    before = datetime.datetime.now(datetime.timezone.utc)
    answer = docker_hub(ecr)
    answer.pop("ResponseMetadata")
    created = answer.pop("createdAt")
    assert answer == {
        "ecrRepositoryPrefix": "docker-hub",
        "upstreamRegistryUrl": "registry-1.docker.io",
        "registryId": ACCOUNT,
        "upstreamRegistry": "docker-hub",
        "credentialArn": SECRET,
        "upstreamRepositoryPrefix": "ROOT",
    }
    assert before - datetime.timedelta(seconds=5) <= created <= before + datetime.timedelta(seconds=5)


def test_the_upstream_registry_is_read_from_its_url_when_not_named(ecr: Any) -> None:
    answer = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="k8s", upstreamRegistryUrl="registry.k8s.io"
    )
    assert answer["upstreamRegistry"] == "k8s"
    assert "credentialArn" not in answer


def test_a_trailing_slash_is_the_prefix_ecr_always_reads(ecr: Any) -> None:
    answer = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="ecr-public/", upstreamRegistryUrl="public.ecr.aws"
    )
    assert answer["ecrRepositoryPrefix"] == "ecr-public"
    code, message = refused(
        ecr.create_pull_through_cache_rule,
        ecrRepositoryPrefix="ecr-public",
        upstreamRegistryUrl="public.ecr.aws",
    )
    assert code == "PullThroughCacheRuleAlreadyExistsException"
    assert message == (
        "A pull through cache rule with the prefix 'ecr-public' already exists in the registry with id "
        f"'{ACCOUNT}'"
    )
    [rule] = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["ecr-public/"])[
        "pullThroughCacheRules"
    ]
    assert rule["ecrRepositoryPrefix"] == "ecr-public"


@pytest.mark.parametrize(
    ("prefix", "constraint"),
    [
        ("a", "Member must have length greater than or equal to 2"),
        ("a" * 31, "Member must have length less than or equal to 30"),
        ("Docker", f"Member must satisfy regular expression pattern: {PREFIX_PATTERN}"),
        ("docker//hub", f"Member must satisfy regular expression pattern: {PREFIX_PATTERN}"),
        ("-docker", f"Member must satisfy regular expression pattern: {PREFIX_PATTERN}"),
        ("ROOT/", f"Member must satisfy regular expression pattern: {PREFIX_PATTERN}"),
    ],
)
def test_a_prefix_outside_the_model_is_a_validation_error(raw: Any, prefix: str, constraint: str) -> None:
    code, message = refused(
        raw.create_pull_through_cache_rule, ecrRepositoryPrefix=prefix, upstreamRegistryUrl="quay.io"
    )
    assert code == "ValidationException"
    assert message == (
        f"1 validation error detected: Value '{prefix}' at 'ecrRepositoryPrefix' failed to satisfy "
        f"constraint: {constraint}"
    )


def test_prefixes_of_thirty_characters_and_nested_namespaces_are_taken(ecr: Any) -> None:
    for prefix in ("q" * 30, "team-a/quay.cache_1"):
        answer = ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl="quay.io")
        assert answer["ecrRepositoryPrefix"] == prefix


@pytest.mark.parametrize(
    ("upstream", "url"),
    [
        ("docker-hub", "quay.io"),
        ("quay", "registry-1.docker.io"),
        ("docker-hub", "docker.io"),
        ("ecr", "public.ecr.aws"),
        ("azure-container-registry", "myregistry.example.com"),
        (None, "registry.example.com"),
        (None, "https://quay.io"),
    ],
)
def test_an_upstream_url_that_is_not_its_registrys_is_unsupported(
    ecr: Any, upstream: str | None, url: str
) -> None:
    named = {"upstreamRegistry": upstream} if upstream else {}
    code, message = refused(
        ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="cache", upstreamRegistryUrl=url, **named
    )
    assert code == "UnsupportedUpstreamRegistryException"
    assert message.startswith(f"The upstream registry URL '{url}' is not supported")


def test_an_upstream_registry_outside_the_models_enum_is_a_validation_error(raw: Any) -> None:
    code, message = refused(
        raw.create_pull_through_cache_rule,
        ecrRepositoryPrefix="harbor",
        upstreamRegistryUrl="harbor.example.com",
        upstreamRegistry="harbor",
    )
    assert code == "ValidationException"
    assert (
        "Value 'harbor' at 'upstreamRegistry' failed to satisfy constraint: Member must satisfy enum "
        "value set:" in message
    )


# -- credentials and roles, by upstream ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("upstream", "url"),
    [
        ("docker-hub", "registry-1.docker.io"),
        ("github-container-registry", "ghcr.io"),
        ("gitlab-container-registry", "registry.gitlab.com"),
        ("azure-container-registry", "myregistry.azurecr.io"),
        ("chainguard", "cgr.dev"),
    ],
)
def test_upstreams_that_need_a_secret_refuse_a_rule_without_one(ecr: Any, upstream: str, url: str) -> None:
    code, message = refused(
        ecr.create_pull_through_cache_rule,
        ecrRepositoryPrefix="cache",
        upstreamRegistryUrl=url,
        upstreamRegistry=upstream,
    )
    assert (code, message) == (
        "InvalidParameterException",
        f"Invalid parameter: a {upstream} rule needs a credentialArn: the upstream registry requires "
        "authentication",
    )
    answer = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="cache", upstreamRegistryUrl=url, upstreamRegistry=upstream, credentialArn=SECRET
    )
    assert answer["credentialArn"] == SECRET


@pytest.mark.parametrize(
    ("upstream", "url"),
    [
        ("ecr-public", "public.ecr.aws"),
        ("k8s", "registry.k8s.io"),
        ("quay", "quay.io"),
        ("ecr", f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"),
        ("ecr-public-premium", "ecr-premium.aws.com"),
    ],
)
def test_upstreams_that_need_no_secret_refuse_one(ecr: Any, upstream: str, url: str) -> None:
    code, message = refused(
        ecr.create_pull_through_cache_rule,
        ecrRepositoryPrefix="cache",
        upstreamRegistryUrl=url,
        upstreamRegistry=upstream,
        credentialArn=SECRET,
    )
    assert (code, message) == (
        "InvalidParameterException",
        f"Invalid parameter: a {upstream} rule takes no credentialArn",
    )


@pytest.mark.parametrize(
    ("arn", "constraint"),
    [
        (
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:dockerhub-credentials-AbCdEf",
            "Member must satisfy regular expression pattern: ",
        ),
        (
            "ecr-pullthroughcache/docker-hub",
            "Member must have length greater than or equal to 50",
        ),
        (SECRET + "x" * 600, "Member must have length less than or equal to 612"),
    ],
)
def test_a_credential_arn_outside_the_model_is_a_validation_error(
    raw: Any, arn: str, constraint: str
) -> None:
    code, message = refused(
        raw.create_pull_through_cache_rule,
        ecrRepositoryPrefix="docker-hub",
        upstreamRegistryUrl="registry-1.docker.io",
        credentialArn=arn,
    )
    assert code == "ValidationException"
    assert message.startswith(
        f"1 validation error detected: Value '{arn[:200]}' at 'credentialArn' failed to satisfy "
        f"constraint: {constraint}"
    )


@pytest.mark.parametrize(
    "arn",
    [
        SECRET.replace(REGION, "us-east-1"),
        SECRET.replace(ACCOUNT, OTHER_ACCOUNT),
    ],
)
def test_the_secret_must_be_in_the_rules_account_and_region(ecr: Any, arn: str) -> None:
    code, message = refused(
        ecr.create_pull_through_cache_rule,
        ecrRepositoryPrefix="docker-hub",
        upstreamRegistryUrl="registry-1.docker.io",
        credentialArn=arn,
    )
    assert (code, message) == (
        "InvalidParameterException",
        f"Invalid parameter: the secret must be in the rule's account {ACCOUNT} and Region {REGION}",
    )


def test_an_ecr_upstream_in_another_account_needs_a_role_of_this_one(ecr: Any) -> None:
    url = f"{OTHER_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
    assert refused(
        ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="central", upstreamRegistryUrl=url
    ) == (
        "InvalidParameterException",
        "Invalid parameter: caching from another account's registry needs a customRoleArn",
    )
    assert refused(
        ecr.create_pull_through_cache_rule,
        ecrRepositoryPrefix="central",
        upstreamRegistryUrl=url,
        customRoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/ecr-pull-through",
    ) == (
        "InvalidParameterException",
        f"Invalid parameter: customRoleArn must be a role of the registry's account {ACCOUNT}",
    )
    assert refused(
        ecr.create_pull_through_cache_rule,
        ecrRepositoryPrefix="central",
        upstreamRegistryUrl=url,
        customRoleArn="ecr-pull",
    ) == ("InvalidParameterException", "Invalid parameter: customRoleArn must be the ARN of an IAM role")
    answer = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="central", upstreamRegistryUrl=url, upstreamRegistry="ecr", customRoleArn=ROLE
    )
    assert (answer["upstreamRegistry"], answer["customRoleArn"]) == ("ecr", ROLE)
    same_account = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="local", upstreamRegistryUrl=f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
    )
    assert "customRoleArn" not in same_account


def test_upstream_role_is_for_ecr_public_premium_with_a_custom_role(ecr: Any) -> None:
    upstream_role = "arn:aws:iam::999999999999:role/premium-reader"
    premium = {"ecrRepositoryPrefix": "premium", "upstreamRegistryUrl": "ecr-premium.aws.com"}
    pair = (
        "Invalid parameter: an ecr-public-premium rule takes customRoleArn and upstreamRoleArn together, "
        "or neither"
    )
    assert refused(ecr.create_pull_through_cache_rule, **premium, customRoleArn=ROLE) == (
        "InvalidParameterException",
        pair,
    )
    assert refused(ecr.create_pull_through_cache_rule, **premium, upstreamRoleArn=upstream_role) == (
        "InvalidParameterException",
        pair,
    )
    assert refused(
        ecr.create_pull_through_cache_rule,
        ecrRepositoryPrefix="local",
        upstreamRegistryUrl=f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com",
        customRoleArn=ROLE,
        upstreamRoleArn=upstream_role,
    ) == (
        "InvalidParameterException",
        "Invalid parameter: upstreamRoleArn is for the ecr-public-premium upstream registry only",
    )
    assert refused(
        ecr.create_pull_through_cache_rule,
        ecrRepositoryPrefix="quay",
        upstreamRegistryUrl="quay.io",
        customRoleArn=ROLE,
    ) == (
        "InvalidParameterException",
        "Invalid parameter: a quay rule takes no customRoleArn or upstreamRoleArn",
    )
    answer = ecr.create_pull_through_cache_rule(**premium, customRoleArn=ROLE, upstreamRoleArn=upstream_role)
    assert (answer["upstreamRegistry"], answer["customRoleArn"], answer["upstreamRoleArn"]) == (
        "ecr-public-premium",
        ROLE,
        upstream_role,
    )
    neither = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="premium2", upstreamRegistryUrl="ecr-premium.aws.com"
    )
    assert "customRoleArn" not in neither


# -- ROOT and the upstream prefix ----------------------------------------------------------------------------
def test_root_and_upstream_prefixes(ecr: Any) -> None:
    url = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
    assert refused(
        ecr.create_pull_through_cache_rule,
        ecrRepositoryPrefix="ROOT",
        upstreamRegistryUrl=url,
        upstreamRepositoryPrefix="team-a",
    ) == (
        "InvalidParameterException",
        "Invalid parameter: upstreamRepositoryPrefix can be set only when ecrRepositoryPrefix is not ROOT",
    )
    root = ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="ROOT", upstreamRegistryUrl=url)
    assert (root["ecrRepositoryPrefix"], root["upstreamRepositoryPrefix"]) == ("ROOT", "ROOT")
    mapped = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="my-app", upstreamRegistryUrl=url, upstreamRepositoryPrefix="upstream-app/"
    )
    assert mapped["upstreamRepositoryPrefix"] == "upstream-app"
    assert refused(ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="ROOT", upstreamRegistryUrl=url)[
        0
    ] == ("PullThroughCacheRuleAlreadyExistsException")


@pytest.mark.parametrize(
    "prefixes",
    [{"ecrRepositoryPrefix": "ROOT"}, {"ecrRepositoryPrefix": "quay", "upstreamRepositoryPrefix": "org"}],
)
def test_root_and_upstream_prefixes_are_for_ecr_upstreams_only(ecr: Any, prefixes: dict[str, str]) -> None:
    assert refused(ecr.create_pull_through_cache_rule, upstreamRegistryUrl="quay.io", **prefixes) == (
        "InvalidParameterException",
        "Invalid parameter: ROOT and upstreamRepositoryPrefix are for rules of the ecr upstream registry, "
        "not quay",
    )


# -- the quota -----------------------------------------------------------------------------------------------
def test_a_registry_holds_fifty_rules(ecr: Any, emulator: Emulator) -> None:
    for n in range(50):
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=f"quay-{n}", upstreamRegistryUrl="quay.io")
    assert refused(
        ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="quay-50", upstreamRegistryUrl="quay.io"
    ) == (
        "LimitExceededException",
        f"The registry with id '{ACCOUNT}' already has 50 pull through cache rules, the most a registry "
        "can have",
    )
    elsewhere = admin("ecr", emulator, "us-west-2")
    assert elsewhere.create_pull_through_cache_rule(
        ecrRepositoryPrefix="quay-50", upstreamRegistryUrl="quay.io"
    )
    assert (
        elsewhere.describe_pull_through_cache_rules()["pullThroughCacheRules"][0]["ecrRepositoryPrefix"]
        == "quay-50"
    )


# -- DescribePullThroughCacheRules ---------------------------------------------------------------------------
def test_describe_answers_all_rules_or_the_named_ones(ecr: Any) -> None:
    assert ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"] == []
    docker_hub(ecr)
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
    rules = ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    assert [r["ecrRepositoryPrefix"] for r in rules] == ["docker-hub", "quay"]
    assert set(rules[0]) == {
        "ecrRepositoryPrefix",
        "upstreamRegistryUrl",
        "createdAt",
        "registryId",
        "credentialArn",
        "upstreamRepositoryPrefix",
        "upstreamRegistry",
    }
    [quay] = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["quay"])["pullThroughCacheRules"]
    assert quay["upstreamRegistryUrl"] == "quay.io"
    assert refused(ecr.describe_pull_through_cache_rules, ecrRepositoryPrefixes=["quay", "k8s"]) == (
        "PullThroughCacheRuleNotFoundException",
        NOT_FOUND,
    )


def test_describe_names_one_to_a_hundred_prefixes(raw: Any) -> None:
    code, message = refused(
        raw.describe_pull_through_cache_rules, ecrRepositoryPrefixes=[f"p{n}" for n in range(101)]
    )
    assert code == "ValidationException"
    assert message.endswith(
        "at 'ecrRepositoryPrefixes' failed to satisfy constraint: Member must have length between 1 and "
        "100, inclusive"
    )
    code, _ = refused(raw.describe_pull_through_cache_rules, ecrRepositoryPrefixes=[])
    assert code == "ValidationException"
    code, message = refused(raw.describe_pull_through_cache_rules, ecrRepositoryPrefixes=["Quay"])
    assert (code, message.split(" failed")[0]) == (
        "ValidationException",
        "1 validation error detected: Value 'Quay' at 'ecrRepositoryPrefixes.1.member'",
    )


def test_describe_pages(ecr: Any, raw: Any) -> None:
    for n in range(5):
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=f"quay-{n}", upstreamRegistryUrl="quay.io")
    first = ecr.describe_pull_through_cache_rules(maxResults=2)
    assert [r["ecrRepositoryPrefix"] for r in first["pullThroughCacheRules"]] == ["quay-0", "quay-1"]
    second = ecr.describe_pull_through_cache_rules(maxResults=2, nextToken=first["nextToken"])
    assert [r["ecrRepositoryPrefix"] for r in second["pullThroughCacheRules"]] == ["quay-2", "quay-3"]
    last = ecr.describe_pull_through_cache_rules(maxResults=2, nextToken=second["nextToken"])
    assert [r["ecrRepositoryPrefix"] for r in last["pullThroughCacheRules"]] == ["quay-4"]
    assert "nextToken" not in last
    paged = ecr.get_paginator("describe_pull_through_cache_rules").paginate(PaginationConfig={"PageSize": 3})
    assert [len(page["pullThroughCacheRules"]) for page in paged] == [3, 2]
    for size in (0, 1001):
        code, message = refused(raw.describe_pull_through_cache_rules, maxResults=size)
        assert code == "ValidationException"
        assert message.endswith("Member must have value between 1 and 1000, inclusive")


# -- UpdatePullThroughCacheRule ------------------------------------------------------------------------------
def test_update_changes_the_secret_and_stamps_updated_at(ecr: Any, emulator: Emulator) -> None:
    created = docker_hub(ecr)["createdAt"]
    new_secret = SECRET.replace("docker-hub-AbCdEf", "docker-hub-rotated")
    answer = dict(
        ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="docker-hub", credentialArn=new_secret)
    )
    answer.pop("ResponseMetadata")
    updated = answer.pop("updatedAt")
    assert answer == {
        "ecrRepositoryPrefix": "docker-hub",
        "registryId": ACCOUNT,
        "credentialArn": new_secret,
        "upstreamRepositoryPrefix": "ROOT",
    }
    assert updated >= created
    [rule] = ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    assert (rule["credentialArn"], rule["createdAt"], rule["updatedAt"]) == (new_secret, created, updated)


def test_update_leaves_the_url_and_prefixes_as_they_were(ecr: Any) -> None:
    """Members outside the model's UpdatePullThroughCacheRuleRequest (boto3 cannot send them: they
    are added to the request's body before it goes) change nothing."""
    docker_hub(ecr)
    extra = {
        "upstreamRegistryUrl": "quay.io",
        "upstreamRegistry": "quay",
        "upstreamRepositoryPrefix": "library",
    }

    def add_members(request: Any, **_: Any) -> None:
        request.data = json.dumps({**json.loads(request.data), **extra}).encode()

    ecr.meta.events.register("before-sign.ecr.UpdatePullThroughCacheRule", add_members)
    answer = ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="docker-hub/", credentialArn=SECRET)
    assert answer["upstreamRepositoryPrefix"] == "ROOT"
    [rule] = ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    assert (rule["upstreamRegistryUrl"], rule["upstreamRegistry"], rule["upstreamRepositoryPrefix"]) == (
        "registry-1.docker.io",
        "docker-hub",
        "ROOT",
    )


def test_update_refuses_what_create_would(ecr: Any) -> None:
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
    assert refused(ecr.update_pull_through_cache_rule, ecrRepositoryPrefix="quay", credentialArn=SECRET) == (
        "InvalidParameterException",
        "Invalid parameter: a quay rule takes no credentialArn",
    )
    assert refused(ecr.update_pull_through_cache_rule, ecrRepositoryPrefix="k8s", credentialArn=SECRET) == (
        "PullThroughCacheRuleNotFoundException",
        NOT_FOUND,
    )
    assert "updatedAt" not in ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"][0]


# -- DeletePullThroughCacheRule and ValidatePullThroughCacheRule ---------------------------------------------
def test_delete_answers_the_deleted_rule(ecr: Any) -> None:
    created = docker_hub(ecr)
    answer = dict(ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="docker-hub"))
    answer.pop("ResponseMetadata")
    assert answer == {
        "ecrRepositoryPrefix": "docker-hub",
        "upstreamRegistryUrl": "registry-1.docker.io",
        "createdAt": created["createdAt"],
        "registryId": ACCOUNT,
        "credentialArn": SECRET,
        "upstreamRepositoryPrefix": "ROOT",
    }
    assert ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"] == []
    assert refused(ecr.delete_pull_through_cache_rule, ecrRepositoryPrefix="docker-hub")[0] == (
        "PullThroughCacheRuleNotFoundException"
    )


def test_validate_says_it_did_not_reach_upstream(ecr: Any) -> None:
    docker_hub(ecr)
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
    for prefix in ("docker-hub", "quay"):
        answer = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=prefix)
        assert (answer["ecrRepositoryPrefix"], answer["registryId"], answer["isValid"]) == (
            prefix,
            ACCOUNT,
            True,
        )
        assert answer["failure"].startswith(
            "The emulator did not contact the upstream registry or Secrets Manager"
        )
    assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="docker-hub")["credentialArn"] == SECRET
    assert refused(ecr.validate_pull_through_cache_rule, ecrRepositoryPrefix="k8s") == (
        "PullThroughCacheRuleNotFoundException",
        NOT_FOUND,
    )


# -- around the rules ----------------------------------------------------------------------------------------
def test_a_push_under_a_rules_prefix_is_a_push(ecr: Any) -> None:
    """No AWS page says what a push under a pull-through cache prefix does: the emulator takes it."""
    docker_hub(ecr)
    ecr.create_repository(repositoryName="docker-hub/library/nginx")
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + "a" * 64,
            "size": 2,
        },
        "layers": [],
    }
    answer = ecr.put_image(
        repositoryName="docker-hub/library/nginx", imageManifest=json.dumps(manifest), imageTag="1.27"
    )
    assert answer["image"]["imageId"]["imageTag"] == "1.27"


def test_the_rule_actions_are_registry_level_iam_actions(emulator: Emulator) -> None:
    iam = admin("iam", emulator, "us-east-1")
    iam.create_user(UserName="reader")
    iam.put_user_policy(
        UserName="reader",
        PolicyName="read",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "ecr:DescribePullThroughCacheRules", "Resource": "*"}
                ],
            }
        ),
    )
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    reader = client(
        "ecr",
        emulator,
        {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]},
        REGION,
    )
    with enforcing_iam(emulator):
        assert reader.describe_pull_through_cache_rules()["pullThroughCacheRules"] == []
        code, message = refused(
            reader.create_pull_through_cache_rule, ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io"
        )
    assert code == "AccessDeniedException"
    assert message == (
        f"User: arn:aws:iam::{ACCOUNT}:user/reader is not authorized to perform: "
        "ecr:CreatePullThroughCacheRule on resource: *"
    )
