"""The fast index parser (yaml-rs) and PyYAML read repository indexes alike."""

from __future__ import annotations

import json

import pytest
import yaml

from ecrmirror.chart import normalize_created
from ecrmirror.errors import UpstreamError
from ecrmirror.sources import parse_index

pytest.importorskip("yaml_rs", reason="yaml-rs is a dependency of ecrmirror; without it PyYAML reads indexes")

INDEX = """\
apiVersion: v1
entries:
  gitlab:
  - apiVersion: v2
    appVersion: v16.1.1
    created: "2024-03-01T12:34:56.123456789Z"
    dependencies:
    - name: certmanager
      repository: https://charts.jetstack.io/
      version: 1.12.3
      condition: certmanager.install
    description: "GitLab is the most comprehensive AI-powered DevSecOps Platform. ünïcode ✓"
    digest: 0f0e1d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100
    keywords: [gitlab, devops]
    maintainers:
    - {name: GitLab Inc., email: support@gitlab.com}
    name: gitlab
    urls: [gitlab-7.1.1.tgz]
    version: 7.1.1
  - created: 2024-03-02T00:00:00Z
    digest: 1f0e1d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100
    name: gitlab
    urls: ["https://cdn.example.com/gitlab-7.2.0-rc.1.tgz?x=1"]
    version: "7.2.0-rc.1"
    deprecated: true
  tiny:
  - name: tiny
    version: 0.0.1+build.7
    digest: 2f0e1d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100
    urls: [t.tgz]
    created: ""
generated: "2024-03-02T00:00:00Z"
"""


def comparable(text: str, fast: bool) -> dict[str, dict[str, dict[str, object]]]:
    entries = parse_index("index.yaml", text.encode(), fast=fast).entries
    return {
        name: {
            version: {**entry, "created": normalize_created(entry.get("created"))}
            for version, entry in versions.items()
        }
        for name, versions in entries.items()
    }


@pytest.mark.parametrize("form", ["yaml", "json"])
def test_both_parsers_read_an_index_alike(form: str) -> None:
    text = INDEX if form == "yaml" else json.dumps(yaml.safe_load(INDEX), default=str)

    assert comparable(text, fast=True) == comparable(text, fast=False)
    assert set(comparable(text, fast=True)["gitlab"]) == {"7.1.1", "7.2.0-rc.1"}


def test_both_parsers_refuse_what_is_not_yaml() -> None:
    for fast in (True, False):
        with pytest.raises(UpstreamError, match="the index is not valid YAML or JSON"):
            parse_index("index.yaml", b"entries: [unclosed", fast=fast)
