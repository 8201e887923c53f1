"""The OCI distribution-spec conformance suite's content discovery workflow, against the emulator.

A Python port of opencontainers/distribution-spec `conformance/03_discovery_test.go` (the newest
stored version, commit 03b7b0b2faf0f431541a3cab6ad9bb0f49a053f4, whose `last` step checks the page
it asked for), with the content `conformance/setup.go` builds for it (commit b5f09ebe541c) and the
suite's defaults: the setup pushes (no OCI_TAG_LIST), and manifests are deleted before blobs
(OCI_DELETE_MANIFEST_BEFORE_BLOBS unset). Each test is named after one Go step (`g.Specify`) and
makes that step's requests and assertions. The Go steps share the registry's state, in order, while
the `emulator` fixture starts each test empty: so a test first replays the steps before its own,
with their assertions, as the Go suite would have run them.

The registry is the emulator's, over HTTP on 127.0.0.1, with an ECR token. Where ECR differs from
the spec, the port follows ECR and says so (docs/emulator-fidelity.md, rows 11 and 24).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import secrets
import string
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from ecrclient import OCI_INDEX, OCI_MANIFEST, Registry, admin, digest

from ecrmirror.emulator import Emulator

# ECR creates no repository on a push: the namespace the Go suite is given (OCI_NAMESPACE) must exist.
NAME = "conformance/discovery"
# setup.go: pull, push, contentDiscovery and contentManagement are 1 << iota, and numWorkflows the
# next one (16): that many configs and manifests are made; discovery uses numbers 2, 3 and 4.
NUM_WORKFLOWS = 16
TEST_TAG_NAME = "tagtest0"
ARTIFACT_TYPE_FILTER = "artifactType"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
# setup.go's testRefArtifactTypeA/B and testRefArtifactTypeIndex, and testAnnotationKey (our values)
ARTIFACT_TYPE_A = "application/vnd.example.conformance.a"
ARTIFACT_TYPE_B = "application/vnd.example.conformance.b"
ARTIFACT_TYPE_INDEX = "application/vnd.example.conformance.index"
ANNOTATION_KEY = "org.opencontainers.conformance.test"


# -- the content setup.go makes ------------------------------------------------------------------
def go_json(document: Any) -> bytes:
    """As Go's json.MarshalIndent(v, "", "\\t"): what each manifest's digest is taken over."""
    return json.dumps(document, indent="\t").encode()


def descriptor(
    media_type: str, content: bytes, *, data: bytes | None = None, unspecified: bytes | None = None
) -> dict[str, Any]:
    """setup.go's descriptor: `data` is omitted when empty, but `newUnspecifiedField` (which the
    image spec does not have, so that registries are seen to keep unknown fields) is always
    written, as null when unset. Go writes []byte as base64."""
    found: dict[str, Any] = {"mediaType": media_type, "digest": digest(content), "size": len(content)}
    if data is not None:
        found["data"] = base64.b64encode(data).decode()
    found["newUnspecifiedField"] = base64.b64encode(unspecified).decode() if unspecified is not None else None
    return found


def layer_tarball() -> bytes:
    """setup.go's layer: a gzipped tarball of one small text file."""
    text = b"a layer of the content discovery workflow\n"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        member = tarfile.TarInfo("test.txt")
        member.size = len(text)
        tar.addfile(member, io.BytesIO(text))
    return gzip.compress(archive.getvalue(), mtime=0)


def artifact(
    subject: bytes,
    config: dict[str, Any],
    layers: list[dict[str, Any]],
    *,
    artifact_type: str = "",
    annotation: str = "",
) -> bytes:
    """A manifest whose `subject` is the manifest `subject`, in setup.go's field order."""
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        document["artifactType"] = artifact_type
    document |= {"config": config, "layers": layers, "subject": descriptor(OCI_MANIFEST, subject)}
    if annotation:
        document["annotations"] = {ANNOTATION_KEY: annotation}
    return go_json(document)


@dataclass
class SuiteData:
    """What setup.go's init() makes, unique to each run (a random author in each config)."""

    configs: list[bytes]
    manifests: list[bytes]
    layer: bytes
    empty_json: bytes
    ref_blob_a: bytes
    ref_blob_b: bytes
    refs_manifest_a_config: bytes
    refs_manifest_b_config: bytes
    refs_manifest_a_layer: bytes
    refs_manifest_b_layer: bytes
    refs_manifest_c_layer: bytes
    refs_index: bytes
    annotation_values: dict[str, str]
    dummy_digest: str

    @classmethod
    def generate(cls) -> SuiteData:
        alphabet = string.digits + string.ascii_letters + "-"
        configs = [
            go_json(
                {
                    "author": "".join(secrets.choice(alphabet) for _ in range(16)),
                    "architecture": "amd64",
                    "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": []},
                }
            )
            for _ in range(NUM_WORKFLOWS)
        ]
        layer = layer_tarball()
        manifests = [
            go_json(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": descriptor(OCI_CONFIG, config, data=config, unspecified=b"hello world"),
                    "layers": [descriptor(OCI_LAYER, layer)],
                }
            )
            for config in configs
        ]
        empty_json = b"{}"
        empty = descriptor(OCI_EMPTY, empty_json)
        blob_a = b"the first referrer's blob, in the discovery workflow"
        blob_b = b"the second referrer's blob, in the discovery workflow"
        subject = manifests[4]
        a_config = artifact(subject, descriptor(ARTIFACT_TYPE_A, blob_a), [empty], annotation="test config a")
        b_config = artifact(subject, descriptor(ARTIFACT_TYPE_B, blob_b), [empty], annotation="test config b")
        a_layer = artifact(
            subject,
            empty,
            [descriptor(ARTIFACT_TYPE_A, blob_a)],
            artifact_type=ARTIFACT_TYPE_A,
            annotation="test layer a",
        )
        b_layer = artifact(
            subject,
            empty,
            [descriptor(ARTIFACT_TYPE_B, blob_b)],
            artifact_type=ARTIFACT_TYPE_B,
            annotation="test layer b",
        )
        # the same as b_layer, but its subject (manifests[3]) is never pushed
        c_layer = artifact(
            manifests[3], empty, [descriptor(ARTIFACT_TYPE_B, blob_b)], artifact_type=ARTIFACT_TYPE_B
        )
        index = go_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "artifactType": ARTIFACT_TYPE_INDEX,
                "manifests": [descriptor(OCI_MANIFEST, a_config), descriptor(OCI_MANIFEST, a_layer)],
                "subject": descriptor(OCI_MANIFEST, subject),
                "annotations": {ANNOTATION_KEY: "test index"},
            }
        )
        annotated = {
            a_config: "test config a",
            b_config: "test config b",
            a_layer: "test layer a",
            b_layer: "test layer b",
            index: "test index",
        }
        return cls(
            configs=configs,
            manifests=manifests,
            layer=layer,
            empty_json=empty_json,
            ref_blob_a=blob_a,
            ref_blob_b=blob_b,
            refs_manifest_a_config=a_config,
            refs_manifest_b_config=b_config,
            refs_manifest_a_layer=a_layer,
            refs_manifest_b_layer=b_layer,
            refs_manifest_c_layer=c_layer,
            refs_index=index,
            annotation_values={digest(content): value for content, value in annotated.items()},
            dummy_digest=digest(b"hello world"),
        )


# -- the workflow ----------------------------------------------------------------------------------
def succeeded(response: requests.Response) -> bool:
    return 200 <= response.status_code < 300


def deleted_or_not_there(response: requests.Response) -> bool:
    """What the teardown accepts: deleted, already gone, or deletion not offered."""
    return succeeded(response) or response.status_code in (404, 405)


def tag_list(response: requests.Response) -> list[str]:
    """setup.go's getTagList: the tags of a tag list answer, [] if it is not one."""
    try:
        return list(response.json()["tags"])
    except (ValueError, KeyError, TypeError):
        return []


@dataclass
class ContentDiscovery:
    """test03ContentDiscovery's steps, one method each, and the state they share (numTags, tagList)."""

    registry: Registry
    data: SuiteData
    num_tags: int = 4
    tags: list[str] = field(default_factory=list)

    # requests as reggie makes them, on <name>
    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.registry.request(method, path.replace("<name>", NAME), **kwargs)

    def push_blob(self, content: bytes) -> requests.Response:
        started = self.request("POST", "/v2/<name>/blobs/uploads/")
        location = urlsplit(started.headers.get("Location", ""))  # reggie's GetRelativeLocation
        return self.request(
            "PUT",
            location.path + (f"?{location.query}" if location.query else ""),
            params={"digest": digest(content)},
            headers={"Content-Type": "application/octet-stream"},
            data=content,
        )

    def push_manifest(
        self, reference: str, content: bytes, media_type: str = OCI_MANIFEST
    ) -> requests.Response:
        return self.request(
            "PUT", f"/v2/<name>/manifests/{reference}", headers={"Content-Type": media_type}, data=content
        )

    def referrers(self, subject: str, **params: str) -> requests.Response:
        return self.request("GET", f"/v2/<name>/referrers/{subject}", params=params)

    def push_referrer(self, content: bytes, subject: bytes, media_type: str = OCI_MANIFEST) -> None:
        pushed = self.push_manifest(digest(content), content, media_type)
        assert succeeded(pushed), pushed.text
        assert pushed.headers.get("OCI-Subject") == digest(subject)

    # -- Setup --
    def populate_registry_with_test_blob(self) -> None:
        assert succeeded(self.push_blob(self.data.configs[2]))

    def populate_registry_with_test_layer(self) -> None:
        assert succeeded(self.push_blob(self.data.layer))

    def populate_registry_with_test_tags(self) -> None:
        for i in range(self.num_tags):
            tag = f"test{i}"
            self.tags.append(tag)
            pushed = self.push_manifest(tag, self.data.manifests[2])
            assert succeeded(pushed), pushed.text
        self.tags = tag_list(self.request("GET", "/v2/<name>/tags/list"))

    def populate_registry_with_test_tags_no_push(self) -> None:
        """RunOnlyIfNot(runContentDiscoverySetup): for a registry the suite may not push to, whose
        tags OCI_TAG_LIST names. The setup above pushes, so the Go suite skips this step."""

    def references_setup(self) -> None:
        data = self.data
        assert digest(data.empty_json) == (
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        )
        assert succeeded(self.push_blob(data.empty_json))
        assert succeeded(self.push_blob(data.ref_blob_a))  # before the subject is pushed
        subject = data.manifests[4]
        self.push_referrer(data.refs_manifest_a_config, subject)  # config.mediaType = artifactType
        self.push_referrer(data.refs_manifest_a_layer, subject)  # artifactType, an empty config
        self.push_referrer(data.refs_index, subject, OCI_INDEX)
        assert succeeded(self.push_blob(data.configs[4]))
        assert succeeded(self.push_blob(data.layer))
        tagged = self.push_manifest(TEST_TAG_NAME, subject)  # the subject itself, at last
        assert succeeded(tagged), tagged.text
        assert succeeded(self.push_blob(data.ref_blob_b))  # after the subject is pushed
        self.push_referrer(data.refs_manifest_b_config, subject)
        self.push_referrer(data.refs_manifest_b_layer, subject)
        self.push_referrer(data.refs_manifest_c_layer, data.manifests[3])  # a subject never pushed

    # -- Test content discovery endpoints (listing tags) --
    def get_request_to_list_tags_should_yield_200_response(self) -> None:
        # ECR pages a tag list at 100 tags when `n` is not given (row 24): these 5 are one page.
        listed = self.request("GET", "/v2/<name>/tags/list")
        assert listed.status_code == 200
        self.tags = tag_list(listed)
        self.num_tags = len(self.tags)

    def get_number_of_tags_should_be_limitable_by_n_query_parameter(self) -> None:
        # ECR takes `n` up to 1,000 (row 24); the workflow asks for 2.
        results = self.num_tags // 2
        listed = self.request("GET", "/v2/<name>/tags/list", params={"n": results})
        assert listed.status_code == 200
        self.tags = tag_list(listed)
        assert len(self.tags) == results

    def get_start_of_tag_is_set_by_last_query_parameter(self) -> None:
        results = self.num_tags // 2
        first = self.request("GET", "/v2/<name>/tags/list", params={"n": results})
        assert first.status_code == 200
        self.tags = tag_list(first)
        last = self.tags[results - 1]
        following = self.request("GET", "/v2/<name>/tags/list", params={"n": results, "last": last})
        assert following.status_code == 200
        self.tags = tag_list(following)
        assert len(self.tags) <= results
        assert last not in self.tags

    # -- Test content discovery endpoints (listing references) --
    def listed_referrers(self, response: requests.Response) -> list[dict[str, Any]]:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == OCI_INDEX
        return list(response.json()["manifests"])

    def assert_annotated(self, manifests: list[dict[str, Any]]) -> None:
        for found in manifests:
            assert len(found["annotations"]) == 1
            assert found["annotations"][ANNOTATION_KEY] == self.data.annotation_values[found["digest"]]

    def get_request_to_nonexistent_blob_should_result_in_empty_200_response(self) -> None:
        assert self.listed_referrers(self.referrers(self.data.dummy_digest)) == []

    def get_request_to_existing_blob_should_yield_200(self) -> None:
        manifests = self.listed_referrers(self.referrers(digest(self.data.manifests[4])))
        assert len(manifests) == 5
        assert manifests[0]["digest"] != manifests[1]["digest"]
        self.assert_annotated(manifests)

    def get_request_to_existing_blob_with_filter_should_yield_200(self) -> None:
        answer = self.referrers(digest(self.data.manifests[4]), artifactType=ARTIFACT_TYPE_A)
        manifests = self.listed_referrers(answer)
        # The spec lets a registry ignore the filter (the Go step then expects all 5 and warns);
        # the emulator applies it, as the spec asks of those that do, so this port insists on it.
        assert answer.headers.get("OCI-Filters-Applied"), "the emulator should apply the artifactType filter"
        if answer.headers.get("OCI-Filters-Applied"):
            assert len(manifests) == 2
            assert answer.headers["OCI-Filters-Applied"] == ARTIFACT_TYPE_FILTER
        else:
            assert len(manifests) == 5
        self.assert_annotated(manifests)

    def get_request_to_missing_manifest_should_yield_200(self) -> None:
        manifests = self.listed_referrers(self.referrers(digest(self.data.manifests[3])))
        assert [m["digest"] for m in manifests] == [digest(self.data.refs_manifest_c_layer)]

    # -- Teardown (deleteManifestBeforeBlobs, the suite's default) --
    def delete_created_manifest_and_associated_tags(self) -> None:
        data = self.data
        references = [
            data.refs_index,
            data.manifests[2],
            data.manifests[4],
            data.refs_manifest_a_config,
            data.refs_manifest_a_layer,
            data.refs_manifest_b_config,
            data.refs_manifest_b_layer,
            data.refs_manifest_c_layer,
        ]
        for content in references:
            assert deleted_or_not_there(self.request("DELETE", f"/v2/<name>/manifests/{digest(content)}"))

    # ECR deletes images, not layers: it serves no blob DELETE, and the emulator answers 405,
    # which the Go steps accept as "deletion not offered".
    def delete_config_blob_created_in_tests(self) -> None:
        assert deleted_or_not_there(
            self.request("DELETE", f"/v2/<name>/blobs/{digest(self.data.configs[2])}")
        )

    def delete_layer_blob_created_in_setup(self) -> None:
        assert deleted_or_not_there(self.request("DELETE", f"/v2/<name>/blobs/{digest(self.data.layer)}"))

    def references_teardown(self) -> None:
        data = self.data
        for content in (  # the manifests first, as deleteManifestBeforeBlobs says
            data.refs_index,
            data.refs_manifest_a_config,
            data.refs_manifest_a_layer,
            data.manifests[4],
            data.refs_manifest_b_config,
            data.refs_manifest_b_layer,
        ):
            assert deleted_or_not_there(self.request("DELETE", f"/v2/<name>/manifests/{digest(content)}"))
        for blob in (data.configs[4], data.ref_blob_a, data.ref_blob_b, data.empty_json):
            assert deleted_or_not_there(self.request("DELETE", f"/v2/<name>/blobs/{digest(blob)}"))


Step = Callable[[ContentDiscovery], None]
# The Go suite's order: Setup, listing tags, listing references, Teardown.
STEPS: list[Step] = [
    ContentDiscovery.populate_registry_with_test_blob,
    ContentDiscovery.populate_registry_with_test_layer,
    ContentDiscovery.populate_registry_with_test_tags,
    ContentDiscovery.populate_registry_with_test_tags_no_push,
    ContentDiscovery.references_setup,
    ContentDiscovery.get_request_to_list_tags_should_yield_200_response,
    ContentDiscovery.get_number_of_tags_should_be_limitable_by_n_query_parameter,
    ContentDiscovery.get_start_of_tag_is_set_by_last_query_parameter,
    ContentDiscovery.get_request_to_nonexistent_blob_should_result_in_empty_200_response,
    ContentDiscovery.get_request_to_existing_blob_should_yield_200,
    ContentDiscovery.get_request_to_existing_blob_with_filter_should_yield_200,
    ContentDiscovery.get_request_to_missing_manifest_should_yield_200,
    ContentDiscovery.delete_created_manifest_and_associated_tags,
    ContentDiscovery.delete_config_blob_created_in_tests,
    ContentDiscovery.delete_layer_blob_created_in_setup,
    ContentDiscovery.references_teardown,
]


Through = Callable[[Step], ContentDiscovery]


@pytest.fixture
def discovery(emulator: Emulator) -> Through:
    """Runs the workflow through a step: every step before it, then the step itself."""
    admin("ecr", emulator).create_repository(repositoryName=NAME)
    workflow = ContentDiscovery(Registry(emulator), SuiteData.generate())

    def through(step: Step) -> ContentDiscovery:
        for each in STEPS[: STEPS.index(step) + 1]:
            each(workflow)
        return workflow

    return through


# -- Setup ------------------------------------------------------------------------------------------
def test_populate_registry_with_test_blob(discovery: Through) -> None:
    discovery(ContentDiscovery.populate_registry_with_test_blob)


def test_populate_registry_with_test_layer(discovery: Through) -> None:
    discovery(ContentDiscovery.populate_registry_with_test_layer)


def test_populate_registry_with_test_tags(discovery: Through) -> None:
    workflow = discovery(ContentDiscovery.populate_registry_with_test_tags)
    assert workflow.tags == ["test0", "test1", "test2", "test3"]


# "Populate registry with test tags (no push)" has no test: RunOnlyIfNot(runContentDiscoverySetup)
# makes the Go suite skip it whenever the setup pushes, as here (no OCI_TAG_LIST).


def test_references_setup(discovery: Through) -> None:
    discovery(ContentDiscovery.references_setup)


# -- Test content discovery endpoints (listing tags) --------------------------------------------
def test_get_request_to_list_tags_should_yield_200_response(discovery: Through) -> None:
    workflow = discovery(ContentDiscovery.get_request_to_list_tags_should_yield_200_response)
    assert workflow.tags == [TEST_TAG_NAME, "test0", "test1", "test2", "test3"]


def test_get_number_of_tags_should_be_limitable_by_n_query_parameter(discovery: Through) -> None:
    discovery(ContentDiscovery.get_number_of_tags_should_be_limitable_by_n_query_parameter)


def test_get_start_of_tag_is_set_by_last_query_parameter(discovery: Through) -> None:
    workflow = discovery(ContentDiscovery.get_start_of_tag_is_set_by_last_query_parameter)
    assert workflow.tags == ["test1", "test2"]


# -- Test content discovery endpoints (listing references) --------------------------------------
def test_get_request_to_nonexistent_blob_should_result_in_empty_200_response(discovery: Through) -> None:
    discovery(ContentDiscovery.get_request_to_nonexistent_blob_should_result_in_empty_200_response)


def test_get_request_to_existing_blob_should_yield_200(discovery: Through) -> None:
    discovery(ContentDiscovery.get_request_to_existing_blob_should_yield_200)


def test_get_request_to_existing_blob_with_filter_should_yield_200(discovery: Through) -> None:
    discovery(ContentDiscovery.get_request_to_existing_blob_with_filter_should_yield_200)


def test_get_request_to_missing_manifest_should_yield_200(discovery: Through) -> None:
    discovery(ContentDiscovery.get_request_to_missing_manifest_should_yield_200)


# -- Teardown -------------------------------------------------------------------------------------
def test_delete_created_manifest_and_associated_tags(discovery: Through) -> None:
    workflow = discovery(ContentDiscovery.delete_created_manifest_and_associated_tags)
    assert tag_list(workflow.request("GET", "/v2/<name>/tags/list")) == []


def test_delete_config_blob_created_in_tests(discovery: Through) -> None:
    discovery(ContentDiscovery.delete_config_blob_created_in_tests)


def test_delete_layer_blob_created_in_setup(discovery: Through) -> None:
    discovery(ContentDiscovery.delete_layer_blob_created_in_setup)


def test_references_teardown(discovery: Through) -> None:
    workflow = discovery(ContentDiscovery.references_teardown)
    assert workflow.referrers(digest(workflow.data.manifests[4])).json()["manifests"] == []
