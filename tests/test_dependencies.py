"""with_dependencies: every chart a mirrored version declares from a repository is mirrored too."""

from __future__ import annotations

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator


def test_dependencies_become_items_of_their_own_and_say_who_pulled_them_in(
    chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    # given app 1.0.0 and 1.1.0 depend on redis ^17.1.0 from the same repository, and on a
    # vendored chart (empty repository) that lives inside the archive
    for version in ("17.0.0", "17.3.1", "18.0.0"):
        chart_server.add("redis", version)
    dependencies = [
        {"name": "redis", "version": "^17.1.0", "repository": chart_server.url},
        {"name": "common", "version": "1.0.0", "repository": ""},
    ]
    chart_server.add("app", "1.0.0", dependencies=dependencies)
    chart_server.add("app", "1.1.0", dependencies=dependencies)
    chart_server.publish()
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  prefix: mirror\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: ['1.0.0', '1.1.0']\n"
        "    with_dependencies: true\n"
    )

    collected = run("--sync", "--collect-only", "-q", "mirror.yaml")
    synced = run("--sync", "-v", "mirror.yaml")

    # then redis 17.3.1 (the newest ^17.1.0, as helm picks) is an item, in the same target
    collected.stdout.fnmatch_lines(["mirror.yaml::repository::mirror/redis", "mirror.yaml::redis::17.3.1"])
    collected.stdout.no_fnmatch_line("*common*")
    synced.assert_outcomes(passed=5)
    synced.stdout.fnmatch_lines(
        [
            "mirror.yaml::redis::17.3.1 PUSHED*",
            "pulled in: redis::17.3.1 (dependency of app 1.0.0, app 1.1.0)",
        ]
    )


def test_a_dependency_version_that_does_not_exist_is_a_plain_collection_error(
    chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    chart_server.add("redis", "16.0.0")
    chart_server.add(
        "app", "1.0.0", dependencies=[{"name": "redis", "version": "~17.3", "repository": chart_server.url}]
    )
    chart_server.publish()
    write_spec(
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"charts:\n  - name: app\n    repo: {chart_server.url}\n    versions: ['1.0.0']\n"
        "    with_dependencies: true\n"
    )

    result = run("--sync", "mirror.yaml")

    result.stdout.fnmatch_lines(
        ["*app 1.0.0 depends on redis '~17.3' from *, which has no such version (newest: 16.0.0)*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert emulator.writes() == []
