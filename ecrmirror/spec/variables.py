"""`${VAR}` and `${VAR:-default}` in spec values, from the environment; `$$` is a literal `$`."""

from __future__ import annotations

import re
from collections.abc import Mapping

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})")


class UnsetVariable(LookupError):
    """`${NAME}` names a variable that is not set (or empty, where a default is given)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def expand(text: str, environ: Mapping[str, str]) -> str:
    """`text` with every variable replaced; an empty value counts as unset where a default is given."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group("name")
        if name is None:  # `$$` is a literal dollar sign
            return "$"
        value = environ.get(name)
        default = match.group("default")
        if value is None or (value == "" and default is not None):
            if default is not None:
                return default
            raise UnsetVariable(name)
        return value

    return _VARIABLE.sub(substitute, text)
