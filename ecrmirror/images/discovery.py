"""Which images a chart version runs: its image annotations (and its subcharts'), its render by the
real `helm template`, and the spec's own list; each image remembers where it was found.

Each way misses what another finds (docs: annotations are often stale, a render misses images an
operator starts and components the values turn off), so the mirror takes their union, and says
where they disagree.
"""

from __future__ import annotations

import fnmatch
import os
import selectors
import shutil
import subprocess
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ecrmirror.chart import MAX_FILE_SIZE, read_chart_metadata
from ecrmirror.errors import InvalidChart, RenderFailed
from ecrmirror.helmyaml import YamlRefused, load_helm_yaml
from ecrmirror.images.references import BadReference, ImageReference, parse
from ecrmirror.images.relocation import ValuePath, value_images
from ecrmirror.spec import ImageSettings, Render

try:  # libyaml is much faster; the pure-Python loader gives the same values.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

# The annotations that list a chart's images, each a YAML list of {name, image}: Artifact Hub's,
# Bitnami's (read by their distribution tooling) and HIP-0015's draft.
IMAGE_ANNOTATIONS = ("artifacthub.io/images", "images", "helm.sh/images")
# Subcharts packaged inside subcharts: helm has no limit, a hostile archive could nest forever.
MAX_SUBCHART_DEPTH = 5
# What `helm template` may print: a render of kube-prometheus-stack is about 2 MB.
MAX_RENDER_OUTPUT = 64 * 1024 * 1024
RENDER_TIMEOUT = 120.0  # seconds: sprig's `until` lets a template loop for as long as it likes


@dataclass(frozen=True)
class Found:
    image: ImageReference
    chart: str  # "app 1.0.0"
    how: str  # "annotation artifacthub.io/images", "render (Job/migrate)", "extra at spec:12"


@dataclass(frozen=True)
class Discovered:
    found: tuple[Found, ...]
    notes: tuple[str, ...] = ()
    in_values: tuple[tuple[ValuePath, ImageReference], ...] = ()  # images values.yaml holds, by path
    bitnami: bool = False  # a Bitnami chart: its override needs allowInsecureImages


def discover(archive: Path, chart: str, settings: ImageSettings, helm: str | None, origin: str) -> Discovered:
    """The images of one chart version (`chart` as "name version"), from its `archive`, checked
    first as helm's loader reads it (chart.read_chart_metadata), before helm or anything else opens it."""
    metadata = read_chart_metadata(archive, origin)  # read once, handed to what needs its fields
    found: list[Found] = []
    notes: list[str] = []
    annotated: set[ImageReference] = set()
    if settings.annotations:
        for how, text in annotated_images(archive, origin, metadata=metadata):
            if text is None:
                notes.append(
                    f"{chart}: its {how} is not a YAML list of {{name, image}}; no image was read from it"
                )
                continue
            image = _reference(text, f"{chart}: {how} lists", notes)
            if image is not None:
                found.append(Found(image, chart, how))
                annotated.add(image)
    if settings.render is not None:
        rendered: set[ImageReference] = set()
        for how, text in render(archive, chart, settings.render, helm):
            image = _reference(text, f"{chart}: its render ({how}) has", notes)
            if image is not None:
                found.append(Found(image, chart, f"render ({how})"))
                rendered.add(image)
        if settings.annotations and annotated:
            for image in sorted(rendered - annotated):
                notes.append(f"{image}: found by the render of {chart}, but not in its image annotations")
            for image in sorted(annotated - rendered):
                notes.append(f"{image}: in the image annotations of {chart}, but not in its render")
    for extra in settings.extra:
        found.append(Found(parse(extra.reference), chart, f"extra at {extra.where}"))
    kept = [each for each in found if not excluded(each.image, settings.exclude)]
    in_values, bitnami = value_images(archive, metadata)
    return Discovered(tuple(kept), tuple(notes), tuple(in_values), bitnami)


def excluded(image: ImageReference, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(str(image), p) or fnmatch.fnmatchcase(image.name, p) for p in patterns)


def _reference(text: str, what: str, notes: list[str]) -> ImageReference | None:
    try:
        return parse(text)
    except BadReference as exc:
        notes.append(f"{what} an image ecrmirror cannot read, so it was not mirrored: {exc}")
        return None


# -- annotations --------------------------------------------------------------------------------------
def annotated_images(
    archive: Path, origin: str, depth: int = 0, metadata: dict[str, Any] | None = None
) -> Iterator[tuple[str, str | None]]:
    """(where, image text) for every image the annotations of the chart and its subcharts list.

    The archive is checked as helm's loader reads it (chart.read_chart_metadata) before anything
    is taken from it; a packaged subchart (charts/*.tgz) is checked the same way."""
    if metadata is None:  # a packaged subchart: checked as the chart was
        metadata = read_chart_metadata(archive, origin)
    name = str(metadata.get("name") or "the chart")
    yield from _listed(metadata.get("annotations") or {}, "" if depth == 0 else f"subchart {name}: ")
    for member_name, data in _subcharts(archive, origin):
        if member_name.endswith(".tgz"):
            if depth >= MAX_SUBCHART_DEPTH:
                raise InvalidChart(f"{origin}: subcharts nest more than {MAX_SUBCHART_DEPTH} deep")
            with tempfile.NamedTemporaryFile(suffix=".tgz") as nested:
                nested.write(data)
                nested.flush()
                yield from annotated_images(Path(nested.name), f"{origin}: {member_name}", depth + 1)
        else:
            try:
                document = load_helm_yaml(data)
            except (YamlRefused, yaml.YAMLError) as exc:
                raise InvalidChart(f"{origin}: {member_name} is not YAML helm reads: {exc}") from None
            if isinstance(document, dict):
                sub = str(document.get("name") or member_name)
                found = document.get("annotations")
                yield from _listed(found if isinstance(found, dict) else {}, f"subchart {sub}: ")


def _listed(annotated: dict[str, Any], prefix: str) -> Iterator[tuple[str, str | None]]:
    """(where, image text) of each image an annotation lists; (where, None) for an annotation that
    is not a list of {name, image}, so that the version says its images could not be read."""
    for key in IMAGE_ANNOTATIONS:
        text = annotated.get(key)
        if not isinstance(text, str):
            continue
        try:
            entries = load_helm_yaml(text.encode())
        except (YamlRefused, yaml.YAMLError):
            entries = None
        if key == "images" and not isinstance(entries, list):
            continue  # `images` is a common name: in a chart not Bitnami's it may mean something else
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            yield f"{prefix}annotation {key}", None  # said as a note: its images are unknown
            continue
        for entry in entries:
            image = entry.get("image")
            if isinstance(image, str):
                yield f"{prefix}annotation {key}", image.strip()


def _subcharts(archive: Path, origin: str) -> Iterator[tuple[str, bytes]]:
    """The members of `archive` that are subcharts' Chart.yaml or packaged subcharts, directly
    under the chart's charts/ (helm loads those, and each subchart's own charts/ through them)."""
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if not member.isfile() or member.size > MAX_FILE_SIZE or len(parts) < 3:
                    continue
                if parts[1] != "charts":
                    continue
                packaged = len(parts) == 3 and parts[2].endswith(".tgz")
                unpacked = len(parts) == 4 and parts[3] == "Chart.yaml"
                if packaged or unpacked:
                    handle = tar.extractfile(member)
                    if handle is not None:
                        yield "/".join(parts[1:]), handle.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise InvalidChart(f"{origin} is not a gzipped tar archive: {exc}") from None


def to_json(discovered: Discovered) -> dict[str, Any]:
    return {
        "found": [[str(each.image), each.chart, each.how] for each in discovered.found],
        "notes": list(discovered.notes),
        "in_values": [[list(path), str(image)] for path, image in discovered.in_values],
        "bitnami": discovered.bitnami,
    }


def from_json(document: dict[str, Any]) -> Discovered:
    return Discovered(
        tuple(Found(parse(image), str(chart), str(how)) for image, chart, how in document["found"]),
        tuple(str(note) for note in document["notes"]),
        tuple((tuple(str(key) for key in path), parse(image)) for path, image in document["in_values"]),
        bool(document["bitnami"]),
    )


# -- render -------------------------------------------------------------------------------------------
def helm_binary(configured: str | None) -> str | None:
    return shutil.which(configured or "helm")


def helm_version(helm: str | None) -> str:
    """`helm version`'s answer: another helm may render a chart otherwise. "" without helm."""
    if helm is None:
        return ""
    try:
        done = subprocess.run(
            [helm, "version", "--short"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def render(archive: Path, chart: str, settings: Render, helm: str | None) -> Iterator[tuple[str, str]]:
    """(kind/name of the object, image text) for every string field named `image` in any object of
    the chart's render: PodSpecs at any depth (containers, initContainers, ephemeralContainers),
    custom resources an operator reads, hooks and tests, and CRDs (`--include-crds`)."""
    if helm is None:
        raise RenderFailed(
            f"{chart}: the spec renders it (images.render at {settings.where}), but there is no helm "
            "binary: install helm, or name it with --ecrmirror-helm / ini ecrmirror_helm"
        )
    name = chart.split(" ")[0]
    command = [helm, "template", name, str(archive), "--include-crds", "--namespace", "default"]
    if settings.kube_version:
        command += ["--kube-version", settings.kube_version]
    for values in settings.values:
        command += ["--values", values]
    for key, value in settings.set:
        command += ["--set", f"{key}={value}"]
    output, errors, code = _bounded_run(command, chart)
    if code != 0:
        said = errors.decode("utf-8", "replace").strip()[-2000:] or f"exit status {code}"
        raise RenderFailed(f"{chart}: `helm template` failed, so its images are unknown: {said}")
    try:
        documents = list(yaml.load_all(output, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise RenderFailed(f"{chart}: `helm template` printed what is not YAML: {exc}") from None
    for document in documents:
        if isinstance(document, dict):
            kind, meta = document.get("kind"), document.get("metadata")
            named = meta.get("name") if isinstance(meta, dict) else None
            where = f"{kind}/{named}" if isinstance(kind, str) and isinstance(named, str) else "an object"
            for image in _image_fields(document):
                yield where, image


def _image_fields(document: Any) -> Iterator[str]:
    """Every string value of a key `image`, at any depth. A YAML alias makes two places one object:
    each object is walked once, so a few lines of aliases cannot make the walk exponential."""
    seen: set[int] = set()
    stack = [document]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "image" and isinstance(value, str) and value.strip():
                    yield value.strip()
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(item for item in node if isinstance(item, dict | list))


def _bounded_run(command: list[str], chart: str) -> tuple[bytes, bytes, int]:
    """Run `command`, reading at most MAX_RENDER_OUTPUT bytes of its output within RENDER_TIMEOUT:
    a hostile chart cannot fill memory or hold the run. Its errors go to a file (no pipe to block)."""
    environment = {**os.environ, "HELM_NO_PLUGINS": "1"}  # no user plugin runs on untrusted input
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=environment)
        assert process.stdout is not None
        try:
            output, problem = _read_bounded(process)
        finally:
            process.kill()
            process.wait()
        if problem is not None:
            raise RenderFailed(f"{chart}: `helm template` {problem}; its images are unknown")
        errors.seek(0)
        return output, errors.read(64 * 1024), process.returncode


def _read_bounded(process: subprocess.Popen[bytes]) -> tuple[bytes, str | None]:
    assert process.stdout is not None
    deadline = time.monotonic() + RENDER_TIMEOUT
    chunks, total = [], 0
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return b"", f"ran longer than {RENDER_TIMEOUT:.0f} s"
            if not selector.select(timeout=left):
                continue
            chunk = os.read(process.stdout.fileno(), 1024 * 1024)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_RENDER_OUTPUT:
                return b"", f"printed more than {MAX_RENDER_OUTPUT} bytes"
            chunks.append(chunk)
    try:  # its output has ended; helm may still be busy (or stuck) before it exits
        process.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return b"", f"ran longer than {RENDER_TIMEOUT:.0f} s"
    return b"".join(chunks), None
