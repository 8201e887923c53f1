"""Upstream text is data, never markup: made safe for where it goes (the terminal, Markdown, XML).

Reason phrases, versions, media types and error bodies come from servers nobody vetted. Written
as they are, an escape sequence rewrites the terminal (or a CI log viewer), a Markdown link or
`<img>` turns the merge-request plan into a page the upstream wrote, and a lone surrogate (a JSON
`"\\udc00"`) makes UTF-8 writing fail. Each output applies its function once, where it writes.
"""

from __future__ import annotations

import re

# C0 and C1 controls but newline and tab, DEL, lone surrogates, and the invisible characters that
# reorder or hide text on screen ("Trojan Source": bidi overrides and isolates, zero-width marks).
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
# CommonMark lets a backslash escape any ASCII punctuation: these are the ones that open a link
# or an image (`[`), HTML (`<`, and `&` for entities), code, emphasis and table cells, mid-line.
_MARKDOWN = re.compile(r"([\\`*\[\]<>|&])")
# GitLab's Markdown turns bare URLs and www. names into links (the autolink extension).
_AUTOLINK = re.compile(r"(?i)\b(https?|ftp)(:)(//)|\b(www)(\.)")


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: str) -> str:
    """`text` with every control, invisible or unencodable character written as a visible escape
    (`\\x1b`, `\\u202e`); newlines and tabs stay."""
    return _UNSAFE.sub(_visible, text)


def for_markdown(text: str) -> str:
    """`text` as Markdown that renders it as written: no link, autolink, image, HTML, code span,
    `*` emphasis or table cell comes of it. One line: newlines become spaces."""
    text = for_terminal(text).replace("\r", " ").replace("\n", " ")
    text = _MARKDOWN.sub(r"\\\1", text)
    # `&#58;` renders as ':' but is not the text the autolink extension looks for.
    return _AUTOLINK.sub(lambda m: f"{m[1]}&#58;{m[3]}" if m[1] else f"{m[4]}&#46;", text)
