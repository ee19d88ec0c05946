"""Render a reply's sentences as one Markdown document, each sentence's characters tinted and tagged with its id.

Markdown is rendered for the whole reply (a code block spans many sentences), so sentence boundaries are
carried through the renderer as private-use marker characters: one before each sentence's first visible
character, found again in the rendered document, used to format the ranges between them, then deleted.
"""
import re

from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor, QTextDocument, QTextFormat

from ui import theme

SENTENCE_ID = QTextFormat.UserProperty + 1  # char format property: global sentence index
_MARK = 0xE000  # Unicode private use area: never in model output we render
_FENCE = re.compile(r"\s{0,3}(```|~~~)")
# Lines where a marker would change the Markdown structure: fences, blank lines, rules, setext and table rules.
_STRUCTURAL = re.compile(_FENCE.pattern + r"|\s*$|\s{0,3}(=+|-+|(\*\s*){3,}|(_\s*){3,})\s*$"
                         r"|\s*\|?(\s*:?-+:?\s*\|)+\s*(:?-+:?)?\s*$")
# Block syntax a marker must follow, not precede: headings, quotes, list bullets, table pipes.
_PREFIX = re.compile(r"(\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+|\d{1,9}[.)]\s+|\|\s*))*")


def _marker_offset(text: str, start: int) -> int:
    """Where the marker for a sentence starting at `start` can go without breaking block syntax."""
    if start > 0 and text[start - 1] != "\n":
        return start  # mid-line: inline text
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if not _STRUCTURAL.match(text, start, end):
            return _PREFIX.match(text, start, end).end()
        start = end + 1
    return len(text)


def _hard_breaks(text: str) -> str:
    """A line break inside a paragraph kept as one (two trailing spaces): Markdown would join the lines with a
    space, and a reply's lines are often answers of their own (a two-task prompt is answered in two lines).
    Code fences are left as they are."""
    lines, fenced = text.split("\n"), False
    for i, line in enumerate(lines[:-1]):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and line.strip() and lines[i + 1].strip() and not _FENCE.match(lines[i + 1]):
            lines[i] = line + "  "
    return "\n".join(lines)


def render(doc: QTextDocument, sentences: list[tuple[str, QColor | None, int]]):
    """Replace `doc` with the Markdown of the sentences: (text, background or None, sentence id)."""
    text = "".join(s for s, _, _ in sentences)
    offsets, start = [], 0
    for s, _, _ in sentences:
        offsets.append(_marker_offset(text, start))
        start += len(s)
    pieces, prev = [], 0
    for i, off in enumerate(offsets):
        pieces += [text[prev:off], chr(_MARK + i)]
        prev = off
    pieces.append(text[prev:])
    doc.setMarkdown(_hard_breaks("".join(pieces)))
    cursor = QTextCursor(doc)
    cursor.beginEditBlock()  # one relayout at the end instead of one per change
    block = doc.begin()
    while block.isValid():  # Qt renders code blocks in a fixed-pitch font only; give them a background too
        if block.blockFormat().hasProperty(QTextFormat.BlockCodeLanguage):
            fmt = block.blockFormat()
            fmt.setBackground(QColor(theme.current().code_back))
            cursor.setPosition(block.position())
            cursor.setBlockFormat(fmt)
        block = block.next()

    found = []  # (position in doc, sentence number): markers the renderer dropped (e.g. inside a link URL) are skipped
    start = 0
    for i in range(len(sentences)):
        c = doc.find(chr(_MARK + i), start)  # markers come out in order: search on from the previous one
        if not c.isNull():
            found.append((c.selectionStart(), i))
            start = c.selectionEnd()
    end = doc.characterCount() - 1
    for k, (pos, i) in enumerate(found):
        _, color, sid = sentences[i]
        fmt = QTextCharFormat()
        fmt.setProperty(SENTENCE_ID, sid)
        if color is not None:
            fmt.setBackground(color)
        cursor.setPosition(pos)
        cursor.setPosition(found[k + 1][0] if k + 1 < len(found) else end, QTextCursor.KeepAnchor)
        cursor.mergeCharFormat(fmt)
    for pos, _ in reversed(found):  # back to front, so earlier positions stay valid
        cursor.setPosition(pos)
        cursor.setPosition(pos + 1, QTextCursor.KeepAnchor)
        cursor.removeSelectedText()
    cursor.endEditBlock()


def sentence_at(doc: QTextDocument, position: int) -> int | None:
    """The sentence id of the character at `position`, or None outside any sentence."""
    if position < 0 or position >= doc.characterCount() - 1:
        return None
    cursor = QTextCursor(doc)
    cursor.setPosition(position + 1)  # charFormat() describes the character before the cursor
    value = cursor.charFormat().property(SENTENCE_ID)
    return int(value) if value is not None else None
