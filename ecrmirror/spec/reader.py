"""YAML with a file:line for every value: the node tree of a spec, read so that each error names its line."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ecrmirror.errors import SpecError
from ecrmirror.spec.variables import UnsetVariable, expand

try:  # libyaml is much faster; PyYAML's pure-Python loader gives the same nodes and marks.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

_STR_TAG = "tag:yaml.org,2002:str"


def nodes(text: str) -> yaml.Node | None:
    """The node tree of `text`, unchecked; yaml.YAMLError when it is not YAML."""
    return yaml.compose(text, Loader=_Loader)


def compose(text: str, shown: str) -> yaml.Node | None:
    """The node tree of `text`; SpecError for bad YAML, and for anchors and aliases."""
    try:
        root = nodes(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise SpecError(
            f"{shown}:{line}", f"invalid YAML: {exc.problem}", "fix the YAML syntax at that line"
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(shown, f"invalid YAML: {exc}") from None
    _reject_aliases(root, shown)
    return root


def _reject_aliases(root: yaml.Node | None, shown: str) -> None:
    """A spec with anchors and aliases (&a, *a) is refused: they hide what the file says, and a
    few lines of them expand to billions of values (the "billion laughs")."""
    alias = first_alias(root)
    if alias is not None:
        raise SpecError(
            f"{shown}:{alias.start_mark.line + 1}",
            "YAML anchors and aliases (&name, *name) are not allowed in a spec",
            "write the value out where it is used",
        )


def first_alias(root: yaml.Node | None) -> yaml.Node | None:
    """The first node of `root`'s tree met a second time (an alias of an anchor), or None. The
    tree is walked once per node, so an alias bomb costs no more than its text."""
    seen: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return node
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return None


class Reader:
    """Reads the nodes of one spec file: typed values with ${VAR} expanded, errors with file:line."""

    def __init__(self, path: Path, shown: str, environ: Mapping[str, str]) -> None:
        self.path = path
        self.shown = shown  # the file as messages name it
        self.environ = environ

    def where(self, node: yaml.Node | None) -> str:
        line = node.start_mark.line + 1 if node is not None else 1
        return f"{self.shown}:{line}"

    def fail(self, node: yaml.Node | None, problem: str, fix: str = "") -> SpecError:
        return SpecError(self.where(node), problem, fix)

    def mapping(
        self, node: yaml.Node | None, what: str, required: tuple[str, ...], optional: tuple[str, ...]
    ) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping", f"write {what} as `key: value` lines")
        fields: dict[str, yaml.Node] = {}
        allowed = required + optional
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key not in allowed:
                raise self.fail(
                    key_node,
                    f"unknown key {key!r} in {what}",
                    _did_you_mean(str(key), allowed),
                )
            if key in fields:
                raise self.fail(key_node, f"duplicate key {key!r} in {what}", "keep one of them")
            fields[key] = value_node
        for key in required:
            if key not in fields:
                raise self.fail(node, f"{what} has no {key!r}", f"add `{key}:` to {what}")
        return fields

    def string(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            raise self.fail(node, f"{what} must be a string")
        # The raw scalar text, so that `version: 1.10` stays "1.10" rather than the float 1.1.
        return self.expand(node, node.value)

    def boolean(self, node: yaml.Node, what: str) -> bool:
        text = self.string(node, what).strip().lower()
        if text in ("true", "yes", "on"):
            return True
        if text in ("false", "no", "off"):
            return False
        raise self.fail(node, f"{what} must be true or false, not {text!r}")

    def choice(self, node: yaml.Node, what: str, choices: tuple[str, ...]) -> str:
        value = self.string(node, what)
        if value not in choices:
            raise self.fail(node, f"{what} must be one of {', '.join(choices)}, not {value!r}")
        return value

    def expand(self, node: yaml.Node, text: str) -> str:
        try:
            return expand(text, self.environ)
        except UnsetVariable as unset:
            raise self.fail(
                node,
                f"environment variable {unset.name} is not set",
                f"export {unset.name}=..., or give a default: ${{{unset.name}:-value}}",
            ) from None

    def plain(self, node: yaml.Node) -> Any:
        """A YAML subtree as plain Python values, with ${VAR} expanded in every string."""
        if isinstance(node, yaml.MappingNode):
            return {self.string(k, "a key"): self.plain(v) for k, v in node.value}
        if isinstance(node, yaml.SequenceNode):
            return [self.plain(item) for item in node.value]
        if node.tag == _STR_TAG:
            return self.expand(node, node.value)
        return yaml.safe_load(node.value)  # an int, bool or null, as YAML resolved it


def _did_you_mean(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"did you mean {close[0]!r}? (allowed: {', '.join(allowed)})"
    return f"remove it (allowed: {', '.join(allowed)})"
