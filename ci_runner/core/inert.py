"""Untrusted text made inert in GitHub-flavoured Markdown.

An experiment file, a model's output or a job's log can put anything into a report, a
PR body or a PR comment. Rendered raw, ``<!--`` hides the rest of the page, ``<img
src=…>`` loads a remote image, ``@someone`` pings a person, ``owner/repo#1`` writes into
another issue's timeline, and a line of backticks closes our code block early. Every such
text goes through one of these functions first; our own markup stays outside them.

Pure functions of their argument, so a report stays byte-identical for the same ledger.
"""

from __future__ import annotations

import re
from urllib.parse import quote as _percent_encode

# U+2060 WORD JOINER: invisible, and GitHub no longer reads ``@name`` or ``#12`` as a
# mention or a reference when it sits between the sign and the name.
JOINER = "\u2060"
_MENTION = re.compile(r"(?<![\w.+-])@(?=[A-Za-z0-9])")  # not an e-mail address
_REFERENCE = re.compile(r"#(?=\d)")
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`\[\]])")  # code spans, links, images
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# What a link target keeps as is: RFC 3986's characters less the parentheses, which
# would end the Markdown link early; spaces, quotes, ``<>``, ``|`` and backticks are
# percent-encoded, so the target cannot leave the link or split a table row.
_URL_SAFE = ":/?#[]@!$&'*+,;=%-._~"


def unlinked(text: str) -> str:
    """``text`` with mentions and issue references that no longer notify anyone."""
    text = _MENTION.sub("@" + JOINER, text)
    return _REFERENCE.sub("#" + JOINER, text)


def prose(text: str) -> str:
    """One line of plain text, shown as written: no HTML, no markup, no mentions.

    Line breaks become spaces, so the text cannot start a heading, a list, a table row
    or a fence of its own. Pipes are left to the table that holds the text (its cells
    escape them), where they alone would matter.
    """
    line = " ".join(text.split())
    line = "".join(_HTML.get(ch, ch) for ch in line)
    return unlinked(_MARKDOWN_PUNCTUATION.sub(r"\\\1", line))


def code(text: str) -> str:
    """An inline code span that holds ``text`` whatever backticks it carries.

    Inside a code span GitHub renders no HTML and no mentions; the fence is longer than
    any run of backticks in ``text``, so the text cannot close it.
    """
    line = " ".join(text.splitlines()) if "\n" in text or "\r" in text else text
    longest = max((len(run) for run in re.findall(r"`+", line)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if longest or line.startswith(" ") or line.endswith(" ") else ""
    return f"{fence}{pad}{line}{pad}{fence}"


def block(text: str, info: str = "text") -> str:
    """A fenced code block that ``text`` cannot close: the fence outgrows any line of
    backticks or tildes in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text.rstrip()}\n{fence}"


def link(label: str, target: str) -> str:
    """``[label](target)`` whose label is ``prose`` and whose target stays a target."""
    return f"[{prose(label)}]({_percent_encode(target, safe=_URL_SAFE)})"


def quote(text: str) -> str:
    """A block quote of ``text``, line by line, each line as ``prose``."""
    lines = text.strip().splitlines() or [""]
    return "\n".join(f"> {prose(line)}" if line.strip() else ">" for line in lines)
