"""`verify: {keyring: ...}`: a version's .prov is checked as `helm verify` checks it, before anything is
pushed, and the audit re-checks what ECR holds. Real helm signs the charts and is the oracle."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml
from chartfactory import ChartFile, package_chart, write_index
from ecrclient import become_user, enforcing_iam, printed_policy, without_action
from tools import require_tool

from conftest import REGISTRY, ChartServer
from ecrmirror.emulator import Emulator
from ecrmirror.errors import Unverified
from ecrmirror.provenance import verify

HOW = "run .ci/run, which installs helm and GnuPG (gpg, gpgv)"
SIGNER, STRANGER, EXPIRED = "Mirror Signer", "Stranger", "Expired Signer"


@dataclass(frozen=True)
class Keys:
    home: Path
    secret: Path  # every key's secret part, for helm package --sign
    trusted: Path  # the keyring a spec trusts: the signer's and the expired key's public keys
    stranger: Path  # a keyring of the stranger's public key only


def gpg(home: Path, *args: str) -> str:
    done = subprocess.run(
        [require_tool("gpg", HOW), "--batch", "--passphrase", "", *args],
        env={**os.environ, "GNUPGHOME": str(home)},
        capture_output=True,
        check=True,
        timeout=120,
    )
    return done.stdout.decode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    require_tool("gpgv", HOW)
    directory = tmp_path_factory.mktemp("keys")
    home = directory / "gnupg"
    home.mkdir(mode=0o700)
    # helm's OpenPGP reads RSA keys (not ed25519): sign-only RSA keys, as a chart publisher has.
    gpg(home, "--quick-gen-key", f"{SIGNER} <signer@example.test>", "rsa2048", "sign", "0")
    gpg(home, "--quick-gen-key", f"{STRANGER} <stranger@example.test>", "rsa2048", "sign", "0")
    # a key made in 2020 that expired a day later
    gpg(
        home,
        "--faked-system-time",
        "20200101T000000",
        "--quick-gen-key",
        f"{EXPIRED} <expired@example.test>",
        "rsa2048",
        "sign",
        "1d",
    )
    keys = Keys(home, directory / "secret.gpg", directory / "trusted.gpg", directory / "stranger.gpg")
    keys.secret.write_bytes(_export(home, "--export-secret-keys"))
    keys.trusted.write_bytes(_export(home, "--export", SIGNER, EXPIRED))
    keys.stranger.write_bytes(_export(home, "--export", STRANGER))
    return keys


def _export(home: Path, *args: str) -> bytes:
    return subprocess.run(
        [require_tool("gpg", HOW), "--batch", *args],
        env={**os.environ, "GNUPGHOME": str(home)},
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("helm", HOW), *args], capture_output=True, text=True, timeout=120, check=False
    )


def signed_chart(directory: Path, name: str, version: str, key: str, keys: Keys) -> ChartFile:
    """`helm package --sign`: <name>-<version>.tgz and its .prov in `directory`."""
    source = directory.parent / f"src-{name}-{version}" / name
    (source / "templates").mkdir(parents=True, exist_ok=True)
    metadata = {"apiVersion": "v2", "name": name, "version": version, "description": f"The {name} chart"}
    (source / "Chart.yaml").write_text(yaml.safe_dump(metadata))
    (source / "values.yaml").write_text("replicaCount: 1\n")
    (source / "templates" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    done = helm(
        "package", "--sign", "--key", key, "--keyring", str(keys.secret), str(source), "-d", str(directory)
    )
    assert done.returncode == 0, done.stderr
    return ChartFile(directory / f"{name}-{version}.tgz", name, version, metadata)


def ecr_tags(emulator: Emulator, repository: str) -> set[str]:
    ecr = boto3.client("ecr", region_name="eu-west-1", endpoint_url=emulator.url)
    try:
        images = ecr.list_images(repositoryName=repository)["imageIds"]
    except ecr.exceptions.RepositoryNotFoundException:
        return set()
    return {image["imageTag"] for image in images if "imageTag" in image}


def spec(server: ChartServer, keyring: Path) -> str:
    return (
        f"target:\n  registry: {REGISTRY}\n  create_repositories: true\n"
        f"  verify: {{keyring: {keyring}}}\n"
        f"charts:\n  - name: app\n    repo: {server.url}\n    versions: ['1.0.0']\n"
    )


def _good(directory: Path, keys: Keys) -> ChartFile:
    return signed_chart(directory, "app", "1.0.0", SIGNER, keys)


def _expired_key(directory: Path, keys: Keys) -> ChartFile:
    return signed_chart(directory, "app", "1.0.0", EXPIRED, keys)


def _unknown_key(directory: Path, keys: Keys) -> ChartFile:
    return signed_chart(directory, "app", "1.0.0", STRANGER, keys)


def _changed_archive(directory: Path, keys: Keys) -> ChartFile:
    signed = signed_chart(directory, "app", "1.0.0", SIGNER, keys)
    # the same chart and version, other content, after signing: a valid archive the .prov does not cover
    package_chart(directory, "app", "1.0.0", files={"app/values.yaml": "image: evil\n"})
    return signed


def _changed_prov(directory: Path, keys: Keys) -> ChartFile:
    signed = signed_chart(directory, "app", "1.0.0", SIGNER, keys)
    prov = Path(f"{signed.path}.prov")
    prov.write_text(prov.read_text().replace("The app chart", "The app chart, edited"))
    return signed


def _no_prov(directory: Path, keys: Keys) -> ChartFile:
    signed = signed_chart(directory, "app", "1.0.0", SIGNER, keys)
    Path(f"{signed.path}.prov").unlink()
    return signed


CASES = {
    "good signature": (_good, None),
    "key expired since": (_expired_key, None),  # helm 3 accepts it, and so does ecrmirror
    "provenance: signed by an unknown key": (_unknown_key, "which is not in keyring"),
    "provenance: archive changed after signing": (_changed_archive, "but the archive is sha256:"),
    "provenance: .prov changed after signing": (_changed_prov, "the signature does not match the statement"),
    "provenance: no .prov": (_no_prov, "has no provenance file (.prov), and the spec says verify"),
}


@pytest.mark.parametrize("case", CASES)
def test_ecrmirror_and_helm_verify_agree_and_an_unverifiable_version_is_never_pushed(
    case: str, keys: Keys, chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    make, refusal = CASES[case]
    chart = make(chart_server.directory, keys)
    write_index(chart_server.directory, [chart])
    helm_says = helm("verify", "--keyring", str(keys.trusted), str(chart.path))
    write_spec(spec(chart_server, keys.trusted))

    result = run("--sync", "-v", "mirror.yaml")

    verified = result.ret == pytest.ExitCode.OK
    assert verified == (helm_says.returncode == 0), (helm_says.stderr, result.stdout.str())
    if refusal is None:
        result.stdout.fnmatch_lines(["mirror.yaml::app::1.0.0 PUSHED*"])
        assert ecr_tags(emulator, "app") == {"1.0.0"}
    else:
        result.stdout.fnmatch_lines(
            [
                "mirror.yaml::app::1.0.0 UNVERIFIED*",
                f"UNVERIFIED app 1.0.0: {REGISTRY}/app:1.0.0",
                f"*{refusal}*",
            ]
        )
        assert "nothing was pushed" in result.stdout.str()
        assert "Traceback" not in result.stdout.str()
        assert ecr_tags(emulator, "app") == set()


def test_the_audit_verifies_what_ecr_holds_without_downloading_the_chart(
    keys: Keys, chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_index(chart_server.directory, [_good(chart_server.directory, keys)])
    write_spec(spec(chart_server, keys.trusted))
    run("--sync", "mirror.yaml").assert_outcomes(passed=2)
    chart_server.requests.clear()
    emulator.app.requests.clear()

    audited = run("--check-only", "-v", "mirror.yaml")

    audited.assert_outcomes(passed=2)
    assert chart_server.archive_downloads() == []
    blobs = [r for r in emulator.requests if r.kind == "registry" and "/blobs/" in r.path]
    assert len(blobs) == 1  # the .prov layer; the chart layer's digest comes from the manifest

    # when the spec trusts another key instead, the audit fails what ECR holds
    write_spec(spec(chart_server, keys.stranger))
    distrusted = run("--check-only", "-v", "mirror.yaml")

    distrusted.assert_outcomes(passed=1, failed=1)
    distrusted.stdout.fnmatch_lines(["mirror.yaml::app::1.0.0 UNVERIFIED*", "*which is not in keyring*"])
    assert chart_server.archive_downloads() == []


def test_a_chart_entry_can_opt_out_of_the_target_s_verify(
    keys: Keys, chart_server: ChartServer, emulator: Emulator, write_spec, run
) -> None:
    write_index(chart_server.directory, [_no_prov(chart_server.directory, keys)])
    write_spec(spec(chart_server, keys.trusted) + "    verify: false\n")

    run("--sync", "mirror.yaml").assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("keyring", "message"),
    [
        ("missing.gpg", "mirror.yaml:4: keyring */missing.gpg does not exist"),
        (
            "armored.asc",
            "mirror.yaml:4: keyring */armored.asc is ASCII-armored; helm and gpgv read binary keyrings",
        ),
    ],
    ids=["missing keyring", "armored keyring"],
)
def test_a_keyring_helm_could_not_read_is_a_spec_error(
    keyring: str, message: str, chart_server: ChartServer, pytester: pytest.Pytester, write_spec, run
) -> None:
    (pytester.path / "armored.asc").write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n")
    write_spec(spec(chart_server, Path(keyring)))

    result = run("--collect-only", "mirror.yaml")

    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([message, "  fix: *"])


@pytest.mark.parametrize("removed", [None, "ecr:GetDownloadUrlForLayer", "ecr:GetAuthorizationToken"])
def test_the_audit_policy_of_a_verifying_spec_suffices_and_each_read_it_adds_is_needed(
    removed: str | None,
    keys: Keys,
    chart_server: ChartServer,
    emulator: Emulator,
    pytester: pytest.Pytester,
    write_spec,
    run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_index(chart_server.directory, [_good(chart_server.directory, keys)])
    write_spec(spec(chart_server, keys.trusted))
    run("--sync", "mirror.yaml").assert_outcomes(passed=2)  # as the administrator
    become_user(emulator, without_action(printed_policy(run, "audit"), removed), monkeypatch, "auditor")
    with enforcing_iam(emulator):
        audited = run("--check-only", "mirror.yaml")

    if removed is None:
        audited.assert_outcomes(passed=2)
    else:
        assert audited.ret == pytest.ExitCode.TESTS_FAILED
        assert removed in audited.stdout.str()


def test_a_signed_statement_with_an_alias_bomb_is_refused_not_expanded(keys: Keys, tmp_path: Path) -> None:
    # given a statement signed by a trusted key whose files: part is a billion laughs
    bomb = "".join(
        f"{k}: &{k} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
        for p, k in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
    )
    statement = tmp_path / "statement"
    statement.write_text(
        f"apiVersion: v2\nname: app\nversion: 1.0.0\n\n...\n{bomb}files:\n  app-1.0.0.tgz: x\n"
    )
    gpg(keys.home, "--local-user", SIGNER, "--clearsign", "--output", str(tmp_path / "prov"), str(statement))

    # when it is verified, then it is refused at once as listing nothing (helm refuses such YAML too)
    with pytest.raises(Unverified, match=re.escape("the signed .prov lists no sha256 for app-1.0.0.tgz")):
        verify((tmp_path / "prov").read_bytes(), ("app-1.0.0.tgz",), "sha256:00", str(keys.trusted), "app")
