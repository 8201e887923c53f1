"""Repositories as ECR keeps them: what CreateRepository, TagResource and PutLifecyclePolicy refuse,
DescribeRepositories' pages, and repository creation templates (with the replicas they shape).

Sources: API_CreateRepository.html, API_TagResource.html, userguide/lifecycle_policy_parameters.html,
userguide/repository-creation-templates.html, and ecr_rules.py for the limits they share with
the spec reader.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ecrmirror import ecr_rules
from ecrmirror.emulator.answers import Refused, validation_error
from ecrmirror.emulator.iam import Caller
from ecrmirror.emulator.images import epoch, paginate
from ecrmirror.emulator.kms import Kms
from ecrmirror.emulator.state import State

NAME = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
APPLIED_FOR = ("REPLICATION", "PULL_THROUGH_CACHE", "CREATE_ON_PUSH")
# imageTagMutabilityExclusionFilters: "Minimum number of 1 item. Maximum number of 5 items.", as
# the spec reader holds specs to it.
MAX_EXCLUSION_FILTERS = ecr_rules.MAX_EXCLUSION_FILTERS


@dataclass(frozen=True)
class Where:
    """The registry a call acts in: an account in a region."""

    account: str
    region: str

    def backend(self) -> Any:
        from moto.ecr.models import ecr_backends

        return ecr_backends[self.account][self.region]

    def repository(self, name: str) -> Any:
        repository = self.backend().repositories.get(str(name))
        if repository is None:
            raise Refused(
                "RepositoryNotFoundException",
                f"The repository with name '{name}' does not exist in the registry with id '{self.account}'",
            )
        return repository


# One ECR action as the emulator answers it: a dict is answered as JSON, a Response as it is,
# None hands the call on to moto; Refused is ECR's error.
Handler = Callable[[Where, dict[str, Any], Caller], Any]


def document(repository: Any) -> dict[str, Any]:
    """A repository as DescribeRepositories and CreateRepository answer it."""
    found: dict[str, Any] = {
        "repositoryArn": repository.arn,
        "registryId": repository.registry_id,
        "repositoryName": repository.name,
        "repositoryUri": repository.uri,
        "createdAt": epoch(repository.created_at),
        "imageTagMutability": repository.image_tag_mutability,
        "imageScanningConfiguration": repository.image_scanning_configuration,
        "encryptionConfiguration": repository.encryption_configuration,
    }
    if repository.image_tag_mutability_exclusion_filters:
        found["imageTagMutabilityExclusionFilters"] = repository.image_tag_mutability_exclusion_filters
    return found


# -- checks before moto creates or changes a repository ---------------------------------------------
def check_create(where: Where, body: dict[str, Any], kms: Kms) -> None:
    name = str(body.get("repositoryName", ""))
    if not 2 <= len(name) <= ecr_rules.MAX_REPOSITORY_NAME or not NAME.match(name):
        raise Refused(
            "InvalidParameterException",
            f"Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must be 2 to "
            f"{ecr_rules.MAX_REPOSITORY_NAME} characters of lowercase letters, digits and . _ - /'",
        )
    check_tags([(str(t.get("Key", "")), str(t.get("Value", ""))) for t in body.get("tags") or []])
    check_exclusion_filters(body.get("imageTagMutabilityExclusionFilters"))
    encryption = body.get("encryptionConfiguration") or {}
    if encryption.get("kmsKey"):
        kms.require(str(encryption["kmsKey"]), where.account, where.region)


def check_tags(tags: list[tuple[str, str]]) -> None:
    if len(tags) > ecr_rules.MAX_TAGS:
        raise Refused("TooManyTagsException", f"a repository holds at most {ecr_rules.MAX_TAGS} tags")
    problems = ecr_rules.tag_problems(tags)
    if problems:
        raise Refused("InvalidTagParameterException", "; ".join(problems))


def check_exclusion_filters(filters: Any) -> None:
    """ECR's model takes 1 to 5 WILDCARD filters of its alphabet (API_CreateRepository.html,
    API_PutImageTagMutability.html); a count outside that fails its request validation."""
    if filters is None:
        return
    if not isinstance(filters, list):
        raise Refused("SerializationException", "imageTagMutabilityExclusionFilters must be a list")
    if not 1 <= len(filters) <= MAX_EXCLUSION_FILTERS:
        bound = f"less than or equal to {MAX_EXCLUSION_FILTERS}" if filters else "greater than or equal to 1"
        raise validation_error(
            "imageTagMutabilityExclusionFilters", filters, f"Member must have length {bound}"
        )
    for entry in filters:
        value = str(entry.get("filter", "")) if isinstance(entry, dict) else ""
        kind = entry.get("filterType") if isinstance(entry, dict) else None
        if kind != "WILDCARD" or not ecr_rules.EXCLUSION_FILTER.match(value):
            raise Refused(
                "InvalidParameterException",
                f"Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy constraint: "
                f"'{value}' must be a WILDCARD filter of 1-128 characters of letters, digits, . _ - and *",
            )


# -- the actions the emulator answers itself ---------------------------------------------------------
def describe_repositories(where: Where, body: dict[str, Any]) -> dict[str, Any]:
    names = body.get("repositoryNames")
    if names is not None and not 1 <= len(names) <= 100:
        raise validation_error(
            "repositoryNames", names, "Member must have length between 1 and 100, inclusive"
        )
    if names and (body.get("maxResults") is not None or body.get("nextToken")):
        raise Refused(
            "InvalidParameterException",
            "Invalid parameter: maxResults and nextToken cannot be used with repositoryNames",
        )
    repositories = where.backend().repositories
    if names:
        found = [where.repository(name) for name in names]  # the first missing name fails the call
        return {"repositories": [document(r) for r in found]}
    page, token = paginate(list(repositories.values()), body)
    return {"repositories": [document(r) for r in page], **({"nextToken": token} if token else {})}


def tag_resource(where: Where, body: dict[str, Any]) -> dict[str, Any]:
    arn = str(body.get("resourceArn", ""))
    repository = where.repository(arn.rpartition(":repository/")[2])
    new = [(str(t.get("Key", "")), str(t.get("Value", ""))) for t in body.get("tags") or []]
    held = {
        t["Key"]: t["Value"] for t in where.backend().tagger.list_tags_for_resource(repository.arn)["tags"]
    }
    check_tags([*held.items(), *((k, v) for k, v in new if k not in held)])
    where.backend().tagger.tag_resource(repository.arn, [{"Key": k, "Value": v} for k, v in new])
    return {}


def put_lifecycle_policy(where: Where, body: dict[str, Any]) -> dict[str, Any]:
    repository = where.repository(str(body.get("repositoryName", "")))
    text = str(body.get("lifecyclePolicyText", ""))
    problems = ecr_rules.lifecycle_problems(text)
    if problems:
        raise Refused(
            "InvalidParameterException",
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
            f"'Lifecycle policy validation failure: {'; '.join(problems)}'",
        )
    repository.lifecycle_policy = text
    return {
        "registryId": repository.registry_id,
        "repositoryName": repository.name,
        "lifecyclePolicyText": text,
    }


# -- repository creation templates -----------------------------------------------------------------------
def create_template(state: State, where: Where, body: dict[str, Any], kms: Kms) -> dict[str, Any]:
    templates = state.templates.setdefault((where.account, where.region), {})
    prefix = str(body.get("prefix", ""))
    if prefix in templates:
        raise Refused(
            "TemplateAlreadyExistsException", f"a repository creation template for {prefix!r} exists"
        )
    template = _template(where, body, kms, prefix)
    templates[prefix] = template
    return {"registryId": where.account, "repositoryCreationTemplate": template}


def update_template(state: State, where: Where, body: dict[str, Any], kms: Kms) -> dict[str, Any]:
    templates = state.templates.get((where.account, where.region), {})
    prefix = str(body.get("prefix", ""))
    if prefix not in templates:
        raise Refused("TemplateNotFoundException", f"no repository creation template for {prefix!r}")
    template = _template(where, {**templates[prefix], **body}, kms, prefix)
    template["createdAt"] = templates[prefix]["createdAt"]
    templates[prefix] = template
    return {"registryId": where.account, "repositoryCreationTemplate": template}


def delete_template(state: State, where: Where, body: dict[str, Any]) -> dict[str, Any]:
    prefix = str(body.get("prefix", ""))
    template = state.templates.get((where.account, where.region), {}).pop(prefix, None)
    if template is None:
        raise Refused("TemplateNotFoundException", f"no repository creation template for {prefix!r}")
    return {"registryId": where.account, "repositoryCreationTemplate": template}


def describe_templates(state: State, where: Where, body: dict[str, Any]) -> dict[str, Any]:
    templates = state.templates.get((where.account, where.region), {})
    wanted = body.get("prefixes")
    chosen = [t for p, t in sorted(templates.items()) if not wanted or p in wanted]
    page, token = paginate(chosen, body)
    return {
        "registryId": where.account,
        "repositoryCreationTemplates": page,
        **({"nextToken": token} if token else {}),
    }


def _template(where: Where, body: dict[str, Any], kms: Kms, prefix: str) -> dict[str, Any]:
    if prefix != "ROOT" and not NAME.match(prefix):
        raise Refused(
            "InvalidParameterException", f"prefix {prefix!r} must be ROOT or a repository namespace"
        )
    applied = list(body.get("appliedFor") or [])
    if not applied or any(a not in APPLIED_FOR for a in applied):
        raise Refused("InvalidParameterException", f"appliedFor must list some of {', '.join(APPLIED_FOR)}")
    check_tags([(str(t.get("Key", "")), str(t.get("Value", ""))) for t in body.get("resourceTags") or []])
    check_exclusion_filters(body.get("imageTagMutabilityExclusionFilters"))
    if body.get("lifecyclePolicy"):
        problems = ecr_rules.lifecycle_problems(str(body["lifecyclePolicy"]))
        if problems:
            raise Refused("InvalidParameterException", "lifecyclePolicy: " + "; ".join(problems))
    encryption = body.get("encryptionConfiguration") or {"encryptionType": "AES256"}
    if encryption.get("kmsKey"):
        kms.require(str(encryption["kmsKey"]), where.account, where.region)
    now = time.time()
    keys = (
        "description",
        "repositoryPolicy",
        "lifecyclePolicy",
        "customRoleArn",
        "imageTagMutabilityExclusionFilters",
    )
    return {
        "prefix": prefix,
        "appliedFor": applied,
        "encryptionConfiguration": encryption,
        "resourceTags": list(body.get("resourceTags") or []),
        "imageTagMutability": body.get("imageTagMutability") or "MUTABLE",
        **{key: body[key] for key in keys if body.get(key)},
        "createdAt": body.get("createdAt", now),
        "updatedAt": now,
    }


def template_for(state: State, where: Where, name: str, applied_for: str) -> dict[str, Any] | None:
    """The template a new repository `name` gets: the longest matching prefix, else ROOT."""
    templates = state.templates.get((where.account, where.region), {})
    matching = [
        t
        for p, t in templates.items()
        if applied_for in t["appliedFor"] and (p == "ROOT" or name == p or name.startswith(p + "/"))
    ]
    matching.sort(key=lambda t: -1 if t["prefix"] == "ROOT" else len(t["prefix"]))
    return matching[-1] if matching else None


def create_from_template(state: State, where: Where, name: str, applied_for: str) -> Any:
    """A repository ECR creates by itself (for a replica, say): its template's settings, or ECR's
    defaults (MUTABLE, AES256, no scan on push: userguide/replication.html)."""
    template = template_for(state, where, name, applied_for) or {}
    repository = where.backend().create_repository(
        repository_name=name,
        registry_id=where.account,
        encryption_config=dict(template.get("encryptionConfiguration") or {"encryptionType": "AES256"}),
        image_scan_config={"scanOnPush": False},
        image_tag_mutability=template.get("imageTagMutability") or "MUTABLE",
        tags=list(template.get("resourceTags") or []),
        image_tag_mutability_exclusion_filters=template.get("imageTagMutabilityExclusionFilters"),
    )
    if template.get("lifecyclePolicy"):
        repository.lifecycle_policy = template["lifecyclePolicy"]
    if template.get("repositoryPolicy"):
        repository.policy = template["repositoryPolicy"]
    return repository


def json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
