"""Clients for the emulator as any ECR user has them: boto3, and plain HTTP on the registry."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from ecrmirror.emulator import Emulator
from ecrmirror.emulator.iam import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCOUNT = "123456789012"


def admin(service: str, emulator: Emulator, region: str = "eu-west-1", *, validate: bool = True) -> Any:
    """A boto3 client with the emulator's administrator keys; `validate=False` sends what botocore
    would refuse on the client side, to see what the service itself says."""
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=emulator.url,
        aws_access_key_id=ADMIN_ACCESS_KEY,
        aws_secret_access_key=ADMIN_SECRET_KEY,
        config=Config(parameter_validation=validate, retries={"total_max_attempts": 1}),
    )


def client(service: str, emulator: Emulator, credentials: dict[str, str], region: str = "eu-west-1") -> Any:
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=emulator.url,
        config=Config(retries={"total_max_attempts": 1}),
        **credentials,
    )


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """The emulator's OCI registry over HTTP, authenticated as ECR's token says."""

    def __init__(self, emulator: Emulator, region: str = "eu-west-1", ecr: Any = None) -> None:
        ecr = ecr or admin("ecr", emulator, region)
        token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        self.url = emulator.url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Basic {token}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.url}{path}", timeout=30, allow_redirects=False, **kwargs)

    def blob(self, repository: str, data: bytes) -> dict[str, Any]:
        """Upload `data` (POST, then PUT with the digest); its descriptor."""
        started = self.request("POST", f"/v2/{repository}/blobs/uploads/")
        assert started.status_code == 202, started.text
        done = self.request("PUT", f"{started.headers['Location']}?digest={digest(data)}", data=data)
        assert done.status_code == 201, done.text
        return {"mediaType": "application/octet-stream", "digest": digest(data), "size": len(data)}

    def manifest(
        self, repository: str, reference: str, document: dict[str, Any], media_type: str
    ) -> requests.Response:
        body = json.dumps(document).encode()
        return self.request(
            "PUT", f"/v2/{repository}/manifests/{reference}", data=body, headers={"Content-Type": media_type}
        )

    def image(self, repository: str, tag: str, content: bytes = b"", **extra: Any) -> requests.Response:
        """An OCI image manifest with a config of `content` (so each content is its own image), as `tag`."""
        config = self.blob(repository, content or os.urandom(16))
        config["mediaType"] = "application/vnd.oci.image.config.v1+json"
        document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [], **extra}
        return self.manifest(repository, tag, document, OCI_MANIFEST)


def become_user(
    emulator: Emulator, document: dict[str, Any], monkeypatch: pytest.MonkeyPatch, name: str = "mirror-ci"
) -> None:
    """An IAM user holding exactly `document`, whose keys the run will use."""
    iam = admin("iam", emulator, "us-east-1")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="ecrmirror", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])


def printed_policy(run: Any, mode: str) -> dict[str, Any]:
    """The policy `pytest --ecrmirror-policy=MODE mirror.yaml` prints."""
    result = run(f"--ecrmirror-policy={mode}", "-q", "mirror.yaml")
    assert result.ret == 0, result.stdout.str()
    text = result.stdout.str()
    document, _ = json.JSONDecoder().raw_decode(text, text.index("{\n"))
    return document  # type: ignore[no-any-return]


def without_action(document: dict[str, Any], action: str | None) -> dict[str, Any]:
    """`document` without `action` anywhere (None: unchanged); a statement left empty goes."""
    statements = [
        {**statement, "Action": [a for a in statement["Action"] if a != action]}
        for statement in document["Statement"]
    ]
    return {**document, "Statement": [s for s in statements if s["Action"]]}


@contextmanager
def enforcing_iam(emulator: Emulator) -> Iterator[None]:
    """The emulator checks every caller's IAM policies meanwhile, as AWS does."""
    emulator.app.iam.enforce = True
    try:
        yield
    finally:
        emulator.app.iam.enforce = False
