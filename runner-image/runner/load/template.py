"""`{{name}}` substitution for the load engine's hot path.

Only variable substitution: a load request renders many thousands of times a second, so a
template is split once into literal text and variable names, and rendering is a join. An
unknown variable renders as the empty string, as in the API-test engine. (Helpers such as
`{{uuid}}` belong to the API-test engine's templating; the load engine has none yet.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\}\}")


class Template:
    """A string with `{{name}}` placeholders, split once."""

    __slots__ = ("text", "parts", "names")

    def __init__(self, text: str):
        self.text = text
        pieces = _VARIABLE.split(text)
        # pieces alternate literal, name, literal, ...; the names sit at the odd positions
        self.parts = tuple(pieces)
        self.names = tuple(pieces[1::2])

    @property
    def is_static(self) -> bool:
        return not self.names

    def render(self, variables: Mapping[str, str]) -> str:
        if not self.names:
            return self.text
        parts = self.parts
        out = [parts[0]]
        get = variables.get
        for i in range(1, len(parts), 2):
            out.append(get(parts[i], ""))
            out.append(parts[i + 1])
        return "".join(out)

    def static_prefix(self) -> str:
        """The text before the first placeholder."""
        return self.parts[0]

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def has_placeholders(text: str | None) -> bool:
    return bool(text) and _VARIABLE.search(text) is not None
