"""Helm provenance checked as `helm verify --keyring` checks it: the .prov is an OpenPGP clear-signed
statement by a key of the keyring, and the statement's `files:` gives the archive's sha256.

The OpenPGP part is GnuPG's `gpgv`, a maintained verifier made for exactly this (a keyring, no
trust database, no agent), run in a throwaway home directory. ecrmirror reads only the text gpgv
has verified (`--output`), never the file around it. As helm 3 does, a good signature by a key
that has since expired is accepted; the result says so.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from ecrmirror.errors import Unverified
from ecrmirror.helmyaml import YamlRefused, load_helm_yaml

GPGV_TIMEOUT = 60  # seconds: gpgv reads one small file


@dataclass(frozen=True)
class Verified:
    fingerprint: str  # the signing key's primary fingerprint
    signer: str  # its user id, as gpgv reports it
    expired: bool  # the key has expired since (helm accepts such signatures too)


def verify(provenance: bytes, names: tuple[str, ...], digest: str, keyring: str, what: str) -> Verified:
    """Check `provenance` for the archive of sha256 `digest`, listed in its statement under one of
    `names`; Unverified, saying why, when helm would refuse it. `what` names the chart version."""
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise Unverified(
            f"{what}: verify needs GnuPG's gpgv to check the .prov signature, and it is not installed "
            "(Debian: apt-get install gpgv)"
        )
    with tempfile.TemporaryDirectory(prefix="ecrmirror-gpgv-") as home:
        signed, statement = Path(home) / "prov", Path(home) / "statement"
        signed.write_bytes(provenance)
        command = [gpgv, "--homedir", home, "--keyring", keyring, "--status-fd", "1"]
        done = subprocess.run(
            [*command, "--output", str(statement), str(signed)],
            capture_output=True,
            timeout=GPGV_TIMEOUT,
            check=False,
        )
        status = _status(done.stdout.decode("utf-8", "replace"))
        if done.returncode != 0 or "VALIDSIG" not in status:
            raise Unverified(
                f"{what}: the .prov does not verify: {_why(status, keyring)}; nothing was pushed"
            )
        text = statement.read_text(encoding="utf-8", errors="replace")
    files = _files(text)
    listed = next((files[name] for name in names if name in files), None)
    if listed is None:
        raise Unverified(
            f"{what}: the signed .prov lists no sha256 for {' or '.join(names)} (it lists "
            f"{', '.join(sorted(files)) or 'no file'}); nothing was pushed"
        )
    if listed != digest:
        raise Unverified(
            f"{what}: the signed .prov gives {listed} for the archive, but the archive is {digest}; "
            "nothing was pushed"
        )
    valid = status["VALIDSIG"]
    fingerprint = valid[-1] if len(valid) >= 10 else valid[0]  # the primary key's, when a subkey signed
    signer = " ".join(status.get("GOODSIG", status.get("EXPKEYSIG", ["", ""]))[1:])
    return Verified(fingerprint=fingerprint, signer=signer, expired="EXPKEYSIG" in status)


def _status(output: str) -> dict[str, list[str]]:
    """gpgv's machine-readable status lines (`[GNUPG:] KEYWORD ARGS`), the last of each keyword."""
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        if line.startswith("[GNUPG:] "):
            keyword, *args = line[len("[GNUPG:] ") :].split(" ")
            found[keyword] = args
    return found


def _why(status: dict[str, list[str]], keyring: str) -> str:
    if "BADSIG" in status:
        return "the signature does not match the statement (the .prov was changed after signing)"
    if "NO_PUBKEY" in status:
        return f"it is signed by key {status['NO_PUBKEY'][0]}, which is not in keyring {keyring}"
    if "REVKEYSIG" in status:
        return "it is signed by a revoked key"
    if "ERRSIG" in status:
        return "gpgv cannot check its signature"
    if "NODATA" in status:
        return "it holds no OpenPGP signature"
    return "gpgv reports no valid signature"


def _files(statement: str) -> dict[str, str]:
    """The `files:` of a provenance statement: as helm splits it, the chart's metadata, a line
    `...`, then a YAML mapping with `files`."""
    _, separator, rest = statement.replace("\r\n", "\n").partition("\n...\n")
    if not separator:
        return {}
    try:  # as helm reads YAML: an alias bomb or deep nesting is refused, not expanded or recursed into
        document = load_helm_yaml(rest.encode())
    except (yaml.YAMLError, YamlRefused):
        return {}
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, dict):
        return {}
    return {str(name): str(value) for name, value in files.items()}
