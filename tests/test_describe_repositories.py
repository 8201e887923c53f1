"""Which repositories exist, asked of ECR in batches: DescribeRepositories fails a whole call for
one missing name, so what a run asks costs calls by how many names are missing, never more."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from ecrclient import admin, become_user, enforcing_iam

from ecrmirror.ecr import Ecr
from ecrmirror.emulator import Emulator
from ecrmirror.errors import AwsError
from ecrmirror.run import aws_session
from ecrmirror.spec import Registry

REGISTRY = Registry("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "123456789012", "eu-west-1")
NAMES = [f"mirror/chart-{i:02d}" for i in range(40)]


def ecr_for(emulator: Emulator) -> Ecr:
    return Ecr(REGISTRY, aws_session(None, None), endpoint_url=emulator.url)


def holding(emulator: Emulator, names: list[str]) -> None:
    client = admin("ecr", emulator)
    for name in names:
        client.create_repository(repositoryName=name)
    emulator.app.requests.clear()


def describe_calls(emulator: Emulator) -> tuple[int, int]:
    """(calls that failed naming a missing repository, calls answered) of DescribeRepositories."""
    calls = [r for r in emulator.app.requests if r.action == "DescribeRepositories"]
    failed = sum(1 for r in calls if r.status == 400)
    assert all(r.status in (200, 400) for r in calls), calls
    return failed, len(calls) - failed


def test_a_few_held_among_many_are_found_with_each_missing_name_named_once(emulator: Emulator) -> None:
    held = [NAMES[3], NAMES[17], NAMES[38]]
    holding(emulator, held)

    found = ecr_for(emulator).repositories(NAMES)

    assert sorted(found) == held
    assert found[NAMES[17]].name == NAMES[17]
    failed, answered = describe_calls(emulator)
    # Each failed call names one missing name, and halves never overlap: 37 failures, no more.
    # An answered call holds at least one held name: at most 3 of them.
    assert failed == 37
    assert 1 <= answered <= 3


def test_a_few_missing_among_many_cost_at_most_two_calls_each(emulator: Emulator) -> None:
    missing = [NAMES[0], NAMES[21], NAMES[39]]
    holding(emulator, [name for name in NAMES if name not in missing])

    found = ecr_for(emulator).repositories(NAMES)

    assert sorted(found) == sorted(set(NAMES) - set(missing))
    failed, answered = describe_calls(emulator)
    # One failure per missing name, each leaving two halves: at most 2k+1 calls for k missing
    # (asked one missing name per call, the rest again each time, it was k+1 = 4 in a row).
    assert failed == 3
    assert failed + answered <= 2 * 3 + 1


def test_none_held_is_an_empty_answer_one_failed_call_per_name(emulator: Emulator) -> None:
    holding(emulator, [])

    found = ecr_for(emulator).repositories(NAMES)

    assert found == {}
    assert describe_calls(emulator) == (40, 0)  # each name named once; an empty half is never sent


def test_all_held_is_one_call(emulator: Emulator) -> None:
    holding(emulator, NAMES)

    found = ecr_for(emulator).repositories([*NAMES, *NAMES[:5]])  # a name twice is asked once

    assert sorted(found) == NAMES
    assert describe_calls(emulator) == (0, 1)


def test_the_halves_a_failed_call_leaves_are_asked_side_by_side(emulator: Emulator) -> None:
    holding(emulator, [])
    ecr = ecr_for(emulator)
    # Calls 2 and 3 (the halves of the first, failed, call) each wait until the other is being
    # sent too: one after the other, the second would wait alone and break the barrier.
    both_in_flight = threading.Barrier(2, timeout=30)
    sent: list[int] = []
    lock = threading.Lock()

    def before_send(**_: Any) -> None:
        with lock:
            sent.append(len(sent) + 1)
            number = sent[-1]
        if number in (2, 3):
            both_in_flight.wait()

    ecr.client.meta.events.register("before-send.ecr.DescribeRepositories", before_send)

    assert ecr.repositories(NAMES) == {}
    assert len(sent) == 40


def test_more_than_a_hundred_names_go_a_hundred_a_call(emulator: Emulator) -> None:
    names = [f"mirror/image-{i:03d}" for i in range(150)]
    holding(emulator, names)

    found = ecr_for(emulator).repositories(names)

    # ECR (and the emulator) refuse more than 100 repositoryNames in one call.
    assert sorted(found) == names
    assert describe_calls(emulator) == (0, 2)


def test_no_names_make_no_call(emulator: Emulator) -> None:
    emulator.app.requests.clear()

    assert ecr_for(emulator).repositories([]) == {}
    assert describe_calls(emulator) == (0, 0)


def become_describer_of_chart_0s(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user who may describe mirror/chart-0* only."""
    allowed = "arn:aws:ecr:eu-west-1:123456789012:repository/mirror/chart-0*"
    become_user(
        emulator,
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["ecr:DescribeRepositories"], "Resource": allowed}],
        },
        monkeypatch,
    )


def test_a_refusal_is_an_access_denied_error_and_nothing_more_is_asked(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    holding(emulator, NAMES[:2])
    become_describer_of_chart_0s(emulator, monkeypatch)
    emulator.app.requests.clear()

    with enforcing_iam(emulator), pytest.raises(AwsError) as refused:
        ecr_for(emulator).repositories(NAMES[:12])  # chart-10 and chart-11 are outside the policy

    assert str(refused.value).startswith(
        "access denied for ECR DescribeRepositories in account 123456789012, region eu-west-1: User: "
    )
    assert "mirror/chart-10" in str(refused.value)
    assert "Grant the ecr:DescribeRepositories action" in str(refused.value)
    calls = [r for r in emulator.app.requests if r.action == "DescribeRepositories"]
    assert [r.status for r in calls] == [400]


def test_within_the_policy_the_same_user_is_answered(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    holding(emulator, NAMES[:2])
    become_describer_of_chart_0s(emulator, monkeypatch)

    with enforcing_iam(emulator):
        found = ecr_for(emulator).repositories(NAMES[:10])

    assert sorted(found) == NAMES[:2]
