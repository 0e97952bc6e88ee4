"""Untrusted text made inert where it is printed: in Markdown and on a terminal.

Every string that came from a config, a database or a model is data. A migration's
description in a pull-request comment must not close the renderer's ``<details>``, start
a heading ("# Approved by security team ✅"), show an image, or mention a team; on a
terminal it must not set the window title, clear the screen or move the cursor. The
renderers pass every such string through one of these functions, so the mechanism is
one place, not a check per field:

* :func:`md_text` – inline Markdown text: Markdown's and HTML's characters escaped,
  ``@`` that could start a mention broken with a zero-width space, whitespace (newlines
  included) collapsed to single spaces, so a value never starts a line of its own.
* :func:`md_code` – an inline code span whose fence is longer than any backtick run in
  the data (the data cannot close it).
* :func:`md_fence` – a fenced block, same rule, control characters removed.
* :func:`terminal_text` – control characters and escape sequences (CSI, OSC, DCS, …, C0
  but tab and newline, DEL, C1, the bidirectional overrides) removed; newlines kept.
* :func:`one_line` – :func:`terminal_text` for a single-line field: newlines (and tabs)
  become spaces.
"""

from __future__ import annotations

import re

__all__ = ["md_code", "md_fence", "md_text", "one_line", "terminal_text"]

# 7-bit escape sequences (ECMA-48): CSI ESC [ params intermediates final; the string
# commands OSC, DCS, SOS, PM, APC up to their terminator (BEL, ESC \ or ST); the rest as
# ESC, intermediates, final. Their 8-bit forms (C1 introducers) alike. An unterminated
# string command loses only its introducer (the text after it stays visible: true output).
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]"
)
# what is left: C0 but tab and newline, DEL, C1, and the Unicode bidirectional overrides
# and isolates (they reorder what a reader sees: "Trojan Source")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SGR = re.compile(r"\x1b\[[0-9;]*m")
_NEWLINES = re.compile(r"\r\n|\r|\n")


def terminal_text(text: str, *, keep_colour: bool = False) -> str:
    """``text`` without control characters and escape sequences; newlines and tabs kept
    (``\\r`` becomes a newline: it would otherwise overwrite the line on screen).

    ``keep_colour`` keeps SGR sequences (``ESC [ … m``, colour and bold): for output the
    engine styled itself, whose data parts were cleaned before they were styled.
    """
    if text.isprintable():  # the common case: nothing to remove (newlines are not printable)
        return text
    text = _NEWLINES.sub("\n", text)
    if keep_colour:
        return "".join(_clean(part) if i % 2 == 0 else part for i, part in enumerate(_split_sgr(text)))
    return _clean(text)


def _split_sgr(text: str) -> list[str]:
    """``text`` split into [plain, sgr, plain, sgr, …, plain]."""
    out: list[str] = []
    pos = 0
    for m in _SGR.finditer(text):
        out += [text[pos:m.start()], m.group()]
        pos = m.end()
    out.append(text[pos:])
    return out


def _clean(text: str) -> str:
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def one_line(text: str) -> str:
    """A single-line field for a terminal: :func:`terminal_text`, newlines and tabs as spaces
    (a value cannot start a line of its own and pass for the engine's output)."""
    if text.isprintable():
        return text
    return _clean(_NEWLINES.sub(" ", text).replace("\t", " "))


# ------------------------------------------------------------------ markdown

# CommonMark's inline syntax, GitHub's table cells and strikethrough, and HTML: always
# escaped. "#" also starts GitHub's issue references ("#12"). "(" and ")" are left as they
# are: they only make a link or an image after "]" (escaped), so text stays readable.
_MD_SPECIAL = re.compile(r"(?<![0-9A-Za-z])@|[\\`*_\[\]#!|~<>&]")
_MD_REPLACE = {"<": "&lt;", ">": "&gt;", "&": "&amp;",
               # a mention needs "@" at a word's start; a zero-width space after it keeps the
               # text as it reads and is what GitHub renders as plain text (no notification)
               "@": "@&#8203;"}
# block syntax only counts at a line's start (or a list item's), where a value may be
# placed: a list item ("- ", "+ ", "1. ", "1) "), a thematic break or setext underline
# ("---", "==="); a heading, quote or "*" list is escaped above anyway
_MD_LINE_START = re.compile(r"^(?:[-+=](?=[\s=+-]|$)|\d{1,9}(?=[.)](?:\s|$)))")


def _md_escape(match: re.Match[str]) -> str:
    ch = match.group()
    return _MD_REPLACE.get(ch) or "\\" + ch


def md_text(text: object) -> str:
    """``text`` as inline Markdown that renders as exactly that text and nothing else.

    Whitespace runs (newlines included) become one space, so the value stays on the line
    it was put on; control characters are removed.
    """
    s = " ".join(one_line(str(text)).split())
    s = _MD_SPECIAL.sub(_md_escape, s)
    m = _MD_LINE_START.match(s)
    if m:  # "1. x" → "1\. x", "- x" → "\- x"
        s = s[: m.end()] + "\\" + s[m.end():] if s[0].isdigit() else "\\" + s
    return s


def md_code(text: object, *, table: bool = False) -> str:
    """``text`` as an inline code span: one line, fenced by more backticks than its longest
    run (the data cannot close the span). ``table`` escapes ``|`` (GitHub splits table cells
    at it even inside a code span)."""
    s = " ".join(one_line(str(text)).split()) or " "
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    if s.startswith("`") or s.endswith("`"):
        s = f" {s} "
    if table:
        s = s.replace("|", "\\|")
    return f"{fence}{s}{fence}"


def md_fence(body: str, lang: str = "") -> list[str]:
    """A fenced code block (its lines) whose fence is longer than any backtick run in
    ``body``: nothing in it can close the block. Control characters are removed."""
    body = terminal_text(body).strip("\n")
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{lang}", body, fence]
