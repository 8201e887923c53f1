"""Start-up: what the plugin imports, and when; the run's first requests side by side with jobs.

Every pytest process imports the plugin, so its import must not load what only a mirror run uses
(botocore, requests, oras-py, moto); a run loads each library when it first needs it. Figures (how
long) belong to benchmarks/; these tests hold what is or is not imported, and that starting the
first requests early changes neither what is asked nor what is said.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections import Counter

import pytest
from chartfactory import package_chart
from ecrclient import become_user, enforcing_iam
from ociregistry import TokenRegistry

from conftest import REGISTRY, ChartServer
from ecrmirror import ecr, options, transport
from ecrmirror.emulator import Emulator

# What a mirror run needs, and a project's own `pytest` never should.
HEAVY = ("boto3", "botocore", "requests", "urllib3", "oras", "jsonschema", "moto", "werkzeug", "cryptography")
# What only pushes (oras-py's registry client), signing (KMS, cryptography) or --offline (moto, and
# boto3 with it) need: ECR is reached through botocore alone.
NOT_FOR_AN_UP_TO_DATE_AUDIT = ("oras", "jsonschema", "cryptography", "moto", "werkzeug", "boto3")

# Written into the pytester directory: the modules the child process had loaded when it ended.
_RECORD_MODULES = """
import json, sys

def pytest_unconfigure(config):
    with open("modules.json", "w") as f:
        json.dump(sorted(sys.modules), f)
"""


def loaded(modules: list[str], wanted: tuple[str, ...]) -> list[str]:
    return sorted({name.split(".")[0] for name in modules} & set(wanted))


def test_importing_the_plugin_loads_no_aws_http_or_registry_library() -> None:
    code = "import json, sys, ecrmirror.plugin; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert loaded(json.loads(done.stdout), HEAVY) == []


def test_a_project_s_own_tests_run_without_loading_them(pytester: pytest.Pytester) -> None:
    # given a project's own test, and no spec file
    pytester.makepyfile(
        test_own=f"""
        import sys

        def test_nothing_of_a_mirror_run_is_loaded():
            loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r}))
            assert loaded == []
        """
    )

    # when plain `pytest` runs it with the plugin installed (no path named: a named path is
    # searched for spec files, and sets a mirror run up)
    result = pytester.runpytest_subprocess("-p", "ecrmirror.plugin", "-p", "no:cacheprovider")

    # then the test saw none of the mirror run's libraries loaded
    result.assert_outcomes(passed=1)


def test_an_up_to_date_sync_loads_neither_oras_nor_cryptography_nor_moto(
    two_charts: ChartServer, emulator: Emulator, write_spec, run, pytester: pytest.Pytester
) -> None:
    # given versions already in ECR
    write_spec(_spec(two_charts, with_ingress=False))
    run("--sync", "mirror.yaml").assert_outcomes(passed=3)
    pytester.makeconftest(_RECORD_MODULES)

    # when the spec is synced again, in a process of its own
    result = pytester.runpytest_subprocess(
        "-p", "ecrmirror.plugin", "-p", "no:cacheprovider", "--sync", "-v", "mirror.yaml"
    )

    # then every version is PRESENT, and nothing was imported for pushing, signing or --offline
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["mirror.yaml::gitlab::7.1.1 PRESENT*"])
    modules = json.loads((pytester.path / "modules.json").read_text())
    assert loaded(modules, NOT_FOR_AN_UP_TO_DATE_AUDIT) == []
    assert loaded(modules, ("botocore", "requests")) == ["botocore", "requests"]  # ECR and the index, used
    assert loaded(modules, ("filelock",)) == []  # one process, no signing rule or replication: no lock


_RECORD_FROZEN = """
import gc, json

def pytest_runtest_call(item):
    with open("frozen.json", "a") as f:
        f.write(json.dumps(gc.get_freeze_count()) + "\\n")
"""


def test_an_up_to_date_sync_from_an_oci_source_does_not_load_oras(
    emulator: Emulator, write_spec, run, pytester: pytest.Pytester
) -> None:
    # given versions from an OCI registry already in ECR (their referrers looked for: none)
    upstream = TokenRegistry().start()
    try:
        for version in ("1.0.0", "1.1.0"):
            chart = package_chart(pytester.path / "charts", "db", version)
            upstream.add_chart("library/db", chart.path, "db", version)
        write_spec(
            f"target:\n  registry: {REGISTRY}\n  create_repositories: true\ncharts:\n"
            f"  - name: db\n    repo: oci://{upstream.host}/library\n    plain_http: true\n"
            "    versions: ['1.0.0', '1.1.0']\n"
        )
        run("--sync", "mirror.yaml").assert_outcomes(passed=3)  # the repository, then its versions
        pytester.makeconftest(_RECORD_MODULES)

        # when the spec is synced again, in a process of its own
        result = pytester.runpytest_subprocess(
            "-p", "ecrmirror.plugin", "-p", "no:cacheprovider", "--sync", "-v", "mirror.yaml"
        )
    finally:
        upstream.stop()

    # then both are PRESENT, compared digest to digest, and oras-py (which writes) was not loaded
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["mirror.yaml::db::1.1.0 PRESENT*"])
    modules = json.loads((pytester.path / "modules.json").read_text())
    assert loaded(modules, NOT_FOR_AN_UP_TO_DATE_AUDIT) == []


def test_a_run_in_a_process_that_goes_on_leaves_nothing_frozen(
    two_charts: ChartServer, emulator: Emulator, write_spec, run, pytester: pytest.Pytester
) -> None:
    # given a spec, and a process that will go on after the run (this one)
    write_spec(_spec(two_charts, with_ingress=False))
    pytester.makeconftest(_RECORD_FROZEN)

    # when a sync runs in it
    result = run("--sync", "mirror.yaml")

    # then what the run held was out of the collector's way while its items ran, and is back in
    # its reach afterwards: garbage the run leaves can be freed
    result.assert_outcomes(passed=3)
    during = [json.loads(line) for line in (pytester.path / "frozen.json").read_text().splitlines()]
    assert len(during) == 3
    assert min(during) > 0
    assert gc.get_freeze_count() == 0


def test_the_help_texts_and_the_ecr_user_agent_say_what_transport_does() -> None:
    # options and ecr keep these two without importing transport (requests); they must agree
    assert options.READ_DEADLINE == transport.READ_DEADLINE
    assert ecr.USER_AGENT == transport.USER_AGENT


# With jobs, ECR's description of the repositories and the upstream's index are asked for as soon
# as collection ends (Run.warm). What is asked, how often, and what the items say stay the same.
def _spec(server: ChartServer, *, with_ingress: bool = True) -> str:
    ingress = f"  - name: ingress\n    repo: {server.url}\n    versions: ['1.0.0']\n" if with_ingress else ""
    return (
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: gitlab\n    repo: {server.url}\n    versions: ['7.1.1', '7.1.2']\n{ingress}"
    )


def _asked(emulator: Emulator, server: ChartServer) -> Counter[str]:
    asked = Counter(f"{r.kind} {r.method} {r.action or r.path.split('/')[-2]}" for r in emulator.requests)
    asked.update(f"upstream {path}" for path in server.requests)
    return asked


@pytest.mark.parametrize("args", [("--sync",), ("--check-only",)], ids=["sync", "audit"])
def test_jobs_ask_what_one_job_asks_as_often(
    two_charts: ChartServer, emulator: Emulator, write_spec, run, args: tuple[str, ...]
) -> None:
    write_spec(_spec(two_charts))
    said: dict[int, list[str]] = {}
    asked: dict[int, list[Counter[str]]] = {}
    for jobs in (1, 4):
        emulator.reset()
        asked[jobs], said[jobs] = [], []
        for _ in range(2):  # the first run, and a run with everything in place (for --sync)
            emulator.app.requests.clear()
            two_charts.requests.clear()
            result = run(*args, "-v", f"--ecrmirror-jobs={jobs}", "mirror.yaml")
            asked[jobs].append(_asked(emulator, two_charts))
            said[jobs].append(_outcomes(result))

    assert asked[4] == asked[1]
    assert said[4] == said[1]
    assert asked[1][0]["upstream /index.yaml"] == 1  # one index download per source per run


def _outcomes(result: pytest.RunResult) -> list[str]:
    return [line.split(" [")[0].rstrip() for line in result.stdout.lines if line.startswith("mirror.yaml::")]


def _said_by_repository_items(lines: list[str]) -> list[str]:
    """What the repository items' failure sections ("___ repository NAME ___") say of refusals."""
    said, inside = [], False
    for line in lines:
        if line.startswith(("_", "-", "=")):
            inside = line.startswith("_") and " repository " in line
        elif inside and line.startswith("access denied for ECR"):
            said.append(line)
    return said


def test_with_jobs_a_refused_description_is_said_once_by_each_repository_as_with_one_job(
    two_charts: ChartServer, emulator: Emulator, write_spec, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a user who may not describe repositories
    write_spec(_spec(two_charts))
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken", "ecr:DescribeImages", "ecr:BatchGetImage"],
                "Resource": "*",
            }
        ],
    }
    become_user(emulator, policy, monkeypatch)
    results: dict[int, tuple[list[str], Counter[str], list[str]]] = {}
    with enforcing_iam(emulator):
        for jobs in (1, 4):
            emulator.app.requests.clear()
            two_charts.requests.clear()
            # when the spec is audited
            result = run("--check-only", "-v", f"--ecrmirror-jobs={jobs}", "mirror.yaml")
            refusals = _said_by_repository_items(result.stdout.lines)
            results[jobs] = (_outcomes(result), _asked(emulator, two_charts), refusals)

    # then each repository item says the refusal, with jobs exactly as with one, after as many requests
    outcomes, asked, refusals = results[4]
    assert (outcomes, asked, refusals) == results[1]
    assert [line for line in outcomes if "::repository::" in line] == [
        "mirror.yaml::repository::gitlab AWS ERROR",
        "mirror.yaml::repository::ingress AWS ERROR",
    ]
    assert len(refusals) == 2
    assert all("ecr:DescribeRepositories" in line for line in refusals)
    assert asked["api POST DescribeRepositories"] == 2  # once for each item (with jobs, the first early)
