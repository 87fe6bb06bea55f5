"""A griffe extension for the API reference: convlens's docstrings are written for ``help()``
and doctest (reST-flavoured inline markup, bare ``>>>`` examples); this turns them into the
Markdown that mkdocstrings renders, without touching the source.

- ``>>>`` examples (with their ``...`` continuation and expected-output lines) become fenced
  ``pycon`` blocks (bare, Markdown would read ``>`` as a quote);
- double-backtick literals become single-backtick code;
- Sphinx roles (``:func:`x```, ``:class:`~a.b.C```, ``:mod:`...```) become inline code of the
  name (the last component for ``~``).

Loaded by mkdocs.yml (``extensions: [docs/griffe_rst.py]``); :func:`to_markdown` is tested in
tests/test_docs.py.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const|ref|term):`([^`]+)`")
_LITERAL = re.compile(r"``((?:(?!\n\s*\n).)+?)``", re.S)  # may wrap, not across paragraphs
_FENCE = re.compile(r"^\s*(```|~~~)")


def _role_text(match: re.Match[str]) -> str:
    text = match.group(1).strip()
    label = re.match(r"^(.*?)\s*<([^>]+)>$", text)
    if label:
        return f"`{label.group(1)}`"
    if text.startswith("~"):
        text = text[1:].rsplit(".", 1)[-1]
    return f"`{text}`"


def _inline(line: str) -> str:
    line = _ROLE.sub(_role_text, line)
    return _LITERAL.sub(lambda m: f"`{m.group(1)}`", line)


def to_markdown(docstring: str) -> str:
    """The Markdown form of one (dedented) docstring; idempotent.

    >>> to_markdown("Use :func:`~convlens.matrix.conv_matrix` on ``x``.")
    'Use `conv_matrix` on `x`.'
    >>> to_markdown("Example:\\n\\n>>> 1 + 1\\n2").splitlines()[2:]
    ['```pycon', '>>> 1 + 1', '2', '```']
    """
    out: list[str] = []
    prose: list[str] = []  # plain lines since the last fence or example: inline markup may wrap

    def flush() -> None:
        if prose:
            out.extend(_inline("\n".join(prose)).split("\n"))
            prose.clear()

    lines = docstring.splitlines()
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line) or in_fence:
            flush()
            if _FENCE.match(line):
                in_fence = not in_fence
            out.append(line)
            i += 1
            continue
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            flush()
            indent = line[: len(line) - len(stripped)]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
                i += 1
            if out and out[-1].strip():
                out.append("")
            out.extend([f"{indent}```pycon", *(indent + b for b in block), f"{indent}```"])
            continue
        prose.append(line)
        i += 1
    flush()
    return "\n".join(out)


class ReSTToMarkdown(griffe.Extension):
    """Rewrites every loaded object's docstring with :func:`to_markdown`."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
