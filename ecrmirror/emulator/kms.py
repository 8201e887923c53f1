"""KMS keys as ECR needs them: a repository's key must exist, in the repository's own region.

Keys are those made through the emulator's KMS API (moto's KMS), plus the keys an offline
rehearsal takes as given (`assume`): the emulator cannot see the keys of the user's account, so
`--offline` names the keys its specs declare, and only their region is then checked.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterable

from werkzeug.wrappers import Response

from ecrmirror.emulator.answers import Refused, api_error
from ecrmirror.emulator.iam import Caller, Denied, Iam

ASSUME_PATH = "/_emulator/kms/keys"
SIGNING_KEYS_PATH = "/_emulator/kms/signing-keys"
# Actions on a key that IAM authorizes on the key's ARN (what ecrmirror and cosign use)
KEY_ACTIONS = ("Sign", "Verify", "GetPublicKey", "DescribeKey", "CreateGrant", "Encrypt", "Decrypt")

_ARN = re.compile(
    r"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<kind>key|alias)/(?P<id>.+)$"
)


class Kms:
    def __init__(self) -> None:
        self.assumed: set[str] = set()

    def authorize(
        self, iam: Iam, caller: Caller, account: str, region: str, action: str, body: bytes
    ) -> Response | None:
        """With IAM enforced, a key's use needs kms:<Action> on the key's ARN; a policy may name the
        key by its alias through kms:ResourceAliases. The refusal as KMS answers it, else None."""
        if not iam.enforce or action not in KEY_ACTIONS:
            return None
        from moto.kms.models import kms_backends

        try:
            key_id = str(json.loads(body or b"{}").get("KeyId", ""))
            key = kms_backends[account][region].describe_key(key_id)
        except Exception:  # no such key, or a malformed request: moto answers it as KMS does
            return None
        try:
            iam.authorize(caller, [(f"kms:{action}", key.arn)], {"kms:ResourceAliases": sorted(key.aliases)})
        except Denied as denied:
            return api_error("AccessDeniedException", str(denied))
        return None

    def assume(self, arn: str) -> None:
        self.assumed.add(arn)

    def reset(self) -> None:
        self.assumed.clear()

    def require(self, key: str, account: str, region: str) -> None:
        """Refuse unless `key` (an ARN, alias ARN, key id or alias) names a key of `region`."""
        from moto.kms.models import kms_backends

        match = _ARN.match(key)
        key_region = match["region"] if match else region
        key_account = match["account"] if match else account
        if key_region != region:
            raise Refused(
                "KmsException",
                f"The KMS key {key} is in {key_region}: a repository in {region} needs a key of {region}",
            )
        if key in self.assumed:
            return
        backend = kms_backends[key_account][key_region]
        identifier = key if not match else key if match["kind"] == "alias" else match["id"]
        if match and match["kind"] == "alias":
            identifier = "alias/" + match["id"]
        try:
            backend.describe_key(identifier)
        except Exception:  # moto raises its own NotFoundException (and others for malformed ids)
            raise Refused("KmsException", f"The KMS key {key} does not exist in {key_region}") from None


def declare_keys(emulator_url: str, keys: Iterable[str]) -> None:
    """Tell a running emulator (maybe another process's: an xdist controller's) to take `keys` as existing."""
    body = json.dumps({"keys": sorted(set(keys))}).encode()
    request = urllib.request.Request(
        emulator_url + ASSUME_PATH, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def ensure_signing_key(account: str, region: str, alias: str) -> None:
    """An ECC_NIST_P256 signing key behind `alias` in moto's KMS, made if missing: an offline
    rehearsal of `sign:` signs with a key of its own, as the user's account has one."""
    from moto.kms.models import kms_backends

    backend = kms_backends[account][region]
    if backend.alias_exists(alias):
        return
    key = backend.create_key(
        policy=None,
        key_usage="SIGN_VERIFY",
        key_spec="ECC_NIST_P256",
        description=f"ecrmirror emulator: signing key for {alias}",
        tags=None,
    )
    backend.create_alias(key.id, alias)


def declare_signing_keys(emulator_url: str, keys: Iterable[tuple[str, str, str]]) -> None:
    """Ask a running emulator for the (account, region, alias) signing keys of an offline run."""
    body = json.dumps({"keys": sorted(set(keys))}).encode()
    request = urllib.request.Request(
        emulator_url + SIGNING_KEYS_PATH,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30):
        pass
