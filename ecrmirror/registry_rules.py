"""Registry-wide settings a spec declares besides replication: the managed signing rules ECR signs
with, and the roles whose pulls ECR does not record. Each is audited, and merged in by --sync
without touching what others declared, as replication's rule is (replication.py).

Pull times matter because every pull stamps `lastRecordedPullTime`, and lifecycle rules with
`sinceImagePulled` archive what nobody pulled (userguide/pull-time-update-exclusions.html). An audit
that must pull (no kept manifests: manifest_store.py) runs as a role the registry excludes, so that
it does not keep every version "recently pulled".
"""

from __future__ import annotations

from ecrmirror import managed_signing
from ecrmirror.ecr import Ecr
from ecrmirror.outcome import Outcome, Result
from ecrmirror.run import Run
from ecrmirror.spec import SigningRule, Target


# -- managed signing ---------------------------------------------------------------------------------
def check_signing(run: Run, target: Target) -> Result:
    assert target.managed_signing is not None
    declared = target.managed_signing.rules
    absent = managed_signing.missing(managed_signing.read_configuration(run.ecr(target.registry)), declared)
    if absent:
        return Result(
            Outcome.MISSING,
            f"the registry's signing configuration lacks {_rules(absent)}: ECR does not sign what the "
            "mirror pushes there. `pytest --sync` adds the rules, keeping every other rule",
            notes=(_CHARTS_NOT_SIGNED,),
        )
    return Result(Outcome.PRESENT, f"ECR signs on push with {_rules(declared)}", notes=(_CHARTS_NOT_SIGNED,))


def sync_signing(run: Run, target: Target) -> Result:
    assert target.managed_signing is not None
    from filelock import FileLock  # here: most runs declare no signing rules

    declared = target.managed_signing.rules
    # One registry-wide document, read-modified-written: this run's processes take turns.
    with FileLock(run.lock_dir / f"signing-{target.registry.host}.lock"):
        changed = managed_signing.ensure(run.ecr(target.registry), declared)
    if changed:
        return Result(
            Outcome.CREATED,
            f"added to the registry's signing configuration: {_rules(declared)}",
            notes=(_CHARTS_NOT_SIGNED,),
        )
    return Result(Outcome.PRESENT, f"ECR signs on push with {_rules(declared)}", notes=(_CHARTS_NOT_SIGNED,))


_CHARTS_NOT_SIGNED = (
    "ECR's managed signing signs container images only (userguide/managed-signing.html): the spec's "
    "images get a signature per profile, its Helm charts none"
)


def _rules(rules: tuple[SigningRule, ...] | list[SigningRule]) -> str:
    return "; ".join(
        f"{rule.profile_arn} for {', '.join(rule.filters) if rule.filters else 'every repository'}"
        for rule in rules
    )


# -- pull-time exclusions ----------------------------------------------------------------------------
def check_exclusions(run: Run, target: Target) -> Result:
    assert target.pull_time_exclusions is not None
    wanted = target.pull_time_exclusions.roles
    held = excluded(run.ecr(target.registry))
    absent = [role for role in wanted if role not in held]
    if absent:
        return Result(
            Outcome.MISSING,
            f"ECR records pulls by {', '.join(absent)}: each pull it makes keeps a version from ageing "
            "out under `sinceImagePulled` lifecycle rules. `pytest --sync` registers the exclusion",
        )
    return Result(Outcome.PRESENT, f"ECR records no pull by {', '.join(wanted)}")


def sync_exclusions(run: Run, target: Target) -> Result:
    assert target.pull_time_exclusions is not None
    ecr = run.ecr(target.registry)
    wanted = target.pull_time_exclusions.roles
    held = excluded(ecr)
    registered = [role for role in wanted if role not in held and _register(ecr, role)]
    if registered:
        return Result(Outcome.CREATED, f"ECR now records no pull by {', '.join(registered)}")
    return Result(Outcome.PRESENT, f"ECR records no pull by {', '.join(wanted)}")


def excluded(ecr: Ecr) -> set[str]:
    """The principals the registry's account excludes from pull-time updates (1,000 a call)."""
    pages = ecr.pages("list_pull_time_update_exclusions", maxResults=1000) or []
    return {str(arn) for page in pages for arn in page.get("pullTimeUpdateExclusions") or []}


def _register(ecr: Ecr, role: str) -> bool:
    """Register `role`; False when another writer registered it first."""
    return (
        ecr.call(
            "register_pull_time_update_exclusion",
            missing_ok="ExclusionAlreadyExistsException",
            principalArn=role,
        )
        is not None
    )
