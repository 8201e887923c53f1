"""Repository items: each ECR repository a spec mirrors into exists, with every setting the spec declares.

This is also the one place a repository is created: a chart version whose repository is missing
asks `ensure_exists` here (its repository item may have been deselected with -k).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ecrmirror import ecr_rules, selection
from ecrmirror.ecr import RepositoryState
from ecrmirror.errors import AwsError, EcrMirrorError, RepositoryMissing
from ecrmirror.outcome import Outcome, Result
from ecrmirror.run import Run
from ecrmirror.spec import DEFAULT_TAG_MUTABILITY, ChartEntry, Registry, RepositorySettings, Target


def announce(run: Run, target: Target, names: Iterable[str]) -> None:
    """The repositories the run will ask about: described together, in batches."""
    run.inventory.expect_repositories(target.registry, names)


def warm_up(run: Run, target: Target, name: str) -> None:
    """Once every repository is announced: describe them now, beside the upstreams' first reads,
    before the first repository item asks (with more than one job; see Run.warm)."""
    registry = target.registry
    run.warm(_described_key(registry), lambda: run.inventory.repository(registry, name))


def _described_key(registry: Registry) -> tuple[str, str]:
    return ("repositories", registry.host)


def described_ahead(run: Run, registry: Registry, name: str) -> bool:
    """For another warm-up: `name` exists, as the run's batched description (`warm_up`) says,
    once it has ended well. False when it failed or was not started: asking again here would
    add a request that one job would not send."""
    return run.warmed_well(_described_key(registry)) and run.inventory.repository(registry, name) is not None


def exists_as_described(run: Run, registry: Registry, name: str) -> bool | None:
    """For another warm-up: whether `name` exists, as the run's batched description says, without
    asking ECR (waiting for the description if it is under way); None when its answer is not in
    (it failed, or a repository item took it and is still waiting): the item then asks."""
    run.warmed_well(_described_key(registry))
    if not run.inventory.described(registry, name):
        return None
    return run.inventory.repository(registry, name) is not None


def _described(run: Run, registry: Registry, name: str) -> RepositoryState | None:
    """`name`'s settings (None if missing), from the run's batched description (`warm_up`)."""
    run.warmed(_described_key(registry))
    return run.inventory.repository(registry, name)


def check(run: Run, spec_path: Path, target: Target, name: str, preview: bool = True) -> Result:
    """Read-only: does `name` exist with every setting the spec declares? `preview`: and what
    would the spec's lifecycle policy do to its versions (a replica's source says it for both)."""
    state = _described(run, target.registry, name)
    if state is None:
        how = (
            "`pytest --sync` creates it"
            if target.create_repositories
            else "create it with:\n  " + create_repository_command(target.registry, name, target.repository)
        )
        return Result(Outcome.MISSING, f"repository {name} does not exist in {target.registry.host}; {how}")
    found = differences(target.repository, _actual(run, target, state))
    if not found:
        present = Result(Outcome.PRESENT, f"repository {name} has every declared setting")
        return _lifecycle_preview(run, target, name, present) if preview else present
    return Result(Outcome.DIFFERS, _differences_message(name, found, target, spec_path))


def sync(
    run: Run,
    spec_path: Path,
    target: Target,
    name: str,
    charts: Iterable[ChartEntry] = (),
    preview: bool = True,
) -> Result:
    """Create `name` if missing; change declared settings only under enforce_settings.

    A repository is created only for a chart its upstream has, so that a misspelt chart name
    fails without leaving an empty repository behind.
    """
    state = _described(run, target.registry, name)
    if state is None:
        _require_upstream(run, spec_path, charts)
        if ensure_exists(run, spec_path, target, name):
            return Result(Outcome.CREATED, f"created repository {name} with the declared settings")
        state = run.inventory.repository(target.registry, name)  # someone else created it meanwhile
        if state is None:
            raise AwsError(f"repository {name} was created concurrently but cannot be described")
    found = differences(target.repository, _actual(run, target, state))
    if not found:
        present = Result(Outcome.PRESENT, f"repository {name} has every declared setting")
        return _lifecycle_preview(run, target, name, present) if preview else present
    if not target.repository.enforce:
        return Result(Outcome.DIFFERS, _differences_message(name, found, target, spec_path))
    _enforce(run, target, state, found)
    run.inventory.repository_changed(target.registry, name)
    fixed = [d for d in found if d.changeable]
    left = [d for d in found if not d.changeable]
    if left:
        return Result(
            Outcome.DIFFERS,
            (f"changed {', '.join(d.setting for d in fixed)}; " if fixed else "")
            + _differences_message(name, left, target, spec_path),
        )
    updated = Result(Outcome.UPDATED, f"repository {name}: changed " + "; ".join(str(d) for d in fixed))
    return _lifecycle_preview(run, target, name, updated) if preview else updated


def _lifecycle_preview(run: Run, target: Target, name: str, present: Result) -> Result:
    """`present`, unless the spec's own lifecycle policy would expire versions the spec declares (a
    mirror that loses what it mirrors: DIFFERS); versions it would archive are a note, as the audit
    will fail them as ARCHIVED unless the spec accepts archived versions. ECR's lifecycle policy
    preview says what the rules would do now; ECR acts within 24 hours of an image meeting a rule
    (userguide/LifecyclePolicies.html), so this is said before it happens."""
    policy = target.repository.lifecycle_policy
    declared = run.inventory.expected_tags(target.registry, name)
    if policy is None or not declared:
        return present
    acted = run.ecr(target.registry).lifecycle_preview(name, policy)
    if acted is None:
        note = f"ECR's lifecycle policy preview of {name} did not finish: what its rules will do is unchecked"
        return replace(present, notes=(*present.notes, note))
    expiring = sorted(tag for tag, action in acted.items() if tag in declared and action == "EXPIRE")
    archiving = sorted(tag for tag, action in acted.items() if tag in declared and action == "TRANSITION")
    if expiring:
        return Result(
            Outcome.DIFFERS,
            f"the spec's lifecycle policy would expire {', '.join(expiring)} in {name}, which the spec "
            "declares: ECR deletes them within 24 hours. Narrow the rule (tagPatternList, a higher "
            "countNumber) or remove those versions from the spec",
        )
    notes: tuple[str, ...] = ()
    if archiving and target.archived != "accept":
        notes = (
            f"the spec's lifecycle policy would archive {', '.join(archiving)} in {name}: they cannot be "
            "pulled once archived, and the audit will fail them as ARCHIVED. Write `archived: accept` to "
            "keep them archived on purpose, or change the rule",
        )
    return replace(present, notes=(*present.notes, *notes))


def ensure_exists(run: Run, spec_path: Path, target: Target, name: str) -> bool:
    """Create `name` with the spec's settings (True), or find that someone else just did (False);
    RepositoryMissing, saying how to create it, when the spec does not allow creating it."""
    if not target.create_repositories:
        raise RepositoryMissing(
            f"repository {name} does not exist in {target.registry.host}, "
            "and the spec does not allow creating it. Create it with:\n  "
            + create_repository_command(target.registry, name, target.repository)
            + f"\nor set `create_repositories: true` under target in {spec_path}."
        )
    created = run.ecr(target.registry).create_repository(name, target.repository)
    run.inventory.repository_changed(target.registry, name)
    if created:
        run.inventory.created(target.registry, name)
    return created


def tag_may_move(run: Run, target: Target, repository: str) -> Callable[[str], bool]:
    """Whether ECR would let a PUT replace a tag of `repository`, so that the tag is asked for
    again right before its PUT: the repository's tag mutability and exclusions, as this run created
    it (no request) or as ECR describes it (asked once for the run's repositories)."""
    if run.inventory.created_here(target.registry, repository):
        mutability: str | None = target.repository.image_tag_mutability or DEFAULT_TAG_MUTABILITY
        exclusions: tuple[str, ...] = target.repository.mutability_exclusions or ()
    else:
        state = _described(run, target.registry, repository)
        mutability = None if state is None else state.image_tag_mutability
        exclusions = () if state is None else state.mutability_exclusions
    return lambda tag: ecr_rules.tag_is_mutable(mutability, exclusions, tag)


def _require_upstream(run: Run, spec_path: Path, charts: Iterable[ChartEntry]) -> None:
    """Raise the upstream's error unless at least one of the versions is there to mirror: listed
    ones, or those a constraint chooses (nothing is created for a constraint whose every choice
    fails). The index is read once per run, so this asks the upstream nothing new."""
    first_error: EcrMirrorError | None = None
    for chart in charts:
        try:
            source = run.source(spec_path, chart)
            chosen = selection.select(run, spec_path, chart)
        except EcrMirrorError as exc:
            first_error = first_error or exc
            continue
        for version in chosen:
            try:
                source.release(chart.name, version)
                return
            except EcrMirrorError as exc:
                first_error = first_error or exc
    if first_error is not None:
        raise first_error


def _actual(run: Run, target: Target, state: RepositoryState) -> Actual:
    ecr, declared = run.ecr(target.registry), target.repository
    return Actual(
        image_tag_mutability=state.image_tag_mutability,
        mutability_exclusions=state.mutability_exclusions,
        scan_on_push=state.scan_on_push,
        encryption=state.encryption,
        kms_key=state.kms_key,
        tags=ecr.tags(state.arn) if declared.tags is not None else None,
        lifecycle_policy=ecr.lifecycle_policy(state.name) if declared.lifecycle_policy is not None else None,
    )


def _enforce(run: Run, target: Target, state: RepositoryState, found: list[Difference]) -> None:
    ecr, declared = run.ecr(target.registry), target.repository
    settings = {d.setting for d in found if d.changeable}
    if settings & {"image_tag_mutability", "image_tag_mutability_exclusion_filters"}:
        mutability = declared.image_tag_mutability or state.image_tag_mutability
        exclusions = declared.mutability_exclusions
        if exclusions is None and mutability.endswith("_WITH_EXCLUSION"):
            exclusions = state.mutability_exclusions
        ecr.put_image_tag_mutability(state.name, mutability, exclusions)
    if "scan_on_push" in settings and declared.scan_on_push is not None:
        ecr.put_image_scanning_configuration(state.name, declared.scan_on_push)
    tags = {key: value for key, value in declared.tags or () if f"tags.{key}" in settings}
    if tags:
        ecr.tag_resource(state.arn, tags)  # adds and updates; never removes anyone's tags
    if "lifecycle_policy" in settings and declared.lifecycle_policy is not None:
        ecr.put_lifecycle_policy(state.name, declared.lifecycle_policy)


def create_repository_command(registry: Registry, name: str, settings: RepositorySettings) -> str:
    """The AWS CLI commands that create `name` as the spec declares it."""
    command = [
        "aws", "ecr", "create-repository", "--region", registry.region, "--repository-name", name,
        "--image-tag-mutability", settings.image_tag_mutability or DEFAULT_TAG_MUTABILITY,
    ]  # fmt: skip
    if settings.mutability_exclusions is not None:
        command.append("--image-tag-mutability-exclusion-filters")
        command.extend(f"filterType=WILDCARD,filter={f}" for f in settings.mutability_exclusions)
    if settings.scan_on_push is not None:
        command += ["--image-scanning-configuration", f"scanOnPush={str(settings.scan_on_push).lower()}"]
    if settings.encryption is not None:
        encryption = f"encryptionType={settings.encryption}"
        if settings.kms_key:
            encryption += f",kmsKey={settings.kms_key}"
        command += ["--encryption-configuration", encryption]
    if settings.tags:
        command.append("--tags")
        command.extend(f"Key={key},Value={value}" for key, value in settings.tags)
    text = shlex.join(command)
    if settings.lifecycle_policy is not None:
        lifecycle = ["aws", "ecr", "put-lifecycle-policy", "--region", registry.region]
        lifecycle += ["--repository-name", name, "--lifecycle-policy-text", settings.lifecycle_policy]
        text += "\n  " + shlex.join(lifecycle)
    return text


# -- declared against actual: no I/O below ------------------------------------------------------------


@dataclass(frozen=True)
class Actual:
    """A repository's settings as ECR reports them; tags and lifecycle only when the spec declares them."""

    image_tag_mutability: str
    mutability_exclusions: tuple[str, ...]
    scan_on_push: bool
    encryption: str
    kms_key: str | None
    tags: Mapping[str, str] | None = None
    lifecycle_policy: str | None = None


@dataclass(frozen=True)
class Difference:
    """One declared setting that the repository does not have."""

    setting: str
    declared: str
    actual: str
    changeable: bool = True  # False: ECR cannot change it on an existing repository

    def __str__(self) -> str:
        return f"{self.setting}: declared {self.declared}, actual {self.actual}"


def differences(declared: RepositorySettings, actual: Actual) -> list[Difference]:
    """Every declared setting that `actual` lacks, in the order the spec lists them."""
    found: list[Difference] = []
    if declared.image_tag_mutability not in (None, actual.image_tag_mutability):
        found.append(
            Difference("image_tag_mutability", declared.image_tag_mutability, actual.image_tag_mutability)
        )
    if declared.mutability_exclusions is not None and set(declared.mutability_exclusions) != set(
        actual.mutability_exclusions
    ):
        found.append(
            Difference(
                "image_tag_mutability_exclusion_filters",
                _show(list(declared.mutability_exclusions)),
                _show(list(actual.mutability_exclusions)),
            )
        )
    if declared.scan_on_push not in (None, actual.scan_on_push):
        found.append(Difference("scan_on_push", _show(declared.scan_on_push), _show(actual.scan_on_push)))
    if declared.encryption not in (None, actual.encryption):
        found.append(Difference("encryption", declared.encryption, actual.encryption, changeable=False))
    if declared.kms_key is not None and declared.kms_key != actual.kms_key:
        found.append(Difference("kms_key", declared.kms_key, actual.kms_key or "none", changeable=False))
    if declared.tags is not None:
        held = actual.tags or {}
        for key, value in declared.tags:
            if held.get(key) != value:
                found.append(Difference(f"tags.{key}", _show(value), _show(held.get(key, "(not set)"))))
    if declared.lifecycle_policy is not None and not same_policy(
        declared.lifecycle_policy, actual.lifecycle_policy
    ):
        found.append(
            Difference("lifecycle_policy", declared.lifecycle_policy, actual.lifecycle_policy or "(none)")
        )
    return found


def same_policy(declared: str, actual: str | None) -> bool:
    """Lifecycle policies compare as JSON values: ECR may return other spacing and key order."""
    if actual is None:
        return False
    try:
        return bool(json.loads(declared) == json.loads(actual))
    except ValueError:
        return False


def _show(value: Any) -> str:
    return json.dumps(value)


def _differences_message(name: str, found: list[Difference], target: Target, spec_path: Path) -> str:
    lines = [f"settings of {name} differ from the spec ({target.repository.where or spec_path}):"]
    lines += [f"  {d}" for d in found]
    if any(not d.changeable for d in found):
        lines.append(
            "  ECR cannot change a repository's encryption: create a new repository with the declared "
            "encryption and copy the images into it, or make the spec say what the repository has."
        )
    if any(d.changeable for d in found):
        if target.repository.enforce:
            lines.append("  the other settings were changed to the spec's")
        else:
            lines.append(
                "  set `enforce_settings: true` under target.repository and run `pytest --sync` to apply "
                "the spec, or make the spec say what the repository has."
            )
    return "\n".join(lines)
