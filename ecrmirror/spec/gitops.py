"""GitOps manifests as a chart list: the charts that Flux HelmReleases and Argo CD Applications pull."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from ecrmirror.constraints import ConstraintError, parse_constraint, parse_version, version_problem
from ecrmirror.constraints import shown as quoted
from ecrmirror.errors import SpecError
from ecrmirror.spec.charts import CHART_NAME
from ecrmirror.spec.reader import first_alias

try:  # libyaml is much faster; PyYAML's pure-Python loader gives the same nodes and marks.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILES = 10_000  # YAML files read from all gitops: paths together
MAX_FILE_BYTES = 5 * 1024 * 1024  # per file; a rendered tree of a large platform is a few MiB

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_RESOLVER = yaml.resolver.Resolver()  # the resolver both PyYAML loaders use for plain scalars

_HELM_GROUP = "helm.toolkit.fluxcd.io"
_SOURCE_GROUP = "source.toolkit.fluxcd.io"
_ARGO_GROUP = "argoproj.io"
# The API versions read, per kind. helm-controller serves v2 since 1.0.0 and served v2beta2 and
# v2beta1 until 1.5.0 and 1.4.0 (its CHANGELOG.md); source-controller serves v1 and v1beta2.
_VERSIONS: dict[tuple[str, str], tuple[str, ...]] = {
    (_HELM_GROUP, "HelmRelease"): ("v2", "v2beta2", "v2beta1"),
    (_SOURCE_GROUP, "HelmRepository"): ("v1", "v1beta2"),
    (_SOURCE_GROUP, "OCIRepository"): ("v1", "v1beta2"),
    (_SOURCE_GROUP, "HelmChart"): ("v1", "v1beta2"),
    (_ARGO_GROUP, "Application"): ("v1alpha1",),
}
_SOURCE_KINDS = ("HelmRepository", "OCIRepository", "HelmChart")  # what a HelmRelease refers to
# Flux's chart sources that hold a path to a chart, not published chart versions
# (helm-controller api/v2/reference_types.go: "ignored for charts from GitRepository and Bucket").
_PATH_SOURCES = {"GitRepository": "a Git repository", "Bucket": "a bucket"}

# kustomize-controller skips post-build substitution on an object labelled or annotated so
# (fluxcd/pkg kustomize/kustomize_varsub.go).
_SUBSTITUTE = "kustomize.toolkit.fluxcd.io/substitute"
# Flux's post-build variables (kustomize-controller docs/spec/v1/kustomizations.md): ${var},
# ${var:=default} (and envsubst's ${var:-default}); $${var} is a literal ${var}. A bare $var is
# not substituted.
_FLUX_VARIABLE = re.compile(r"\$\$\{|\$\{(?P<name>[_A-Za-z][_A-Za-z0-9]*)(?::[=-](?P<default>[^}]*))?\}")

# A version Flux pins: Masterminds' StrictNewVersion with an optional leading `v`
# (fluxcd/pkg version/version.go ParseVersion). Anything else is a constraint for Flux, `1.2` included
# (source-controller internal/helm/repository/chart_repository.go). ASCII digits only, as Go's are.
_NUMERIC = r"0|[1-9][0-9]*"
_IDENTIFIER = rf"(?:{_NUMERIC}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_FLUX_PIN = re.compile(
    rf"v?(?:{_NUMERIC})\.(?:{_NUMERIC})\.(?:{_NUMERIC})"
    rf"(?:-{_IDENTIFIER}(?:\.{_IDENTIFIER})*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)

_RENDER = "render the tree first (kustomize build, or flux build ks) and point gitops: at the output"
_CONSTRAINT_FIX = 'write a version (1.2.3) or a constraint such as ">=1.2.0 <2.0.0"'


@dataclass(frozen=True)
class ChartRequest:
    """One chart a GitOps object asks for: what Flux or Argo CD would pull."""

    name: str  # the chart's name
    repo: str  # an http(s) Helm repository URL (its index.yaml), or oci://host/path: the chart is repo/name
    version: str | None  # a pinned version (exactly this one); None when `constraint` says which
    constraint: str | None  # a Masterminds constraint; "*" is the newest stable version
    where: str  # "<shown file>:<line>" of the object that asks (the HelmRelease / Application)
    manifest: Path  # that file
    line: int  # 1-based line where that object's document starts (its first key)
    document: int  # 1-based number of the YAML document in the file
    asked_by: str  # "HelmRelease apps/podinfo", "Application argocd/guestbook"
    source: str  # "HelmRepository flux-system/podinfo", "Application argocd/guestbook source 2 (https://...)"
    flux_source_kind: str | None  # "HelmRepository", "OCIRepository", or None for Argo CD


@dataclass(frozen=True)
class SkippedRequest:
    """An object that asks for something ecrmirror does not mirror, and why (Git, Bucket and
    ExternalArtifact sources; Argo CD path and ref sources)."""

    where: str
    manifest: Path
    line: int
    document: int
    asked_by: str
    reason: str


def read_gitops(
    paths: Iterable[Path], shown: Callable[[Path], str], environ: Mapping[str, str]
) -> tuple[list[ChartRequest], list[SkippedRequest]]:
    """The charts that the HelmReleases and Applications in `paths` (files, or directories walked
    for *.yaml and *.yml) pull; SpecError names the file, line, document and object of anything
    that cannot be read as the cluster would read it. `shown` is how messages name a file."""
    askers: list[_Object] = []
    sources = _Sources()
    for manifest in _manifests(paths, shown):
        for obj in _objects(manifest, shown(manifest), environ):
            if obj.kind in _SOURCE_KINDS:
                sources.add(obj)
            else:
                askers.append(obj)
    requests: list[ChartRequest] = []
    skipped: list[SkippedRequest] = []
    for obj in askers:
        results = [_flux_release(obj, sources)] if obj.kind == "HelmRelease" else _argo_application(obj)
        for result in results:
            if isinstance(result, ChartRequest):
                requests.append(result)
            else:
                skipped.append(result)
    return requests, skipped


# -- files and documents --------------------------------------------------------------------------------
def _manifests(paths: Iterable[Path], shown: Callable[[Path], str]) -> list[Path]:
    """The files to read: each file as given, each directory's *.yaml and *.yml in path order."""
    found: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path, under: Path) -> None:
        key = path.resolve()
        if key in seen:
            return
        if len(found) == MAX_FILES:
            raise SpecError(
                shown(under),
                f"gitops: holds more than {MAX_FILES:,} YAML files, which is more than ecrmirror reads",
                "point gitops: at the directories that hold the Flux or Argo CD objects",
            )
        seen.add(key)
        found.append(path)

    for path in paths:
        if path.is_dir():
            for manifest in _walk(path):
                add(manifest, path)
        elif path.is_file():
            add(path, path)
        elif path.exists():
            raise SpecError(shown(path), "is neither a file nor a directory", "give a file or a directory")
        else:
            raise SpecError(shown(path), "no such file or directory", "fix the path in gitops:")
    return found


def _walk(directory: Path) -> Iterator[Path]:
    """*.yaml and *.yml under `directory`, sorted by path; hidden directories (.git, .github) are
    left out, as source-controller's default ignore rules leave out most of them."""
    found: list[tuple[tuple[str, ...], Path]] = []
    for root, dirs, files in os.walk(directory):  # symlinked directories are not followed
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in files:
            path = Path(root, name)
            if name.endswith((".yaml", ".yml")) and path.is_file():
                found.append((path.relative_to(directory).parts, path))
        if len(found) > MAX_FILES:  # enough for _manifests to refuse; walk no further
            break
    found.sort()
    return (path for _, path in found)


def _read(manifest: Path, shown: str) -> str:
    try:
        with manifest.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError(shown, f"cannot read it: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(
            shown,
            f"is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, more than ecrmirror reads from a file",
            "split it, or leave it out of gitops:",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(f"{shown}:{line}", "is not UTF-8 text, so it is not YAML") from None


def _documents(text: str, shown: str) -> Iterator[yaml.Node | None]:
    """The documents of a multi-document YAML file, as node trees with their lines."""
    documents = yaml.compose_all(text, Loader=_Loader)
    while True:
        try:
            document = next(documents)
        except StopIteration:
            return
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else 1
            raise SpecError(
                f"{shown}:{line}", f"invalid YAML: {exc.problem}", "fix the YAML syntax at that line"
            ) from None
        except yaml.reader.ReaderError as exc:  # a character YAML does not allow, such as NUL
            line = text[: exc.position].count("\n") + 1
            character = (
                exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or " ")
            )
            raise SpecError(
                f"{shown}:{line}", f"invalid YAML: the character U+{character:04X} is not allowed in YAML"
            ) from None
        except yaml.YAMLError as exc:
            raise SpecError(shown, f"invalid YAML: {exc}") from None
        except RecursionError:  # the pure-Python composer recurses per nesting level
            raise SpecError(shown, "invalid YAML: it nests too deep") from None
        yield document


def _objects(manifest: Path, shown: str, environ: Mapping[str, str]) -> Iterator[_Object]:
    """The objects of one file that ecrmirror reads; other kinds and non-mappings are passed over."""
    text = _read(manifest, shown)
    for number, root in enumerate(_documents(text, shown), start=1):
        if not isinstance(root, yaml.MappingNode):
            continue
        api_version = _top_level(root, "apiVersion")
        kind = _top_level(root, "kind")
        if api_version is None or kind is None:
            continue
        group, _, version = api_version.rpartition("/")
        refused = group == _ARGO_GROUP and kind == "ApplicationSet"
        if (group, kind) not in _VERSIONS and not refused:
            continue
        obj = _Object(kind, root, manifest, shown, number, environ)
        _reject_aliases(obj)
        if refused:
            with contextlib.suppress(SpecError):  # the refusal below says more than its name's problem
                obj.named()
            raise obj.fail(
                None,
                "an ApplicationSet's Applications come from its generators and {{...}} templates, "
                "which ecrmirror cannot run",
                "point gitops: at the Applications it generates, or list the charts in charts:",
            )
        if version not in _VERSIONS[group, kind]:
            raise obj.fail(
                None,
                f"apiVersion {api_version} is not one ecrmirror reads "
                f"({', '.join(f'{group}/{v}' for v in _VERSIONS[group, kind])})",
                "upgrade the manifest to a version Flux or Argo CD serves today",
            )
        obj.named()
        yield obj


def _top_level(root: yaml.MappingNode, key: str) -> str | None:
    """A top-level string field, read literally: apiVersion and kind are never substituted."""
    for key_node, value_node in root.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            if isinstance(value_node, yaml.ScalarNode) and value_node.tag == _STR:
                return str(value_node.value)
            return None
    return None


def _reject_aliases(obj: _Object) -> None:
    """An object ecrmirror reads may not use anchors and aliases (&a, *a): they hide what the file
    says, and a few lines of them expand to billions of values (the "billion laughs"). Other
    documents are not walked, so a values file with anchors next to them does no harm."""
    alias = first_alias(obj.node)
    if alias is not None:
        raise obj.fail(
            alias,
            "YAML anchors and aliases (&name, *name) are not allowed in the objects ecrmirror reads",
            "write the value out where it is used",
        )


# -- one object's fields, as the cluster reads them ---------------------------------------------------
class _Unset(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _Object:
    """One Flux or Argo CD object of a manifest: its fields as the cluster would read them, and
    errors that name the file, line, document and object."""

    def __init__(
        self,
        kind: str,
        node: yaml.MappingNode,
        manifest: Path,
        shown: str,
        document: int,
        environ: Mapping[str, str],
    ) -> None:
        self.kind = kind
        self.node = node
        self.manifest = manifest
        self.shown = shown
        self.document = document
        self.environ = environ
        self.line = node.start_mark.line + 1
        self.name = ""
        self.namespace: str | None = None  # None: not given, so set by kustomize or the cluster
        self.substitute = True
        self._keys: dict[int, yaml.Node] = {}  # a value's key, whose line a message names

    def named(self) -> None:
        """Read metadata: the name, the namespace, and whether Flux substitutes variables in it."""
        for field in ("annotations", "labels"):
            value = self.find("metadata", field, _SUBSTITUTE)
            if isinstance(value, yaml.ScalarNode) and value.value == "disabled":
                self.substitute = False
        name_node = self.find("metadata", "name")
        self.name = self.text(name_node, "metadata.name") or ""
        self.namespace = self.text(self.find("metadata", "namespace"), "metadata.namespace") or None
        if not self.name:
            raise self.fail(name_node, "metadata.name is missing", _RENDER)

    @property
    def title(self) -> str:
        return f"{self.kind} {_qualified(self.namespace, self.name)}" if self.name else self.kind

    @property
    def where(self) -> str:
        return f"{self.shown}:{self.line}"

    def fail(self, node: yaml.Node | None, problem: str, fix: str = "") -> SpecError:
        """SpecError at `node` (at its key's line: a block mapping starts on the line after), or at
        the object's first line."""
        node = self._keys.get(id(node), node)
        line = node.start_mark.line + 1 if node is not None else self.line
        return SpecError(f"{self.shown}:{line}", f"document {self.document}, {self.title}: {problem}", fix)

    def find(self, *keys: str) -> yaml.Node | None:
        """The node at `keys` from the object's top; None where a key is missing or null."""
        node: yaml.Node | None = self.node
        for depth, key in enumerate(keys):
            node = self.at(node, key, ".".join(keys[:depth]))
            if node is None:
                return None
        return node

    def at(self, node: yaml.Node | None, key: str, field: str) -> yaml.Node | None:
        """`node`'s value for `key` (`field` names `node` in messages); None when missing or null."""
        if node is None:
            return None
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{field} must be a mapping")
        found: yaml.Node | None = None
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                if found is not None:  # the API server would refuse it; which one wins is not ours to say
                    raise self.fail(key_node, f"{_join(field, key)} is given twice", "keep one of them")
                found = value_node
                self._keys[id(value_node)] = key_node
        if found is None or (isinstance(found, yaml.ScalarNode) and found.tag == _NULL):
            return None
        return found

    def text(self, node: yaml.Node | None, field: str) -> str | None:
        """A string field as the cluster sees it (Flux's variables substituted); None when missing.
        SpecError for anything that is not a plain string once Flux has done its part."""
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode):
            if _go_template(node):
                raise self.fail(
                    node,
                    f"{field} is a Go template ({{{{ ... }}}}), which YAML reads as a mapping",
                    "render the templates first and point gitops: at the output, or write the value out",
                )
            raise self.fail(node, f"{field} must be a string")
        raw = str(node.value)
        if node.tag != _STR:
            raise self._unquoted(node, field, raw, raw)
        if "{{" in raw:
            raise self.fail(
                node,
                f"{field} is {quoted(raw)}, a Go template that only a renderer fills in",
                "render the templates first and point gitops: at the output, or write the value out",
            )
        value = self._substituted(node, field, raw) if self.substitute else raw
        if "${" in value:
            if not self.substitute:
                raise self.fail(
                    node,
                    f"{field} is {quoted(value)}, and {_SUBSTITUTE}: disabled turns Flux's "
                    "substitution off for this object, so the cluster reads it as written",
                    "write the value out",
                )
            raise self.fail(
                node,
                f"{field} is {quoted(value)}, which Flux's substitution leaves as it is",
                "write the value out, or use ${VAR} or ${VAR:=default}",
            )
        # Flux substitutes in the YAML text, so an unquoted ${VAR} becomes whatever YAML makes of
        # the value: `version: ${V}` with V=1.10 is the number 1.1.
        if value != raw and not node.style and _plain_tag(value) != _STR:  # plain: None, or "" from libyaml
            raise self._unquoted(node, field, raw, value)
        return value

    def _substituted(self, node: yaml.Node, field: str, text: str) -> str:
        def substitute(match: re.Match[str]) -> str:
            name = match.group("name")
            if name is None:  # $${ is a literal ${
                return "${"
            value = self.environ.get(name)
            default = match.group("default")
            if value is None or (value == "" and default is not None):
                if default is not None:
                    return default
                raise _Unset(name)
            return value

        try:
            return _FLUX_VARIABLE.sub(substitute, text)
        except _Unset as unset:
            raise self.fail(
                node,
                f"{field} uses the Flux variable ${{{unset.name}}}, which is not set",
                f"pass --ecrmirror-var {unset.name}=VALUE or export {unset.name}; Flux would substitute "
                "an empty string, and ecrmirror does not guess",
            ) from None

    def _unquoted(self, node: yaml.ScalarNode, field: str, raw: str, value: str) -> SpecError:
        tag = _plain_tag(value)
        reads = {
            "tag:yaml.org,2002:int": "a number",
            "tag:yaml.org,2002:float": "a number",
            "tag:yaml.org,2002:bool": "a boolean",
            "tag:yaml.org,2002:null": "null",
            "tag:yaml.org,2002:timestamp": "a date",
        }.get(tag if node.tag == _STR else node.tag, f"the tag {node.tag}")
        if reads == "a number" and len(value) <= 40:
            reads = f"the number {yaml.safe_load(value)}"  # 1.10 reads as 1.1
        substituted = "" if value == raw else f", which Flux substitutes to {value}"
        key = field.rpartition(".")[2]
        return self.fail(
            node,
            f"{field} is {raw} without quotes{substituted}, so YAML reads it as {reads}, not as text",
            f'quote it: {key}: "{raw}"',
        )


def _plain_tag(value: str) -> str:
    """The tag YAML gives `value` written as a plain scalar: 1.10 is a float."""
    return str(_RESOLVER.resolve(yaml.ScalarNode, value, (True, False)))  # type: ignore[no-untyped-call]


def _go_template(node: yaml.Node) -> bool:
    """`{{ .Values.x }}` unquoted is a flow mapping whose first key is a flow mapping."""
    return (
        isinstance(node, yaml.MappingNode)
        and bool(node.flow_style)
        and bool(node.value)
        and isinstance(node.value[0][0], yaml.MappingNode)
    )


def _qualified(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


class _Sources:
    """The Flux sources of the tree, by kind and name, and how a reference finds one."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], list[_Object]] = {}

    def add(self, obj: _Object) -> None:
        self._objects.setdefault((obj.kind, obj.name), []).append(obj)

    def find(
        self, asker: _Object, ref: yaml.Node, field: str, kind: str, name: str, namespace: str | None
    ) -> _Object:
        """The one object a reference names. A namespace that is not given (None) is set later
        (kustomize's namespace:, a Kustomization's targetNamespace): it matches a source with no
        namespace either, or, failing that, any one source of that kind and name; a source with no
        namespace matches a reference that gives one when no source has that namespace."""
        candidates = self._objects.get((kind, name), [])
        matches = [c for c in candidates if c.namespace == namespace]
        if not matches:
            matches = candidates if namespace is None else [c for c in candidates if c.namespace is None]
        if len(matches) == 1:
            return matches[0]
        target = f"{kind} {_qualified(namespace, name)}"
        if not matches:
            raise asker.fail(
                ref,
                f"{field} names {target}, which no gitops file defines",
                f"include the file that defines {target} in gitops:, or {_RENDER}",
            )
        listed = ", ".join(f"{c.title} ({c.where})" for c in matches)
        raise asker.fail(
            ref,
            f"{field} names {target}, which could be any of {listed}",
            f"give the namespaces (metadata.namespace, or the reference's namespace), or {_RENDER}",
        )


# -- versions -------------------------------------------------------------------------------------------
def _flux_version(obj: _Object, node: yaml.Node | None, field: str) -> tuple[str | None, str | None]:
    """(version, constraint) as source-controller reads a chart version (chart_repository.go,
    oci_chart_repository.go): "" and "*" are the newest stable version, a strict semver (with an
    optional `v`) is that version, anything else is a Masterminds constraint."""
    text = (obj.text(node, field) or "").strip()
    if text in ("", "*"):
        return None, "*"
    if _FLUX_PIN.fullmatch(text):
        return _pinned(obj, node, field, text), None
    return None, _constraint(obj, node, field, text)


def _argo_version(obj: _Object, node: yaml.Node | None, field: str) -> tuple[str | None, str | None]:
    """(version, constraint) as Argo CD reads targetRevision (util/versions/tags.go MaxVersion):
    anything Masterminds' NewVersion reads is a pin, anything else a constraint.

    Argo CD hands a pin to helm as written (reposerver newHelmClientResolveRevision), and helm
    reads `--version 1.2` as a constraint after an exact match (helm's repo.IndexFile.Get and
    registry.GetTagMatchingVersionOrConstraint): the newest 1.2.x. So a short version is the
    constraint `=1.2`, which ecrmirror reads as helm does (a missing part is a wildcard), and only a
    full MAJOR.MINOR.PATCH is a pin. A revision missing, empty or HEAD (Git's default, which a chart
    does not have) is the newest stable version."""
    text = (obj.text(node, field) or "").strip()
    if text in ("", "HEAD"):
        return None, "*"
    if parse_version(text) is not None:
        core = re.split(r"[-+]", text.removeprefix("v"), maxsplit=1)[0]
        if core.count(".") == 2:
            return _pinned(obj, node, field, text), None
        return None, _constraint(obj, node, field, f"={text}")
    return None, _constraint(obj, node, field, text)


def _pinned(obj: _Object, node: yaml.Node | None, field: str, version: str) -> str:
    problem = version_problem(version)  # the rule every mirrored version meets
    if problem is not None:
        raise obj.fail(
            node,
            f"{field}: version {quoted(version)} {problem}",
            "a version is helm's semver (MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD]) in at most "
            "128 characters of letters, digits, . _ - and +",
        )
    return version


def _constraint(obj: _Object, node: yaml.Node | None, field: str, text: str) -> str:
    try:
        parse_constraint(text)
    except ConstraintError as exc:
        raise obj.fail(
            node, f"{field} {quoted(text)} is not a version constraint: {exc}", _CONSTRAINT_FIX
        ) from None
    return text


def _chart_name(obj: _Object, node: yaml.Node | None, field: str, name: str) -> str:
    if not CHART_NAME.fullmatch(name):
        raise obj.fail(
            node,
            f"{field}: chart name {quoted(name)} is not a chart name",
            "chart names are lowercase letters and digits, with . _ - between them (no / or ..); "
            "helm cannot push anything else to an OCI registry",
        )
    return name


def _oci_chart(url: str) -> tuple[str, str] | None:
    """oci://host/path/name as (oci://host/path, name); None without a path."""
    rest = url.removeprefix("oci://").strip("/")
    repository, _, name = rest.rpartition("/")
    if not repository or not name:
        return None
    return f"oci://{repository}", name


# -- Flux -----------------------------------------------------------------------------------------------
def _flux_release(release: _Object, sources: _Sources) -> ChartRequest | SkippedRequest:
    chart = release.find("spec", "chart")
    chart_ref = release.find("spec", "chartRef")
    # Exactly one of them (helm-controller docs/spec/v2/helmreleases.md); in a Git tree, a
    # HelmRelease without either is usually a kustomize patch that only changes values.
    if chart is not None and chart_ref is not None:
        raise release.fail(
            chart_ref,
            "has both spec.chart and spec.chartRef, and Flux takes exactly one; a HelmRelease like "
            "this is usually a kustomize patch fragment, not a whole HelmRelease",
            _RENDER,
        )
    if chart is None and chart_ref is None:
        raise release.fail(
            None,
            "has neither spec.chart nor spec.chartRef; a HelmRelease like this is usually a kustomize "
            "patch fragment, not a whole HelmRelease",
            _RENDER,
        )
    if chart is not None:
        return _chart_template(release, release, ("spec", "chart", "spec"), sources, via=None)
    kind = _required(release, ("spec", "chartRef", "kind"))
    name = _required(release, ("spec", "chartRef", "name"))
    namespace = release.text(release.find("spec", "chartRef", "namespace"), "spec.chartRef.namespace")
    namespace = namespace or release.namespace  # "defaults to the namespace of the HelmRelease"
    ref = release.find("spec", "chartRef")
    assert ref is not None
    target = f"{kind} {_qualified(namespace, name)}"
    if kind == "ExternalArtifact":
        return _skipped(
            release,
            f"the chart comes from {target}, an artifact another controller builds, not a published "
            "chart version: nothing to mirror",
        )
    if kind == "OCIRepository":
        return _from_oci_repository(
            release, sources.find(release, ref, "spec.chartRef", kind, name, namespace)
        )
    if kind == "HelmChart":
        helm_chart = sources.find(release, ref, "spec.chartRef", kind, name, namespace)
        return _chart_template(release, helm_chart, ("spec",), sources, via=helm_chart.title)
    raise release.fail(
        release.find("spec", "chartRef", "kind"),
        f"spec.chartRef.kind {quoted(kind)} is not OCIRepository, HelmChart or ExternalArtifact",
    )


def _chart_template(
    release: _Object, owner: _Object, keys: tuple[str, ...], sources: _Sources, via: str | None
) -> ChartRequest | SkippedRequest:
    """The chart of a HelmRelease's spec.chart.spec, or of a HelmChart's spec (`owner`)."""
    field = ".".join(keys)
    chart_node = owner.find(*keys, "chart")
    chart = owner.text(chart_node, f"{field}.chart")
    for missing, present in (("chart", chart), ("sourceRef", owner.find(*keys, "sourceRef"))):
        if not present:
            raise owner.fail(
                owner.find(*keys) or owner.find(*keys[:-1]),
                f"{field} has no {missing}; a {owner.kind} like this is usually a kustomize patch "
                f"fragment, not a whole {owner.kind}",
                _RENDER,
            )
    assert chart is not None
    ref = owner.find(*keys, "sourceRef")
    assert ref is not None
    kind = _required(owner, (*keys, "sourceRef", "kind"))
    name = _required(owner, (*keys, "sourceRef", "name"))
    if owner.kind == "HelmChart":
        namespace = owner.namespace  # a LocalHelmChartSourceReference: the HelmChart's own namespace
    else:  # "defaults to the namespace of the HelmRelease" (helmchart_template.go, GetNamespace)
        ref_namespace = owner.find(*keys, "sourceRef", "namespace")
        namespace = owner.text(ref_namespace, f"{field}.sourceRef.namespace") or owner.namespace
    target = f"{kind} {_qualified(namespace, name)}"
    if kind in _PATH_SOURCES:
        return _skipped(
            release,
            f"the chart comes from {target}, a path in {_PATH_SOURCES[kind]} ({chart}), not a published "
            "chart version: nothing to mirror",
        )
    if kind != "HelmRepository":
        raise owner.fail(
            owner.find(*keys, "sourceRef", "kind"),
            f"{field}.sourceRef.kind {quoted(kind)} is not HelmRepository, GitRepository or Bucket",
        )
    repository = sources.find(owner, ref, f"{field}.sourceRef", kind, name, namespace)
    repo = _helm_repository(repository, release)
    _chart_name(owner, chart_node, f"{field}.chart", chart)
    version, constraint = _flux_version(owner, owner.find(*keys, "version"), f"{field}.version")
    source = repository.title + (f" (via {via})" if via else "")
    return _request(release, chart, repo, version, constraint, source, "HelmRepository")


def _helm_repository(repository: _Object, release: _Object) -> str:
    """A HelmRepository's URL: http(s) for an index.yaml, oci:// with `type: oci` (source-controller
    api/v1/helmrepository_types.go; the OCI chart is path.Join(url.Path, chart))."""
    url_node = repository.find("spec", "url")
    url = repository.text(url_node, "spec.url")
    if not url:
        raise repository.fail(url_node or repository.find("spec"), "spec.url is missing", "add the url")
    type_node = repository.find("spec", "type")
    kind = repository.text(type_node, "spec.type") or "default"
    if kind not in ("default", "oci"):
        raise repository.fail(type_node, f"spec.type {quoted(kind)} is neither default nor oci")
    if not url.startswith(("http://", "https://", "oci://")):
        raise repository.fail(url_node, f"spec.url {quoted(url)} is not an http://, https:// or oci:// URL")
    if (kind == "oci") != url.startswith("oci://"):
        raise repository.fail(
            type_node or url_node,
            f"spec.type is {kind}, but spec.url is {url}: Flux reads an oci:// URL only with type: oci, "
            f"and an http(s):// URL only without it (used by {release.title} at {release.where})",
            "set type: oci for an oci:// URL, or remove type: oci for an http(s):// Helm repository",
        )
    return url.rstrip("/")


def _from_oci_repository(release: _Object, repository: _Object) -> ChartRequest:
    """An OCIRepository that holds the chart (source-controller api/v1/ocirepository_types.go): the
    url names it, and ref says which tag: digest, then semver, then tag; no ref is `latest`."""
    url_node = repository.find("spec", "url")
    url = repository.text(url_node, "spec.url") or ""
    split = _oci_chart(url) if url.startswith("oci://") else None
    if split is None:
        raise repository.fail(
            url_node or repository.find("spec"),
            f"spec.url {quoted(url)} is not oci://host/path/chart",
            "give the chart's full oci:// URL, without a tag",
        )
    repo, name = split
    _chart_name(repository, url_node, "spec.url", name)

    def ref(key: str) -> tuple[yaml.Node | None, str]:
        node = repository.find("spec", "ref", key)
        return node, repository.text(node, f"spec.ref.{key}") or ""

    (digest_node, digest), (semver_node, semver) = ref("digest"), ref("semver")
    (filter_node, semver_filter), (tag_node, tag) = ref("semverFilter"), ref("tag")
    version: str | None = None
    constraint: str | None = None
    if digest:
        # Flux pulls the digest; ecrmirror mirrors a version, which only a tag beside it names.
        if not tag:
            raise repository.fail(
                digest_node,
                f"spec.ref.digest {digest} names an artifact, but no chart version to mirror",
                "add ref.tag with the chart version that digest is",
            )
        version = _oci_tag(repository, tag_node, tag)
    elif semver:
        # Not supported: semverFilter is a Go regular expression over the tags, which would need
        # the tag listing and RE2's dialect; refusing is honest, guessing is not.
        if semver_filter:
            raise repository.fail(
                filter_node,
                "spec.ref.semverFilter is not supported: ecrmirror cannot tell which tags Flux keeps",
                "remove semverFilter, or narrow ref.semver to the versions you want",
            )
        constraint = _constraint(repository, semver_node, "spec.ref.semver", semver.strip())
    elif tag:
        version = _oci_tag(repository, tag_node, tag)
    else:
        raise repository.fail(
            repository.find("spec", "ref") or url_node,
            "has no ref.tag, ref.semver or ref.digest, so Flux pulls the tag latest, which is not a "
            "chart version",
            "pin a chart version with ref.tag, or a range with ref.semver",
        )
    return _request(release, name, repo, version, constraint, repository.title, "OCIRepository")


def _oci_tag(repository: _Object, node: yaml.Node | None, tag: str) -> str:
    # helm pushes version 1.0.0+b as the tag 1.0.0_b (an OCI tag has no +).
    version = tag.replace("_", "+")
    if parse_version(tag) is not None or parse_version(version) is None:
        version = tag
    return _pinned(repository, node, "spec.ref.tag", version)


def _required(obj: _Object, keys: tuple[str, ...]) -> str:
    node = obj.find(*keys)
    value = obj.text(node, ".".join(keys))
    if not value:
        parent = ".".join(keys[:-1])
        raise obj.fail(node or obj.find(*keys[:-1]), f"{parent} has no {keys[-1]}", f"add {keys[-1]}:")
    return value


# -- Argo CD --------------------------------------------------------------------------------------------
def _argo_application(app: _Object) -> list[ChartRequest | SkippedRequest]:
    """An Application's charts: spec.sources, else spec.source (Argo CD's types.go: sources win)."""
    sources_node = app.find("spec", "sources")
    entries: list[tuple[str, str, yaml.Node]] = []
    if sources_node is not None:
        if not isinstance(sources_node, yaml.SequenceNode):
            raise app.fail(sources_node, "spec.sources must be a list")
        entries = [
            (f"source {number}", f"spec.sources[{number - 1}]", node)
            for number, node in enumerate(sources_node.value, start=1)
        ]
    else:
        single = app.find("spec", "source")
        if single is not None:
            entries = [("source", "spec.source", single)]
        elif app.find("spec", "sourceHydrator") is not None:
            return [_skipped(app, "it renders manifests from Git (spec.sourceHydrator): nothing to mirror")]
        else:
            raise app.fail(
                None,
                "has neither spec.source nor spec.sources; an Application like this is usually a "
                "kustomize patch fragment, not a whole Application",
                _RENDER,
            )
    return [_argo_source(app, label, field, node) for label, field, node in entries]


def _argo_source(app: _Object, label: str, field: str, node: yaml.Node) -> ChartRequest | SkippedRequest:
    """One source, classified as Argo CD's repo server does (reposerver/repository/repository.go):
    an oci:// repoURL is the artifact itself, before any `chart` is looked at; then `chart` with a
    Helm repository, or a registry written without a scheme (util/helm/client.go IsHelmOciRepo)."""
    repo_url_node = app.at(node, "repoURL", field)
    repo_url = app.text(repo_url_node, f"{field}.repoURL")
    chart_node = app.at(node, "chart", field)
    chart = app.text(chart_node, f"{field}.chart")
    ref = app.text(app.at(node, "ref", field), f"{field}.ref")
    if not repo_url:
        raise app.fail(repo_url_node or node, f"{field} has no repoURL", "add repoURL:")
    described = f"{label} ({repo_url})"
    if ref and not chart:
        return _skipped(
            app, f"{described} only lends its files to the other sources (ref: {ref}): nothing to mirror"
        )
    if repo_url.startswith("oci://"):
        # Argo CD pulls the artifact whole and renders it (docs/user-guide/oci.md); whether it is a
        # chart shows only when ecrmirror pulls it.
        split = _oci_chart(repo_url)
        if split is None:
            raise app.fail(repo_url_node, f"{field}.repoURL {quoted(repo_url)} is not oci://host/path/chart")
        repo, name = split
        _chart_name(app, repo_url_node, f"{field}.repoURL", name)
    elif chart:
        if repo_url.startswith(("http://", "https://")):
            repo = repo_url.rstrip("/")
        elif "://" not in repo_url:
            repo = "oci://" + repo_url.strip("/")  # docs/user-guide/helm.md: "oci:// ... is not included"
        else:
            raise app.fail(
                repo_url_node,
                f"{field}.repoURL {quoted(repo_url)} is not a Helm repository",
                "give an http(s):// Helm repository, an oci:// chart, or a registry without a scheme",
            )
        name = _chart_name(app, chart_node, f"{field}.chart", chart)
    else:
        path = app.text(app.at(node, "path", field), f"{field}.path") or "."
        return _skipped(
            app,
            f"{described} is a path in a Git repository ({path}), not a published chart version: "
            "nothing to mirror",
        )
    version, constraint = _argo_version(app, app.at(node, "targetRevision", field), f"{field}.targetRevision")
    return _request(app, name, repo, version, constraint, f"{app.title} {described}", None)


# -- results --------------------------------------------------------------------------------------------
def _request(
    asker: _Object,
    name: str,
    repo: str,
    version: str | None,
    constraint: str | None,
    source: str,
    flux_source_kind: str | None,
) -> ChartRequest:
    return ChartRequest(
        name=name,
        repo=repo,
        version=version,
        constraint=constraint,
        where=asker.where,
        manifest=asker.manifest,
        line=asker.line,
        document=asker.document,
        asked_by=asker.title,
        source=source,
        flux_source_kind=flux_source_kind,
    )


def _skipped(asker: _Object, reason: str) -> SkippedRequest:
    return SkippedRequest(
        where=asker.where,
        manifest=asker.manifest,
        line=asker.line,
        document=asker.document,
        asked_by=asker.title,
        reason=reason,
    )
