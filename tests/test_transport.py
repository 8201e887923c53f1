"""The session's environment settings (proxies, CA bundle) are what requests itself would use."""

from __future__ import annotations

import pytest
import requests

from ecrmirror.transport import new_session

URLS = [
    "https://charts.example.com/index.yaml",
    "http://charts.example.com:8080/a/b.tgz",
    "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/x/blobs/uploads/",
    "http://127.0.0.1:5000/v2/",
    "https://internal.corp/charts/index.yaml",
]

VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
ENVIRONMENTS = [
    {},
    {"HTTPS_PROXY": "http://proxy.corp:3128", "HTTP_PROXY": "http://proxy.corp:3128"},
    {"https_proxy": "http://proxy.corp:3128", "no_proxy": "127.0.0.1,.corp"},
    {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "*"},
    {"ALL_PROXY": "socks5://proxy.corp:1080", "NO_PROXY": "charts.example.com"},
    {"REQUESTS_CA_BUNDLE": "/etc/corp-ca.pem"},
    {"CURL_CA_BUNDLE": "/etc/curl-ca.pem", "HTTP_PROXY": "http://proxy.corp:3128"},
]


@pytest.mark.parametrize("environment", ENVIRONMENTS, ids=lambda e: ",".join(e) or "none")
def test_environment_settings_match_requests(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    ours, theirs = new_session(), requests.Session()
    for url in URLS * 2:  # the second round is answered from the session's memory
        for verify in (None, True, False, "/explicit/ca.pem"):
            assert ours.merge_environment_settings(url, {}, None, verify, None) == (
                theirs.merge_environment_settings(url, {}, None, verify, None)
            ), (url, verify)
