"""What ECR holds, asked in batches: the tags of a repository, the settings of repositories, replication.

The run says which tags and repositories it will ask about before its first item runs (`expect_*`),
so that a repository costs one BatchGetImage per 100 of its tags and a registry one
DescribeRepositories per 100 names, however many items ask. Under pytest-xdist the first worker to
ask shares its answer with the others (share.once_per_run).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ecrmirror.ecr import ACTIVE, IMAGE_MANIFESTS, Ecr, RemoteImage, RepositoryState
from ecrmirror.once import KeyedLocks
from ecrmirror.share import once_per_run
from ecrmirror.spec import Registry

Images = dict[str, RemoteImage]  # tag -> what it holds


@dataclass
class Listing:
    """Every image of one image repository, from one DescribeImages listing (any tag status, any
    storage class): what each tag names, and every manifest it holds, tagged or not. An image
    item's questions (its tag, its index's children, its cosign tags) are all answered from it."""

    tags: dict[str, tuple[str, str]] = field(default_factory=dict)  # tag -> (digest, imageStatus)
    digests: set[str] = field(default_factory=set)

    def holds(self, digests: Iterable[str]) -> set[str]:
        return set(digests) & self.digests

    def tagged(self, tags: Iterable[str]) -> dict[str, RemoteImage]:
        return {
            tag: RemoteImage(tag=tag, manifest_digest=digest, chart_digest=None, status=status)
            for tag in tags
            if tag in self.tags
            for digest, status in [self.tags[tag]]
        }


class Inventory:
    """One process's view of ECR: each question asked once, for every item that needs its answer."""

    def __init__(self, ecr: Callable[[Registry], Ecr], shared: Path | None = None) -> None:
        self._ecr = ecr
        self._shared = shared
        self._expected_tags: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._manifests_wanted: set[tuple[str, str]] = set()  # repositories `images` reads manifests of
        self._expected_repositories: dict[str, set[str]] = defaultdict(set)
        self._images: dict[tuple[str, str], Images | None] = {}
        self._manifests: dict[tuple[str, str], dict[str, tuple[str, str]] | None] = {}
        self._digests: dict[tuple[str, str], Images | None] = {}
        self._listings: dict[tuple[str, str], Listing | None] = {}
        self._repositories: dict[tuple[str, str], RepositoryState | None] = {}
        self._changed: set[tuple[str, str]] = set()  # to describe again, not from the share
        self._created: set[tuple[str, str]] = set()  # repositories this process created
        self._replication_statuses: dict[tuple[str, str, str], list[dict[str, Any]] | None] = {}
        # Jobs (threads) asking the same question at once: the first asks, the others wait for it.
        self._locks = KeyedLocks()

    def expect_tags(
        self, registry: Registry, repository: str, tags: Iterable[str], *, manifests: bool = True
    ) -> None:
        """`tags` will be asked about; with `manifests`, what their manifests list too (a Helm
        repository's version is compared by its chart layer). Without, by digest alone (an OCI
        source's copy is its manifest): then `images` reads no manifest, nothing is pulled."""
        key = (registry.host, repository)
        self._expected_tags[key].update(tags)
        if manifests:
            self._manifests_wanted.add(key)

    def expected_tags(self, registry: Registry, repository: str) -> set[str]:
        """The tags this run's items will ask `repository` about: the versions it declares there."""
        return set(self._expected_tags.get((registry.host, repository), ()))

    def expect_repositories(self, registry: Registry, names: Iterable[str]) -> None:
        self._expected_repositories[registry.host].update(names)

    # -- images ---------------------------------------------------------------------------------------
    def images(self, registry: Registry, repository: str, tag: str, *, fresh: bool = False) -> Images | None:
        """The run's tags that `repository` holds (asked together with `tag`); None if no repository.

        `fresh` asks ECR again, this process alone: after a conflicting push, say.
        """
        key = (registry.host, repository)
        if key in self._images and not fresh:
            return self._images[key]
        with self._locks(("images", key)):
            if key not in self._images and self.created_here(registry, repository) and not fresh:
                self._images[key] = {}  # created by this process: it holds what add_image says
            elif key not in self._images or fresh:
                self._fetch_images(registry, repository, tag, fresh)
            return self._images[key]

    def _fetch_images(self, registry: Registry, repository: str, tag: str, fresh: bool) -> None:
        key = (registry.host, repository)
        tags = self._expected_tags[key] | {tag}

        manifests = key in self._manifests_wanted or not self._expected_tags[key]

        def fetch() -> list[dict[str, Any]] | None:
            if manifests:
                found = self._ecr(registry).images(repository, tags)
                return None if found is None else [asdict(image) for image in found.values()]
            held = self._ecr(registry).tagged(repository)
            if held is None:
                return None
            return [
                asdict(RemoteImage(tag=t, manifest_digest=d, chart_digest=None, status=status))
                for t, (d, status) in held.items()
                if t in tags
            ]

        kind = "images" if manifests else "image digests"
        question = f"{kind} {registry.host}/{repository} {' '.join(sorted(tags))}"
        answer = fetch() if fresh else once_per_run(self._shared, question, fetch)
        self._images[key] = (
            None if answer is None else {image["tag"]: RemoteImage(**image) for image in answer}
        )

    def digests(self, registry: Registry, repository: str, tag: str) -> Images | None:
        """What each tag of `repository` names, without reading a manifest: for a replica, whose
        copy is judged by its digest alone (DescribeImages, never a pull). None if no repository."""
        key = (registry.host, repository)
        with self._locks(("digests", key)):
            if key not in self._digests:
                question = f"digests {registry.host}/{repository}"
                answer = once_per_run(self._shared, question, lambda: self._ecr(registry).tagged(repository))
                self._digests[key] = (
                    None
                    if answer is None
                    else {
                        t: RemoteImage(tag=t, manifest_digest=d, chart_digest=None, status=status)
                        for t, (d, status) in answer.items()
                    }
                )
            return self._digests[key]

    def listing(self, registry: Registry, repository: str) -> Listing | None:
        """Every image `repository` holds (`Listing`), listed once per run; None if there is no
        repository. A repository this process created holds only what it pushed: not listed."""
        key = (registry.host, repository)
        with self._locks(("listing", key)):
            if key not in self._listings:
                if self.created_here(registry, repository):
                    self._listings[key] = Listing()
                else:
                    question = f"listing {registry.host}/{repository}"
                    answer = once_per_run(
                        self._shared, question, lambda: _listed(self._ecr(registry), repository)
                    )
                    self._listings[key] = (
                        None
                        if answer is None
                        else Listing(
                            {t: (d, s) for t, (d, s) in answer["tags"].items()}, set(answer["digests"])
                        )
                    )
            return self._listings[key]

    def pushed(self, registry: Registry, repository: str, digest: str, tag: str | None = None) -> None:
        """This process put manifest `digest` (as `tag`) into `repository`: its listing holds it."""
        key = (registry.host, repository)
        with self._locks(("listing", key)):
            listing = self._listings.get(key)
            if listing is None:
                return  # not listed yet: the listing, when asked for, will show it
            listing.digests.add(digest)
            if tag is not None:
                listing.tags[tag] = (digest, ACTIVE)

    def manifests(self, registry: Registry, repository: str, tag: str) -> dict[str, tuple[str, str]] | None:
        """The run's tags that image repository `repository` holds, with what each names: tag ->
        (digest, manifest text), asked together with `tag`; None if there is no repository. The
        tags come from the repository's one listing, the texts from the manifest store or, for
        those never seen, one BatchGetImage per 100."""
        key = (registry.host, repository)
        with self._locks(("manifests", key)):
            if key not in self._manifests:
                held = self.listing(registry, repository)
                if held is None:
                    self._manifests[key] = None
                    return None
                wanted = {t: held.tags[t] for t in self._expected_tags[key] | {tag} if t in held.tags}
                pairs = sorted(set(wanted.values()))
                if not pairs:
                    self._manifests[key] = {}
                    return {}
                question = f"manifests {registry.host}/{repository} {' '.join(d for d, _ in pairs)}"
                texts = once_per_run(
                    self._shared,
                    question,
                    lambda: self._ecr(registry).manifest_texts(repository, pairs, IMAGE_MANIFESTS),
                )
                self._manifests[key] = {t: (d, texts.get(d, "")) for t, (d, _) in wanted.items()}
            return self._manifests[key]

    def add_manifest(self, registry: Registry, repository: str, tag: str, digest: str, text: str) -> None:
        """This process copied an image as `tag`: items after it find it without asking."""
        key = (registry.host, repository)
        with self._locks(("manifests", key)):
            self._manifests[key] = {**(self._manifests.get(key) or {}), tag: (digest, text)}

    def add_image(self, registry: Registry, repository: str, image: RemoteImage) -> None:
        """This process pushed `image`: items after it find it without asking."""
        key = (registry.host, repository)
        with self._locks(("images", key)):
            images = self._images.get(key) or {}
            images[image.tag] = image
            self._images[key] = images
        with self._locks(("digests", key)):
            if key in self._digests:
                self._digests[key] = {**(self._digests[key] or {}), image.tag: image}

    # -- repositories ---------------------------------------------------------------------------------
    def described(self, registry: Registry, name: str) -> bool:
        """Whether `repository` would answer for `name` without asking ECR."""
        return (registry.host, name) in self._repositories

    def repository(self, registry: Registry, name: str) -> RepositoryState | None:
        """`name`'s settings, described with every expected repository not yet known; None if missing."""
        key = (registry.host, name)
        if key in self._repositories:
            return self._repositories[key]
        with self._locks(("repositories", registry.host)):  # one batch describes many
            if key not in self._repositories:
                self._describe(registry, name)
            return self._repositories[key]

    def _describe(self, registry: Registry, name: str) -> None:
        key = (registry.host, name)
        names = self._expected_repositories[registry.host] | {name}
        unknown = {n for n in names if (registry.host, n) not in self._repositories}
        changed = key in self._changed
        if changed:  # the run's shared answer is from before the change: ask for this one alone
            unknown = {name}
            self._changed.discard(key)

        def fetch() -> dict[str, dict[str, Any]]:
            found = self._ecr(registry).repositories(unknown)
            return {each: asdict(described) for each, described in found.items()}

        question = f"repositories {registry.host} {' '.join(sorted(unknown))}"
        answer = fetch() if changed else once_per_run(self._shared, question, fetch)
        for each in unknown:
            state = answer.get(each)
            self._repositories[(registry.host, each)] = (
                None
                if state is None
                else RepositoryState(
                    **{**state, "mutability_exclusions": tuple(state["mutability_exclusions"])}
                )
            )

    def created(self, registry: Registry, name: str) -> None:
        """This process created `name`: it holds no blob this run did not upload."""
        self._created.add((registry.host, name))

    def created_here(self, registry: Registry, name: str) -> bool:
        return (registry.host, name) in self._created

    def repository_changed(self, registry: Registry, name: str) -> None:
        """`name` was created or changed (by us or a concurrent writer): describe it afresh.

        A repository that was missing when its images were asked for holds none now.
        """
        key = (registry.host, name)
        self._repositories.pop(key, None)
        self._changed.add(key)
        if key in self._images and self._images[key] is None:
            self._images[key] = {}
        if key in self._listings and self._listings[key] is None:
            self._listings[key] = Listing()
        if key in self._manifests and self._manifests[key] is None:
            self._manifests[key] = {}

    # -- replication ----------------------------------------------------------------------------------
    def replication_statuses(self, registry: Registry, repository: str, tag: str) -> list[dict[str, Any]]:
        """ECR's per-destination replication records of one image (none when the image is not there)."""
        key = (registry.host, repository, tag)
        with self._locks(("replication", key)):
            if key not in self._replication_statuses:
                self._replication_statuses[key] = self._ecr(registry).replication_statuses(repository, tag)
        return self._replication_statuses[key] or []


def _listed(ecr: Ecr, repository: str) -> dict[str, Any] | None:
    """A Listing as JSON (shared between xdist workers): DescribeImages, 1,000 images a call."""
    pages = ecr.pages(
        "describe_images",
        "RepositoryNotFoundException",
        registryId=ecr.registry.account,
        repositoryName=repository,
        filter={"tagStatus": "ANY", "imageStatus": "ANY"},
        maxResults=1000,
    )
    if pages is None:
        return None
    details = [detail for page in pages for detail in page.get("imageDetails", [])]
    return {
        "tags": {
            str(tag): (str(d["imageDigest"]), str(d.get("imageStatus") or ACTIVE))
            for d in details
            for tag in d.get("imageTags") or []
        },
        "digests": sorted({str(d["imageDigest"]) for d in details}),
    }
