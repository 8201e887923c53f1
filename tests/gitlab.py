"""GitLab's reading of a JUnit file, for tests: only what its merge request widget shows.

GitLab (lib/gitlab/ci/parsers/test/junit.rb) reads only a testcase's classname, name, file and
time, and the body of its failure or error (the message attribute is dropped when there is a
body). `gitlab_rows` reads the file the same way, and nothing else.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path


def gitlab_rows(path: Path) -> dict[str, dict[str, str]]:
    """name -> what GitLab keeps of the testcase: classname, file, time, status and body."""
    rows: dict[str, dict[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        row = {key: case.get(key, "") for key in ("classname", "file", "time")}
        row["status"], row["body"] = "success", ""
        for status in ("failure", "error", "skipped"):
            found = case.find(status)
            if found is not None:
                row["status"] = {"failure": "failed", "error": "error", "skipped": "skipped"}[status]
                row["body"] = found.text or found.get("message", "")
                break
        rows[case.get("name", "")] = row
    return rows
