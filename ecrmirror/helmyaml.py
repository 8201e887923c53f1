"""YAML as helm reads it (go-yaml v2 through sigs.k8s.io/yaml), and Chart.yaml as helm's Metadata.

Every YAML file read from an archive, and an index when yaml-rs is missing, goes through
`load_helm_yaml`: go-yaml's alias and nesting limits and its scalar rules, so that a hostile
document is refused as helm refuses it and a field reads as helm reads it. `decode_metadata` fills
helm's chart.Metadata from a decoded Chart.yaml or requirements.yaml, as encoding/json does.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from typing import Any

import yaml

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

# -- YAML as helm reads it -------------------------------------------------------------------------
# helm reads a chart's YAML with sigs.k8s.io/yaml: its fork of go-yaml v2 (goyaml.v2) decodes the
# document, the result goes through JSON, and encoding/json fills helm's structs. PyYAML differs
# in ways a hostile archive can use: it shares aliases instead of expanding them (so a billion-laughs
# Chart.yaml loads, then explodes in whatever walks it), its pure-Python composer recurses per
# nesting level, and it resolves some scalars otherwise (`y`, `1e3`, `1:30`). So every YAML file
# read from an archive goes through load_helm_yaml, which follows go-yaml v2.

# Nesting: helm's parser stops at 10000 levels ("exceeded max depth"); PyYAML's pure-Python composer
# and json.dumps recurse per level, so ecrmirror stops well before. No chart nests this deep.
MAX_YAML_DEPTH = 256
_TOO_DEEP = (
    f"nests more than {MAX_YAML_DEPTH} levels deep, which no chart or index needs; ecrmirror stops "
    "there (helm's parser at 10000)"
)

# go-yaml v2 decode.go, allowedAliasRatio: once more than 100 of more than 1000 decoded values come
# from expanding aliases, their share may be at most 99% up to 400,000 values, scaling down to 10%
# at 4,000,000.
_ALIAS_RATIO_RANGE_LOW = 400_000
_ALIAS_RATIO_RANGE_HIGH = 4_000_000

_TAG = "tag:yaml.org,2002:"
# go-yaml v2 resolve.go, resolveMapList: the plain scalars it resolves by their text.
_GO_BOOLS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_GO_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_GO_FLOAT_WORDS = {
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
# strconv.ParseInt(s, 0, 64) after go-yaml removed every "_": Go's base prefixes, "0" for octal.
_GO_INT = re.compile(r"([-+]?)(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|0[0-7]+|[1-9][0-9]*|0)")
_GO_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")  # yamlStyleFloat
_GO_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")  # strconv.ParseFloat, for a leading "."


def _go_int(text: str) -> int | None:
    """A plain scalar as go-yaml v2 reads an integer (ParseInt, then ParseUint), or None."""
    match = _GO_INT.fullmatch(text.replace("_", ""))
    if match is None:
        return None
    sign, digits = match.groups()
    if digits[:2].lower() in ("0x", "0b", "0o"):
        base, digits = {"x": 16, "b": 2, "o": 8}[digits[1].lower()], digits[2:]
    else:
        base = 8 if len(digits) > 1 and digits[0] == "0" else 10
    value = int(digits, base) * (-1 if sign == "-" else 1)
    if -(2**63) <= value < 2**63 or (sign == "" and 0 <= value < 2**64):
        return value
    return None


def _go_float(text: str) -> float | None:
    """A plain scalar as go-yaml v2 reads a float, or None (an out-of-range float is a string)."""
    if text in _GO_FLOAT_WORDS:
        return _GO_FLOAT_WORDS[text]
    plain = text if text.startswith(".") else text.replace("_", "")
    pattern = _GO_DOT_FLOAT if text.startswith(".") else _GO_YAML_FLOAT
    if pattern.fullmatch(plain) is None:
        return None
    value = float(plain)
    return None if math.isinf(value) else value


def _go_plain_tag(text: str) -> str:
    """The tag go-yaml v2 gives a plain scalar (resolve.go, resolve), in PyYAML's terms."""
    if text in _GO_BOOLS:
        return _TAG + "bool"
    if text in _GO_NULLS:
        return _TAG + "null"
    if text == "<<":
        return _TAG + "merge"
    if text in _GO_FLOAT_WORDS:
        return _TAG + "float"
    if text[0] in "+-0123456789":
        if _go_int(text) is not None:
            return _TAG + "int"
        if _go_float(text) is not None:
            return _TAG + "float"
    elif text[0] == "." and _go_float(text) is not None:
        return _TAG + "float"
    return _TAG + "str"  # timestamps too: decoded into interface{}, go-yaml v2 keeps their text


class _HelmYamlLoader(_BaseLoader):
    """PyYAML's safe loader, resolving plain scalars as go-yaml v2 does."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return _go_plain_tag(value)
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


def _construct_scalar(parse: Callable[[str], Any]) -> Callable[[Any, Any], Any]:
    def construct(loader: Any, node: Any) -> Any:
        value = parse(loader.construct_scalar(node))
        if value is None:
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a {node.tag.rpartition(':')[2]}", node.start_mark
            )
        return value

    return construct


def _construct_untagged(loader: Any, node: Any) -> Any:
    # go-yaml v2 ignores tags it does not know: a scalar stays its text, a collection what it is.
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)


for _tag, _constructor in (
    ("bool", _construct_scalar(_GO_BOOLS.get)),
    ("int", _construct_scalar(_go_int)),
    ("float", _construct_scalar(_go_float)),
    ("timestamp", _construct_untagged),
    ("binary", _construct_untagged),
    ("set", _construct_untagged),
    ("omap", _construct_untagged),
    ("pairs", _construct_untagged),
):
    _HelmYamlLoader.add_constructor(_TAG + _tag, _constructor)
_HelmYamlLoader.add_constructor(None, _construct_untagged)


class YamlRefused(ValueError):
    """A YAML document helm would refuse (or ecrmirror stops reading): the message says why."""


class _Open:
    """A collection being read: what decoding it once costs go-yaml, and where its keys are."""

    __slots__ = ("anchor", "cost", "expects_key", "is_mapping", "merge_next")

    def __init__(self, anchor: str | None, cost: int, is_mapping: bool) -> None:
        self.anchor, self.cost, self.is_mapping = anchor, cost, is_mapping
        self.expects_key = is_mapping
        self.merge_next = False


def _check_as_go_yaml(data: bytes) -> None:
    """Refuse what go-yaml v2 would refuse to decode, before PyYAML builds anything.

    Walks the first document's events (as go-yaml, which ignores later ones) counting go-yaml's
    decode steps: one per node, and for each alias the steps of decoding its anchor's node again,
    which all count as alias-driven (decode.go: unmarshal, alias). The steps an anchor costs are
    known once its node ends, so a billion-laughs document is refused after a few hundred events,
    without expanding anything. Within one alias's expansion the share of alias-driven steps only
    grows and the allowed ratio only shrinks, so checking at its end is checking at every step.
    """
    decoded = aliased = depth = 0
    costs: dict[str, int | None] = {}  # anchor -> the steps one alias to it costs (None: still open)
    stack: list[_Open] = []

    def step(count: int, from_aliases: int = 0) -> None:
        nonlocal decoded, aliased
        decoded, aliased = decoded + count, aliased + from_aliases
        if aliased > 100 and decoded > 1000:
            if decoded <= _ALIAS_RATIO_RANGE_LOW:
                allowed = 0.99
            elif decoded >= _ALIAS_RATIO_RANGE_HIGH:
                allowed = 0.10
            else:
                allowed = 0.99 - 0.89 * (decoded - _ALIAS_RATIO_RANGE_LOW) / (
                    _ALIAS_RATIO_RANGE_HIGH - _ALIAS_RATIO_RANGE_LOW
                )
            if aliased / decoded > allowed:
                raise YamlRefused(
                    "uses YAML aliases excessively (go-yaml: document contains excessive aliasing), "
                    "as helm refuses it"
                )

    loader = _HelmYamlLoader(data)
    try:
        while _next_event(loader):
            event = loader.get_event()
            if isinstance(event, yaml.DocumentStartEvent):
                step(1)
                continue
            if isinstance(event, yaml.DocumentEndEvent):
                return
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                done = stack.pop()
                depth -= 1
                if done.anchor is not None:
                    costs[done.anchor] = done.cost
                if stack:
                    stack[-1].cost += done.cost
                continue
            if not isinstance(event, yaml.NodeEvent):
                continue
            parent = stack[-1] if stack else None
            merge_key = merge_value = False
            if parent is not None and parent.is_mapping:
                if parent.expects_key:
                    # go-yaml v2 isMerge: a plain or !!merge-tagged "<<" key is not decoded itself
                    merge_key = (
                        isinstance(event, yaml.ScalarEvent)
                        and event.value == "<<"
                        and (event.tag == _TAG + "merge" or (event.tag is None and event.implicit[0]))
                    )
                    parent.merge_next = merge_key
                else:
                    merge_value, parent.merge_next = parent.merge_next, False
                parent.expects_key = not parent.expects_key
            if isinstance(event, yaml.AliasEvent):
                anchor = str(event.anchor)
                if anchor not in costs:
                    raise YamlRefused(f"uses the alias *{anchor} before any &{anchor}")
                replay = costs[anchor]
                if replay is None:
                    raise YamlRefused(f"has an anchor &{anchor} that contains itself, which helm refuses")
                step(1)
                step(replay, replay)
                if parent is not None:
                    parent.cost += 1 + replay
                continue
            cost = 0 if merge_key else 1
            if isinstance(event, yaml.ScalarEvent):
                step(cost)
                if event.anchor is not None:
                    costs[event.anchor] = cost
                if parent is not None:
                    parent.cost += cost
                continue
            # a collection: a merge key's list of maps is not decoded itself (decode.go, merge)
            is_mapping = isinstance(event, yaml.MappingStartEvent)
            cost = 0 if merge_value and not is_mapping else 1
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise YamlRefused(_TOO_DEEP)
            step(cost)
            if event.anchor is not None:
                costs[event.anchor] = None
            stack.append(_Open(event.anchor, cost, is_mapping))
    finally:
        loader.dispose()


def _next_event(loader: Any) -> bool:
    try:
        return bool(loader.check_event())
    except yaml.MarkedYAMLError as exc:  # libyaml stops nesting at 1000 levels, before our check
        if exc.problem == "exceeded maximum nesting depth":
            raise YamlRefused(_TOO_DEEP) from None
        raise


def load_helm_yaml(data: bytes) -> Any:
    """The first YAML document of `data`, read as helm reads it (go-yaml v2 rules).

    Raises YamlRefused for what helm would refuse (or ecrmirror stops reading) and yaml.YAMLError
    for what is not YAML. Aliases are checked by go-yaml's rule before anything is built."""
    _check_as_go_yaml(data)
    loader = _HelmYamlLoader(data)
    try:
        if not loader.check_node():
            return None
        node = loader.get_node()  # the first document only, as go-yaml reads it
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


# -- Chart.yaml as helm loads it --------------------------------------------------------------------
# helm's chart.Metadata (pkg/chart/metadata.go) and the types encoding/json fills: "string" and
# "bool" fields, [type] a slice, ("map", type) a map, a dict a struct (behind a pointer).
_STRING, _BOOL, _ANY = "string", "bool", "any"
_MAINTAINER: dict[str, Any] = {"name": _STRING, "email": _STRING, "url": _STRING}
_DEPENDENCY: dict[str, Any] = {
    "name": _STRING,
    "version": _STRING,
    "repository": _STRING,
    "condition": _STRING,
    "tags": [_STRING],
    "enabled": _BOOL,
    "import-values": [_ANY],
    "alias": _STRING,
}
_METADATA: dict[str, Any] = {
    "name": _STRING,
    "home": _STRING,
    "sources": [_STRING],
    "version": _STRING,
    "description": _STRING,
    "keywords": [_STRING],
    "maintainers": [_MAINTAINER],
    "icon": _STRING,
    "apiVersion": _STRING,
    "condition": _STRING,
    "tags": _STRING,
    "appVersion": _STRING,
    "deprecated": _BOOL,
    "annotations": ("map", _STRING),
    "kubeVersion": _STRING,
    "dependencies": [_DEPENDENCY],
    "type": _STRING,
}
# encoding/json matches a key to a field case-insensitively by Unicode simple folding, in which
# U+017F (a long s) is an s and U+212A (the Kelvin sign) a k: "ver\u017fion: 9.9.9" sets the version.
_FOLD = {"\u017f": "S", "\u212a": "K"}


def _fold(key: str) -> str:
    return "".join(c.upper() if c < "\x80" else _FOLD.get(c, c) for c in key)


class NotReadable(Exception):
    def __init__(self, path: str, value: Any, expected: str) -> None:
        kind = {dict: "a mapping", list: "a list", bool: "a boolean", str: "a string"}.get(type(value))
        super().__init__(f"{path or 'the document'} is {kind or repr(value)}, where helm reads {expected}")


def _go_float32(value: float) -> str:
    """strconv.FormatFloat(value, 'g', -1, 32): how sigs.k8s.io/yaml turns a YAML float into a string."""
    try:
        single = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        single = math.copysign(math.inf, value)
    if math.isnan(single):
        return "NaN"
    if math.isinf(single):
        return "+Inf" if single > 0 else "-Inf"
    if single == 0:
        return "-0" if math.copysign(1, single) < 0 else "0"
    for precision in range(9):  # the shortest digits that read back as the same float32
        text = f"{abs(single):.{precision}e}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == abs(single):
            break
    mantissa, _, exponent_text = text.partition("e")
    digits = mantissa.replace(".", "").rstrip("0") or "0"
    exponent = int(exponent_text)
    sign = "-" if single < 0 else ""
    if exponent < -4 or exponent >= 6:  # %e, as Go's shortest %g decides
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{head}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    point = exponent + 1  # digits before the decimal point
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    whole = digits[:point].ljust(point, "0")
    return f"{sign}{whole}" + (f".{digits[point:]}" if len(digits) > point else "")


def _go_key(key: Any, path: str) -> str:
    """A YAML mapping key as sigs.k8s.io/yaml makes it a JSON key."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        return {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(_go_float32(key), _go_float32(key))
    raise NotReadable(path, key, "a mapping key")


def _zero(schema: Any) -> Any:
    return "" if schema == _STRING else False if schema == _BOOL else None


def _jsonable(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        return {_go_key(k, path): _jsonable(v, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v, path) for v in value]
    return value


def _decode_into(current: Any, value: Any, schema: Any, path: str) -> Any:
    """`value` decoded into `current` (a Go value of type `schema`) as encoding/json does.

    json decodes into what is there: a struct keeps the fields the document does not set, a
    list's elements are decoded into the elements already there (so Chart.yaml's dependencies and
    requirements.yaml's merge field by field), a map keeps its other keys. null empties a list,
    map or pointer and leaves a string or a boolean as it was. sigs.k8s.io/yaml makes a number
    or a boolean read into a string field that string."""
    if value is None:
        return current if schema in (_STRING, _BOOL) else None
    if schema == _ANY:
        return _jsonable(value, path)
    if schema == _STRING:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return _go_float32(value)
        if isinstance(value, (str, int)):
            return str(value)
        raise NotReadable(path, value, "a string")
    if schema == _BOOL:
        if not isinstance(value, bool):
            raise NotReadable(path, value, "true or false")
        return value
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise NotReadable(path, value, "a list")
        old = current if isinstance(current, list) else []
        return [
            _decode_into(old[i] if i < len(old) else _zero(schema[0]), item, schema[0], f"{path}[{i}]")
            for i, item in enumerate(value)
        ]
    if not isinstance(value, dict):
        raise NotReadable(path, value, "a mapping")
    result = dict(current) if isinstance(current, dict) else {}
    if isinstance(schema, tuple):  # a map: each value decoded afresh
        for key, item in value.items():
            name = _go_key(key, path)
            result[name] = _decode_into(_zero(schema[1]), item, schema[1], f"{path}.{name}")
        return result
    # A struct: JSON objects come out of Go's json.Marshal with sorted keys, and each key sets
    # the field it folds to, the later one winning.
    fields = {_fold(field): field for field in schema}
    for key, item in sorted((_go_key(k, path), v) for k, v in value.items()):
        field = fields.get(_fold(key))
        if field is not None:
            where = f"{path}.{field}" if path else field
            result[field] = _decode_into(result.get(field, _zero(schema[field])), item, schema[field], where)
    return result


def decode_metadata(current: dict[str, Any], document: Any) -> dict[str, Any]:
    """`document` (a decoded Chart.yaml or requirements.yaml) read into `current`, as encoding/json
    fills helm's chart.Metadata; NotReadable when helm could not load it."""
    decoded: dict[str, Any] = _decode_into(current, document, _METADATA, "")
    return decoded
