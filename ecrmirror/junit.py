"""JUnit as GitLab shows it in a merge request: each item named for a reviewer, its spec as the file.

GitLab reads only a testcase's classname, name, file and time, and the body of its failure.
pytest names a testcase after its node id (classname "specs.gitlab.yaml.gitlab", name "7.1.1")
and in its default family, xunit2, writes no file; it has no public way to set the attributes of
items that are not Python functions. So once pytest has written the file, the testcases of
ecrmirror's items get their name, classname, file and line from the properties the items
recorded, and a spec that failed to load gets its path as classname and file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from ecrmirror.share import write_atomically

# The properties an item records on its reports, written by pytest into its testcase.
OUTCOME_PROPERTY = "outcome"
ERROR_PROPERTY = "error"  # an item that raised: the error's word (NOT UPSTREAM, DIGEST MISMATCH, ...)
BYTES_PROPERTY = "bytes_uploaded"
NOTE_PROPERTY = "note"
RANGE_PROPERTY = "version_range"  # the constraint a version was selected by
DIGEST_PROPERTY = "image_digest"  # an image: the digest ECR's tag holds
PLATFORM_PROPERTY = "platform"  # an image: "<os>/<arch>[/<variant>] <digest>" of each child of its index
VALUES_PROPERTY = "in_values"  # an image: JSON {chart, path, bitnami} of where a chart's values hold it
ASKED_BY_PROPERTY = "asked_by"  # a GitOps object that asks for a chart version, at file:line
POINTING_PROPERTY = "points_at_ecr"  # the change to that object's source that pulls from ECR
USED_BY_PROPERTY = "used_by"  # an image: a chart version that runs it, and how it was found
PULLED_IN_BY_PROPERTY = "pulled_in_by"  # a dependency: the chart versions that declare it
KIND_PROPERTY = "ecrmirror"  # which of our items made a report: version, repository, replication
TITLE_PROPERTY = "title"  # what the item is about, for a reader: the JUnit test case's name
FILE_PROPERTY = (
    "file"  # where the item sits: the spec, or the GitOps manifest that asks: the test case's file
)
SPEC_PROPERTY = "spec"  # the spec file, relative to the rootdir: the JUnit test case's classname
LINE_PROPERTY = "line"  # the line of the spec the item comes from


def rewrite(path: Path, spec_errors: Iterable[str] = ()) -> None:
    """Rename ecrmirror's testcases in the JUnit file at `path`; others stay as pytest wrote them.

    `spec_errors` are the node ids of spec files (or their charts) that could not be collected.
    """
    tree = ET.parse(path)
    errors = {_pytest_names(nodeid): nodeid for nodeid in spec_errors}
    changed = False
    for case in tree.getroot().iter("testcase"):
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        if KIND_PROPERTY in properties and SPEC_PROPERTY in properties:
            spec = str(properties[SPEC_PROPERTY])
            _name(case, str(properties.get(TITLE_PROPERTY) or case.get("name")), spec)
            case.set("file", str(properties.get(FILE_PROPERTY) or spec))
            if properties.get(LINE_PROPERTY):
                case.set("line", str(properties[LINE_PROPERTY]))
            changed = True
        elif (case.get("classname", ""), case.get("name", "")) in errors:
            nodeid = errors[(case.get("classname", ""), case.get("name", ""))]
            _name(case, nodeid, nodeid.split("::")[0])
            changed = True
    if changed:
        write_atomically(path, ET.tostring(tree.getroot(), encoding="utf-8", xml_declaration=True))


def _name(case: ET.Element, name: str, spec: str) -> None:
    case.set("classname", spec)  # the title of GitLab's "View details" dialog
    case.set("name", name)  # what the merge request widget lists
    case.set("file", spec)  # linked in the dialog, and what "Copy failed tests" copies


def _pytest_names(nodeid: str) -> tuple[str, str]:
    """The (classname, name) pytest's junitxml gives a node id: its `mangle_test_address`, which
    turns the path's slashes into dots and makes the last part the name."""
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = names[0].replace("/", ".").removesuffix(".py")
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]
