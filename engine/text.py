"""Streaming text for the decode loop: token ids -> text -> sentence ends.

Per new token the loop calls `Detokenizer.push`, feeds the text to `SentenceSplitter.feed`, and
re-routes as soon as it reports an end. `split_sentences` applies the same rules to a finished text.
"""
import re

_CONTEXT = 4  # prompt tokens kept as decode context: the first new token then gets its leading space right


class Detokenizer:
    """Incremental detokenization for a Hugging Face fast tokenizer, O(1) work per token.

    Decodes only a window: the tokens returned last time (context) + those not returned yet; the new text is
    the window's text minus the context's (vLLM's / TGI's prefix and read offsets), so tokenizers that drop
    a leading "▁" still agree with one full decode. Holds back text that ends in "\\ufffd" (an unfinished
    UTF-8 character) or in a byte-fallback token `<0xNN>` (the decoder replaces a whole invalid run of them).
    Special tokens are skipped; pushes + flush concatenate to `tokenizer.decode(ids, skip_special_tokens=True)`.
    """

    def __init__(self, tokenizer, prefix_ids=()):
        self._tokenizer = tokenizer
        self._special = {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        self._ids = [int(i) for i in prefix_ids if int(i) not in self._special][-_CONTEXT:]  # the window
        self._read = len(self._ids)  # window[:_read] is the context, window[_read:] is not returned yet
        self._context_text = self._decode(self._ids)

    def _decode(self, ids):
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id) -> str:
        """Adds one token; returns the text that became final with it (often "")."""
        token_id = int(token_id)
        piece = self._tokenizer.convert_ids_to_tokens(token_id)  # None past the vocabulary (padded embeddings)
        if piece is None or token_id in self._special:  # invisible to decode: "<0x00></s><0x80>" is one run
            return ""
        self._ids.append(token_id)
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            return ""
        return self._advance(final=False)

    def flush(self) -> str:
        """Returns the text still held back (at the end of generation)."""
        return self._advance(final=True)

    def _advance(self, final):
        text = self._decode(self._ids)
        if len(text) <= len(self._context_text) or (text.endswith("\ufffd") and not final):
            return ""
        new = text[len(self._context_text):]
        self._ids = self._ids[self._read:]
        self._read = len(self._ids)
        self._context_text = self._decode(self._ids)
        return new


TERMINATORS = ".!?…。！？．"
_OPENERS = dict(zip("([{“‘«「『（", ")]}”’»」』）"))
# Before a name or a number: never a sentence end when a space follows ("Dr. Smith", "e.g. apples").
_TITLES = {"Mr", "Mrs", "Ms", "Dr", "Prof", "St", "Sr", "Jr", "Mt", "Rev", "Gen", "Col", "Capt", "Lt", "Sgt",
           "vs", "cf", "e.g", "i.e", "viz"}
# A sentence end only when the next word is not lowercase or a number ("etc. and" / "etc. The").
_ABBREVIATIONS = {"etc", "approx", "al", "p", "pp", "Inc", "Ltd", "Co", "Corp", "No", "Nos", "Fig", "Figs", "Eq",
                  "Vol", "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec",
                  "a.m", "p.m", "U.S", "U.K"}
_LIST_MARKER = re.compile(r"[ \t>#*+-]*(\d{1,3}|[A-Za-z])")  # "1." / "  b." / "## 2." at the start of a line
_URLISH = ("://", "@", "/", "\\", "_", "=", "www")
_RUN = re.compile(rf"`+|~+|\*+|[{TERMINATORS}]+")  # a run of backticks, tildes, stars or terminators
_BLANKS = re.compile(r"[ \t]*")


def _glued(c):
    """A character that continues a word after a dot: 3.14, example.com, e.g (CJK text does not)."""
    return c.isdigit() or ((c.isalnum() or c == "_") and c < "\u2e80")


class SentenceSplitter:
    """Sentence ends in streamed text, reported as soon as they are certain.

    `feed(chunk)` -> offsets (into all text fed so far) of the ends that became certain; an end is just after
    its terminator run (`?!`, `...` count once) and the closing quotes/brackets/`**` that belong to it.
    Ends: `. ! ? … 。 ！ ？ ．`, and a newline after a line with text (whitespace and blank lines after an end
    go to the next sentence). Not ends: a dot followed by a letter or digit (3.14, example.com, e.g), a
    title or initial before a space ("Dr. Who", "J. R."), an abbreviation before a lowercase word or a
    number ("etc. and", "Fig. 3"), a list marker ("1.", "b." at a line start), `inline code`; inside ```
    fences only newlines. Text that stops right after a plain word + "." or after `! ? … 。` (with no quote
    or bracket open) is an end at once, betting that the tokenizer keeps `...`, `?!` and `.com` in one
    token; numbers, abbreviations, single letters, URLs, `...` and open quotes wait for more text. Any
    chunking gives the ends of feeding the whole text at once, except where that bet loses.
    """

    def __init__(self):
        self._text = ""
        self._i = 0              # next character to look at: everything before it is decided
        self._line = 0           # where the current line starts
        self._stack = []         # closers expected in this line, innermost last: ")", '"', "**", ...
        self._code = False       # inside `inline code`
        self._fence = ""         # "`" or "~" inside a fenced code block
        self._skip = False       # the rest of this line is code
        self._content = False    # the current sentence has a non-space character

    def feed(self, text: str) -> list[int]:
        self._text += text
        t, n, ends = self._text, len(self._text), []
        while self._i < n:
            i, c = self._i, t[self._i]
            if c == "\n":
                if self._content:
                    ends.append(i + 1)
                self._content, self._line, self._stack, self._code, self._skip = False, i + 1, [], False, False
                self._i += 1
                continue
            if c in "`~" and i - self._line < 8 and not t[self._line:i].strip():  # a code fence?
                j = _RUN.match(t, i).end()
                if j == n and j - i < 3:
                    break
                if j - i >= 3:
                    self._fence = "" if self._fence == c else self._fence or c
                    self._skip = True
            self._content = self._content or not c.isspace()
            if self._skip or self._fence:
                self._i += 1
            elif c == "`" or self._code:
                self._code ^= c == "`"
                self._i += 1
            elif c in TERMINATORS:
                decided = self._resolve(i)
                if decided is None:
                    break
                self._i, end = decided
                if end:
                    ends.append(self._i)
                    self._content = False
            else:
                j = self._track(i)
                if j is None:
                    break
                self._i = j
        return ends

    def _track(self, i):
        """Updates the open quotes/brackets/emphasis at t[i]; -> next index, or None to wait for text."""
        t, stack, c = self._text, self._stack, self._text[i]
        before = t[i - 1] if i > self._line else " "
        if c in _OPENERS:
            stack.append(_OPENERS[c])
        elif c == "*":  # "**" opens before a word and closes after one; "* item" and "2 * 3" do neither
            j = _RUN.match(t, i).end()
            if j == len(t):
                return None
            if stack[-1:] == [t[i:j]] and not before.isspace():
                stack.pop()
            elif (before.isspace() or before in _OPENERS) and not t[j].isspace():
                stack.append(t[i:j])
            return j
        elif c == "'" and stack[-1:] == ["'"] and not before.isspace():
            if i + 1 == len(t):
                return None
            if not t[i + 1].isalpha():  # a letter follows an apostrophe ("don't"), not a closing quote
                stack.pop()
        elif c == "'" and (before.isspace() or before in _OPENERS):
            stack.append("'")
        elif c == '"' and stack[-1:] != ['"']:
            stack.append('"')
        elif stack[-1:] == [c]:
            stack.pop()
        return i + 1

    def _kind(self, i, run):
        t, k = self._text, i
        while k > max(self._line, i - 64) and not t[k - 1].isspace():
            k -= 1
        word = t[k:i].lstrip("([{“‘«「『（\"'*_`")
        urlish = any(s in word for s in _URLISH)
        if run not in (".", "．"):
            return "wait" if urlish or not word or "." in run else "bang"  # "..." may still grow
        if i - self._line < 16 and _LIST_MARKER.fullmatch(t[self._line:i]):
            return "marker"
        if word in _TITLES or (len(word) == 1 and word.isupper()):
            return "title"
        if word in _ABBREVIATIONS:
            return "abbreviation"
        if len(word) < 2 or urlish or "." in word or word[-1].isdigit():
            return "wait"
        return "word"

    def _resolve(self, i):
        """-> (index after the terminator, whether a sentence ends there), or None to wait for text."""
        t, n = self._text, len(self._text)
        j = _RUN.match(t, i).end()
        run = t[i:j]
        kind = self._kind(i, run)
        if kind == "marker":
            return j, False
        stack = self._stack[:]
        while stack and t.startswith(stack[-1], j):  # closing quotes and brackets belong to the sentence
            j += len(stack.pop())
        if j == n and not stack and kind in ("word", "bang"):
            end = True
        elif j == n or (stack and stack[-1].startswith(t[j:])):
            return None
        elif kind == "title":
            end = t[j] == "\n"
        elif kind == "abbreviation":
            k = _BLANKS.match(t, j).end()
            if k == n:
                return None
            end = t[k] == "\n" or (k > j and not (t[k].islower() or t[k].isdigit() or t[k] in ",;:"))
        else:
            end = kind == "bang" or not _glued(t[j])
        if not end:
            return i + len(run), False
        self._stack = stack
        return j, True


def split_sentences(text: str) -> list[str]:
    """Splits a finished text by the SentenceSplitter rules; the pieces concatenate to `text`."""
    cuts = [0] + SentenceSplitter().feed(text)
    if cuts[-1] != len(text):
        cuts.append(len(text))
    return [text[a:b] for a, b in zip(cuts, cuts[1:])]
