"""What Amazon ECR accepts, as AWS documents it: one source for the spec reader and the emulator.

Sources (AWS's ECR API reference and user guide):
- tag mutability exclusion filters: API_ImageTagMutabilityExclusionFilter.html (WILDCARD, `*` only);
- lifecycle policies: userguide/lifecycle_policy_parameters.html, and the 30,720-character quota in
  userguide/service-quotas.html;
- resource tags: API_Tag.html and userguide/ecr-using-tags.html (50 per resource, `aws:` reserved);
- replication: userguide/replication.html ("up to 25 unique destinations across all rules, with a
  maximum of 10 rules total. Each rule may contain up to 100 filters");
- names and sizes: API_CreateRepository.html (repositoryName 2-256), API_PutImage.html (imageTag
  1-300, imageManifest up to 4,194,304), API_BatchGetImage.html (imageIds 1-100);
- tags and repository names through the registry: the OCI distribution spec
  (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
MAX_LIFECYCLE_POLICY = 30_720
MAX_LIFECYCLE_WILDCARDS = 4  # per tagPatternList entry
MIN_ARCHIVE_DAYS = 90  # archived images are kept (and billed) at least 90 days
MAX_REPLICATION_RULES = 10
MAX_REPLICATION_DESTINATIONS = 25  # unique destinations across all rules
MAX_FILTERS_PER_RULE = 100
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_IMAGE_TAG = 300
MAX_REPOSITORY_NAME = 256
MAX_IMAGE_IDS = 100  # per BatchGetImage
MAX_EXCLUSION_FILTERS = 5  # imageTagMutabilityExclusionFilters: "Minimum number of 1 item. Maximum ... 5"
MAX_OCI_TAG = 128  # the registry's limit (the API's imageTag allows 300; pushes go through the registry)
OCI_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")  # whole strings only: fullmatch
REPOSITORY_NAME = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
EXCLUSION_FILTER = re.compile(r"^[0-9a-zA-Z._*-]{1,128}$")
KMS_KEY_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?:key|alias)/\S+$"
)

_TAG_STATUSES = ("tagged", "untagged", "any")
_COUNT_TYPES = ("imageCountMoreThan", "sinceImagePushed", "sinceImagePulled", "sinceImageTransitioned")
_STORAGE_CLASSES = ("standard", "archive")
_RULE_KEYS = {"rulePriority", "description", "selection", "action"}
_SELECTION_KEYS = {
    "tagStatus",
    "tagPatternList",
    "tagPrefixList",
    "storageClass",
    "countType",
    "countUnit",
    "countNumber",
}
_ACTION_KEYS = {"type", "targetStorageClass"}


def wildcard_match(pattern: str, value: str) -> bool:
    """ECR's wildcard filters: `*` stands for any run of characters; nothing else is special."""
    regex = "".join(".*" if c == "*" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def tag_is_mutable(mutability: str | None, exclusions: Iterable[str], tag: str) -> bool:
    """Whether ECR lets a push move `tag`: MUTABLE, or an exception (a matching wildcard filter) to
    IMMUTABLE_WITH_EXCLUSION, or no exception to MUTABLE_WITH_EXCLUSION. Unknown: assume it may."""
    excluded = any(wildcard_match(pattern, tag) for pattern in exclusions)
    if mutability == "IMMUTABLE":
        return False
    if mutability == "IMMUTABLE_WITH_EXCLUSION":
        return excluded
    if mutability == "MUTABLE_WITH_EXCLUSION":
        return not excluded
    return True


def oci_tag_problem(tag: str) -> str | None:
    """Why the registry would refuse `tag` as a tag, in words a message can end with; None if it
    would take it. The first problem found, the most telling first: a control character, whitespace,
    a path, a foreign character, the length, and then anything else the tag grammar refuses."""
    if not tag:
        return "it is empty"
    for char in tag:
        category = unicodedata.category(char)
        if category == "Cc":
            return f"it holds the control character U+{ord(char):04X}"
        if category in ("Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            return f"it holds the invisible character U+{ord(char):04X}"
        if char.isspace():
            return f"it holds whitespace (U+{ord(char):04X})"
    if "/" in tag or ".." in tag:
        return "it holds / or .., which make a path"
    foreign = next((char for char in tag if not char.isascii()), None)
    if foreign is not None:
        return f"it holds the non-ASCII character U+{ord(foreign):04X} ({unicodedata.name(foreign, '?')})"
    if len(tag) > MAX_OCI_TAG:
        return f"it is {len(tag)} characters long, and a tag is at most {MAX_OCI_TAG}"
    if OCI_TAG.fullmatch(tag) is None:
        return "a tag is letters, digits, . _ and - (a chart version's + becomes _), not starting with . or -"
    return None


def repository_name_problem(name: str) -> str | None:
    """Why ECR would refuse `name` as a repository name; None if it would take it."""
    if not 2 <= len(name) <= MAX_REPOSITORY_NAME:
        return f"it is {len(name)} characters long, and ECR takes 2 to {MAX_REPOSITORY_NAME}"
    if REPOSITORY_NAME.fullmatch(name) is None:
        return "a repository name is lowercase letters and digits, with . _ - or / between them"
    return None


def tag_problems(tags: Sequence[tuple[str, str]]) -> list[str]:
    """What ECR would refuse in a repository's tags."""
    problems = []
    if len(tags) > MAX_TAGS:
        problems.append(f"{len(tags)} tags, but a repository holds at most {MAX_TAGS}")
    for key, value in tags:
        if not 1 <= len(key) <= MAX_TAG_KEY:
            problems.append(f"tag key {key[:40]!r} is {len(key)} characters; keys are 1 to {MAX_TAG_KEY}")
        if len(value) > MAX_TAG_VALUE:
            problems.append(f"the value of tag {key!r} is {len(value)} characters; at most {MAX_TAG_VALUE}")
        if key.lower().startswith("aws:"):
            problems.append(f"tag key {key!r} starts with aws:, which AWS reserves for itself")
    return problems


def lifecycle_problems(text: str) -> list[str]:
    """What ECR's validation of a lifecycle policy would refuse; [] for a policy it accepts."""
    if len(text) > MAX_LIFECYCLE_POLICY:
        return [f"the policy is {len(text)} characters; ECR allows {MAX_LIFECYCLE_POLICY}"]
    try:
        document = json.loads(text)
    except ValueError as exc:
        return [f"the policy is not JSON: {exc}"]
    if not isinstance(document, dict) or set(document) != {"rules"}:
        return ["the policy must be an object with exactly one key, rules"]
    rules = document["rules"]
    if not isinstance(rules, list) or not rules:
        return ["rules must be a non-empty list"]
    problems: list[str] = []
    priorities: list[int] = []
    any_priority: int | None = None
    for number, rule in enumerate(rules, start=1):
        where = f"rule {number}"
        if not isinstance(rule, dict):
            problems.append(f"{where} is not an object")
            continue
        unknown = set(rule) - _RULE_KEYS
        if unknown:
            problems.append(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
        priority = rule.get("rulePriority")
        if not isinstance(priority, int) or not _positive_int(priority):
            problems.append(f"{where}: rulePriority must be a whole number of at least 1")
        elif priority in priorities:
            problems.append(f"{where}: rulePriority {priority} is not unique")
        else:
            priorities.append(priority)
            where = f"rule {priority}"
        if "description" in rule and not isinstance(rule["description"], str):
            problems.append(f"{where}: description must be a string")
        selection = rule.get("selection")
        if not isinstance(selection, dict):
            problems.append(f"{where}: selection is required")
        else:
            problems += [f"{where}: {p}" for p in _selection_problems(selection)]
            if selection.get("tagStatus") == "any" and _positive_int(priority):
                any_priority = priority
        action = rule.get("action")
        if not isinstance(action, dict):
            problems.append(f"{where}: action is required")
        else:
            problems += [f"{where}: {p}" for p in _action_problems(action)]
            if isinstance(selection, dict):
                problems += [f"{where}: {p}" for p in _archive_problems(selection, action)]
    if any_priority is not None and any_priority != max(priorities):
        problems.append(
            f"rule {any_priority} selects tagStatus any, so it must have the highest rulePriority"
        )
    return problems


def _selection_problems(selection: Mapping[str, Any]) -> list[str]:
    problems = []
    unknown = set(selection) - _SELECTION_KEYS
    if unknown:
        problems.append(f"selection has unknown keys: {', '.join(sorted(unknown))}")
    status = selection.get("tagStatus")
    lists = [key for key in ("tagPatternList", "tagPrefixList") if key in selection]
    if status not in _TAG_STATUSES:
        problems.append(f"tagStatus must be one of {', '.join(_TAG_STATUSES)}")
    elif status == "tagged" and not lists:
        problems.append("tagStatus tagged needs a tagPatternList or a tagPrefixList")
    elif status != "tagged" and lists:
        problems.append(f"tagStatus {status} takes no {' or '.join(lists)}")
    if len(lists) == 2:
        problems.append("give a tagPatternList or a tagPrefixList, not both")
    for key in lists:
        values = selection[key]
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            problems.append(f"{key} must be a non-empty list of non-empty strings")
        elif key == "tagPatternList":
            problems += [
                f"tag pattern {v!r} has more than {MAX_LIFECYCLE_WILDCARDS} wildcards"
                for v in values
                if v.count("*") > MAX_LIFECYCLE_WILDCARDS
            ]
    count_type = selection.get("countType")
    if count_type not in _COUNT_TYPES:
        problems.append(f"countType must be one of {', '.join(_COUNT_TYPES)}")
    elif count_type == "imageCountMoreThan" and "countUnit" in selection:
        problems.append("countUnit applies only to the since* count types, not imageCountMoreThan")
    elif count_type != "imageCountMoreThan" and selection.get("countUnit") != "days":
        problems.append(f"countType {count_type} needs countUnit days")
    if not _positive_int(selection.get("countNumber")):
        problems.append("countNumber must be a whole number of at least 1")
    storage = selection.get("storageClass")
    if storage is not None and storage not in _STORAGE_CLASSES:
        problems.append(f"storageClass must be one of {', '.join(_STORAGE_CLASSES)}")
    if count_type == "sinceImageTransitioned" and storage != "archive":
        problems.append("countType sinceImageTransitioned needs storageClass archive")
    return problems


def _archive_problems(selection: Mapping[str, Any], action: Mapping[str, Any]) -> list[str]:
    """The archive class's pairings (userguide/lifecycle_policy_parameters.html,
    userguide/lifecycle_policy_examples.html): sinceImagePulled only transitions, archived images
    are only expired, by sinceImageTransitioned, after at least 90 days."""
    problems = []
    count_type, kind = selection.get("countType"), action.get("type")
    if count_type == "sinceImagePulled" and kind != "transition":
        problems.append("countType sinceImagePulled goes only with action transition")
    if count_type == "sinceImageTransitioned" and kind != "expire":
        problems.append("countType sinceImageTransitioned goes only with action expire")
    if selection.get("storageClass") == "archive" and count_type != "sinceImageTransitioned":
        problems.append("storageClass archive goes only with countType sinceImageTransitioned")
    number = selection.get("countNumber")
    if count_type == "sinceImageTransitioned" and isinstance(number, int) and 1 <= number < MIN_ARCHIVE_DAYS:
        problems.append(
            f"countType sinceImageTransitioned needs a countNumber of at least {MIN_ARCHIVE_DAYS}: "
            f"archived images are kept {MIN_ARCHIVE_DAYS} days"
        )
    return problems


def _action_problems(action: Mapping[str, Any]) -> list[str]:
    problems = []
    unknown = set(action) - _ACTION_KEYS
    if unknown:
        problems.append(f"action has unknown keys: {', '.join(sorted(unknown))}")
    kind = action.get("type")
    if kind == "expire" and "targetStorageClass" in action:
        problems.append("action expire takes no targetStorageClass")
    elif kind == "transition" and action.get("targetStorageClass") != "archive":
        problems.append("action transition needs targetStorageClass archive")
    elif kind not in ("expire", "transition"):
        problems.append("action type must be expire or transition")
    return problems


def replication_problems(rules: Iterable[Mapping[str, Any]]) -> list[str]:
    """What ECR would refuse in a replication configuration's rules (besides replicating to itself)."""
    listed = list(rules)
    problems = []
    if len(listed) > MAX_REPLICATION_RULES:
        problems.append(f"{len(listed)} rules; a registry holds at most {MAX_REPLICATION_RULES}")
    destinations = set()
    for number, rule in enumerate(listed, start=1):
        targets = rule.get("destinations") or []
        if not targets:
            problems.append(f"rule {number} has no destination")
        for destination in targets:
            destinations.add((destination.get("region"), destination.get("registryId")))
        if len(rule.get("repositoryFilters") or []) > MAX_FILTERS_PER_RULE:
            problems.append(f"rule {number} has more than {MAX_FILTERS_PER_RULE} repository filters")
    if len(destinations) > MAX_REPLICATION_DESTINATIONS:
        problems.append(
            f"{len(destinations)} unique destinations across the rules; "
            f"ECR allows {MAX_REPLICATION_DESTINATIONS}"
        )
    return problems


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# -- managed signing (PutSigningConfiguration) ---------------------------------------------------
# [BC] SigningProfileArn, SigningRuleList, SigningRepositoryFilterList, SigningRepositoryFilterValue
SIGNING_PROFILE_ARN = re.compile(
    r"^arn:aws(-[a-z]+)*:signer:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):"
    r"/signing-profiles/(?P<name>[a-zA-Z0-9_]{2,})$"
)
MAX_SIGNING_PROFILE_ARN = 200
MAX_SIGNING_RULES = 10
MAX_SIGNING_FILTERS = 100
MAX_SIGNING_FILTER = 256
SIGNING_FILTER = re.compile(r"^(?:[a-z0-9*]+(?:[._-][a-z0-9*]+)*/)*[a-z0-9*]+(?:[._-][a-z0-9*]+)*$")
SIGNING_FILTER_TYPE = "WILDCARD_MATCH"
SIGNING_STATUSES = ("IN_PROGRESS", "COMPLETE", "FAILED")


def signing_rule_problems(profile_arn: str, filters: Iterable[str], region: str) -> list[str]:
    """What ECR would refuse, or never sign with, in a declared rule; [] when it is good."""
    problems = []
    found = SIGNING_PROFILE_ARN.match(profile_arn)
    if found is None:
        problems.append(
            f"{profile_arn!r} is not a signing profile ARN: ECR takes "
            "arn:aws:signer:REGION:ACCOUNT:/signing-profiles/NAME (NAME of 2 or more letters, digits or _)"
        )
    elif found["region"] != region:
        problems.append(
            f"the signing profile {profile_arn} is in {found['region']}, but the registry is in {region}: "
            "ECR signs only with profiles of the registry's region (the profile may be another account's)"
        )
    if len(profile_arn) > MAX_SIGNING_PROFILE_ARN:
        problems.append(
            f"the profile ARN is {len(profile_arn)} characters; ECR takes up to {MAX_SIGNING_PROFILE_ARN}"
        )
    listed = list(filters)
    if len(listed) > MAX_SIGNING_FILTERS:
        problems.append(
            f"{len(listed)} repository filters; a signing rule holds at most {MAX_SIGNING_FILTERS}"
        )
    for pattern in listed:
        if not 1 <= len(pattern) <= MAX_SIGNING_FILTER or not SIGNING_FILTER.match(pattern):
            problems.append(
                f"repository filter {pattern!r} is not one ECR takes: a repository name (lowercase letters, "
                f"digits, and . _ - between them, / between parts) where * stands for any run of "
                f"characters, up to {MAX_SIGNING_FILTER} characters"
            )
    return problems
