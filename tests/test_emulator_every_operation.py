"""Every operation of botocore's ECR model, called with a well-formed minimal request against the
emulator: none is answered HTTP 500, and every one is served."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from botocore.exceptions import ClientError
from ecrclient import ACCOUNT, OCI_MANIFEST, Registry, admin

from ecrmirror.emulator import Emulator

REGION = "eu-west-1"
MODEL = botocore.session.get_session().get_service_model("ecr")
POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "pull",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": ["ecr:BatchGetImage"],
            }
        ],
    }
)
LIFECYCLE = json.dumps(
    {
        "rules": [
            {
                "rulePriority": 1,
                "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 5},
                "action": {"type": "expire"},
            }
        ]
    }
)


def plausible(shape: Any, name: str, known: dict[str, Any]) -> Any:
    """A value for member `name` of `shape`: what the registry holds where the name says (a
    repository, its image, a layer), else the smallest value the model's shape allows."""
    if name in known:
        return known[name]
    kind = shape.type_name
    if kind == "structure":
        return {member: plausible(shape.members[member], member, known) for member in shape.required_members}
    if kind == "list":
        return [plausible(shape.member, name, known)]
    if kind == "map":
        return {}
    if kind in ("integer", "long"):
        return int(shape.metadata.get("min", 1))
    if kind == "boolean":
        return False
    if kind == "blob":
        return b"x"
    if kind == "timestamp":
        return 0
    if shape.enum:
        return shape.enum[0]
    return "value".ljust(int(shape.metadata.get("min", 0)), "x")


@pytest.fixture
def known(emulator: Emulator) -> dict[str, Any]:
    """A registry with a repository `app` holding one image, tagged v1, and an upload under way."""
    ecr = admin("ecr", emulator, REGION)
    repository = ecr.create_repository(repositoryName="app")["repository"]
    registry = Registry(emulator, REGION, ecr)
    pushed = registry.image("app", "v1", b"config")
    assert pushed.status_code == 201, pushed.text
    image = ecr.batch_get_image(repositoryName="app", imageIds=[{"imageTag": "v1"}])["images"][0]
    layer = json.loads(image["imageManifest"])["config"]["digest"]
    return {
        "repositoryName": "app",
        "repositoryNames": ["app"],
        "registryId": ACCOUNT,
        "imageIds": [{"imageTag": "v1"}],
        "imageId": {"imageDigest": image["imageId"]["imageDigest"]},
        "subjectId": {"imageDigest": image["imageId"]["imageDigest"]},
        "imageManifest": image["imageManifest"],
        "imageManifestMediaType": OCI_MANIFEST,
        "layerDigests": [layer],
        "layerDigest": layer,
        "uploadId": ecr.initiate_layer_upload(repositoryName="app")["uploadId"],
        "partFirstByte": 0,
        "partLastByte": 0,
        "resourceArn": repository["repositoryArn"],
        "tags": [{"Key": "team", "Value": "platform"}],
        "tagKeys": ["team"],
        "policyText": POLICY,
        "lifecyclePolicyText": LIFECYCLE,
        "ecrRepositoryPrefix": "quay",
        "upstreamRegistryUrl": "quay.io",
        "prefix": "app",
        "appliedFor": ["REPLICATION"],
        "name": "BLOB_MOUNTING",
        "value": "ENABLED",
        "principalArn": f"arn:aws:iam::{ACCOUNT}:role/auditor",
        "region": "us-west-2",
        "replicationConfiguration": {
            "rules": [{"destinations": [{"region": "us-west-2", "registryId": ACCOUNT}]}]
        },
    }


@pytest.mark.parametrize("operation", MODEL.operation_names)
def test_every_operation_is_served_and_never_answered_500(
    emulator: Emulator, known: dict[str, Any], operation: str
) -> None:
    shape = MODEL.operation_model(operation).input_shape
    request = plausible(shape, "", known) if shape is not None else {}
    ecr = admin("ecr", emulator, REGION, validate=False)
    try:
        answer = getattr(ecr, xform_name(operation))(**request)
        status, code = answer["ResponseMetadata"]["HTTPStatusCode"], ""
    except ClientError as error:
        status, code = error.response["ResponseMetadata"]["HTTPStatusCode"], error.response["Error"]["Code"]
    assert status < 500, f"{operation}({request}) answered {status} {code}"
    assert code != "UnknownOperationException", f"{operation} is not served"
