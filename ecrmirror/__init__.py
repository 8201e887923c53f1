"""ecrmirror: mirror Helm charts into Amazon ECR, declared in YAML, run as pytest items."""

from __future__ import annotations

__version__ = "0.1.0"
