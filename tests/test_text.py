"""engine/text.py: incremental detokenization and streaming sentence ends."""
import functools
import json
import re

import pytest
from hypothesis import given, settings, strategies as st

from engine.text import TERMINATORS, Detokenizer, SentenceSplitter, split_sentences

# ---------------------------------------------------------------- sentences: the rules as a table

TABLE = [
    ("Hello world. How are you?", ["Hello world.", " How are you?"]),
    # numbers: a dot between digits is not an end, a dot after a number is
    ("Pi is 3.14 and e is 2.718. Next.", ["Pi is 3.14 and e is 2.718.", " Next."]),
    ("It costs $1,000.50 now. Upgrade to v1.2.3 today.", ["It costs $1,000.50 now.", " Upgrade to v1.2.3 today."]),
    ("I have 3. You have 4.", ["I have 3.", " You have 4."]),
    ("Python 3.11.\nNext", ["Python 3.11.", "\nNext"]),
    # abbreviations, titles and initials
    ("Dr. Smith met Mrs. Jones at St. Mary's. They talked.",
     ["Dr. Smith met Mrs. Jones at St. Mary's.", " They talked."]),
    ("Fruit, e.g. apples, i.e. red ones, etc. are fine. Yes.",
     ["Fruit, e.g. apples, i.e. red ones, etc. are fine.", " Yes."]),
    ("I like tea, coffee, etc. But not milk.", ["I like tea, coffee, etc.", " But not milk."]),
    ("J. R. R. Tolkien wrote it. Read it.", ["J. R. R. Tolkien wrote it.", " Read it."]),
    ("See Fig. 3 and p. 5 at 5 p.m. today.", ["See Fig. 3 and p. 5 at 5 p.m. today."]),
    ("The answer is No. 5 is wrong. No. I disagree.", ["The answer is No. 5 is wrong.", " No.", " I disagree."]),
    ("Ask the Dr.\nOk.", ["Ask the Dr.", "\nOk."]),
    # ellipses and runs
    ("Wait... what? Well… maybe. Hmm....", ["Wait...", " what?", " Well…", " maybe.", " Hmm...."]),
    ("Really?! Yes!!! Ok?", ["Really?!", " Yes!!!", " Ok?"]),
    ("Hmm...let me think.", ["Hmm...let me think."]),
    # closing quotes, brackets and emphasis belong to the sentence
    ('He said "Stop." Then he left.', ['He said "Stop."', " Then he left."]),
    ('She asked "Why?" He left. "Go. Now." Done.', ['She asked "Why?"', " He left.", ' "Go.', ' Now."', " Done."]),
    ("(This is an aside.) Back to text.", ["(This is an aside.)", " Back to text."]),
    ("‘Fine.’ “Really?” «Oui.» Ok.", ["‘Fine.’", " “Really?”", " «Oui.»", " Ok."]),
    ("**Note.** Read this. *Really.* Yes.", ["**Note.**", " Read this.", " *Really.*", " Yes."]),
    ("'Stop.' I don't know.", ["'Stop.'", " I don't know."]),
    # URLs, e-mails, file names and code
    ("Visit https://example.com/docs. Then mail a.b@c.org. Or www.example.com today.",
     ["Visit https://example.com/docs.", " Then mail a.b@c.org.", " Or www.example.com today."]),
    ("See example.com and edit main.py now. Done.", ["See example.com and edit main.py now.", " Done."]),
    ("Run `python main.py --x 1.5. Yes!` now. Done.", ["Run `python main.py --x 1.5. Yes!` now.", " Done."]),
    ("Use os.path.join. It works.", ["Use os.path.join.", " It works."]),
    ("Code:\n```python\nx = 1.5. Not an end\n\nprint(x)\n```\nDone. Ok.",
     ["Code:\n", "```python\n", "x = 1.5. Not an end\n", "\nprint(x)\n", "```\n", "Done.", " Ok."]),
    # lists, newlines, blank lines
    ("1. First item\n2. Second item. More.\n10. Tenth\n",
     ["1. First item\n", "2. Second item.", " More.", "\n10. Tenth\n"]),
    ("Steps:\n  1. Install it\n## 2. Run\nA. Paris\nb. London\n",
     ["Steps:\n", "  1. Install it\n", "## 2. Run\n", "A. Paris\n", "b. London\n"]),
    ("- Apples\n- Pears. Ripe.\n* Plums\n", ["- Apples\n", "- Pears.", " Ripe.", "\n* Plums\n"]),
    ("Line one\nLine two\n\n\nNew paragraph.", ["Line one\n", "Line two\n", "\n\nNew paragraph."]),
    ("  \n\nHi.  ", ["  \n\nHi.", "  "]),
    # CJK and emoji
    ("中文。日本語！本当？", ["中文。", "日本語！", "本当？"]),
    ("他说：「好。」然后走了。", ["他说：「好。」", "然后走了。"]),
    ("价格是３．５元。好的．", ["价格是３．５元。", "好的．"]),
    ("等等……真的吗？！是的", ["等等……", "真的吗？！", "是的"]),
    ("Great job! 🎉 See you 👋. Bye.", ["Great job!", " 🎉 See you 👋.", " Bye."]),
]


def test_split_sentences_table():
    # one test for the whole table (pytest shows the differing rows): per-test fixtures cost more than the rows
    assert {text: split_sentences(text) for text, _ in TABLE} == dict(TABLE)


def _tokenizer_would_cut(text, p):
    """False where a real tokenizer keeps both sides in one token, which the splitter bets on: inside a
    terminator run ("..." "?!") and between a word's dot and a letter (".com", ".py"). Cuts anywhere else
    (inside numbers, after titles and initials, in URLs, before closing quotes) must not change the ends."""
    if text[p - 1] in TERMINATORS and text[p] in TERMINATORS:
        return False
    return not (re.search(r"[^\W\d_]{2}[.．]$", text[:p]) and text[p].isalnum())


def _stream(text, cuts):
    splitter, ends, start = SentenceSplitter(), [], 0
    for cut in sorted(set(cuts)) + [len(text)]:
        ends += splitter.feed(text[start:cut])
        start = cut
    return ends


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_streaming_equals_offline_for_tokenizer_like_chunkings(data):
    text, expected = data.draw(st.sampled_from(TABLE))
    allowed = [p for p in range(1, len(text)) if _tokenizer_would_cut(text, p)]
    cuts = data.draw(st.lists(st.sampled_from(allowed))) if allowed else []
    ends = _stream(text, cuts)
    assert [text[a:b] for a, b in zip([0] + ends, ends)] == expected[:len(ends)]
    assert ends == SentenceSplitter().feed(text)


SNIPPETS = ["Dr", "etc", "e", "g", "J", "No", "3", "14", "main", "py", "www", "://", "@", " ", " ", "\n", ".", ".",
            "...", "…", "!", "?", "。", "「", "」", '"', "'", "(", ")", "**", "*", "`", "```", "1", "中文", "🎉",
            "don't", "x", "The", "-", "#"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(SNIPPETS), max_size=30).map("".join), st.data())
def test_streaming_equals_offline_on_random_text(text, data):
    allowed = [p for p in range(1, len(text))
               if _tokenizer_would_cut(text, p) and not (text[p - 1] in ".．" and text[p].isalnum())]
    cuts = data.draw(st.lists(st.sampled_from(allowed))) if allowed else []
    assert _stream(text, cuts) == SentenceSplitter().feed(text)
    assert "".join(split_sentences(text)) == text


EARLY = [
    (["Hello world", "."], [[], [12]]),                        # a plain word: certain at once
    (["Hi", "!", " Ok", "?"], [[], [3], [], [7]]),
    (["中文", "。", "好"], [[], [3], []]),
    (["Line", "\n"], [[], [5]]),
    (['He said "Stop.', '"', " Go"], [[], [15], []]),          # a quote is open: wait for its closer
    (["It is 3", ".", "14", ".", " Next"], [[], [], [], [], [11]]),  # 3. may become 3.14
    (["It is 3", ".", " Next"], [[], [], [8]]),
    (["Dr", ".", " Smith", "."], [[], [], [], [10]]),           # a title never ends before a space
    (["I ate etc", ".", " ", "The"], [[], [], [], [10]]),      # "etc." ends only before a capital
    (["e", ".", "g", ".", " this"], [[], [], [], [], []]),
    (["Wait", "...", " ok"], [[], [], [7]]),                   # "..." may still grow
    (["See https://example", ".", "com", ". Next"], [[], [], [], [24]]),
    (["Run `main", ".", "py` now", "."], [[], [], [], [18]]),  # inside inline code
    (["```", "\n", "a. b", "\n"], [[], [4], [], [9]]),          # fenced code: only newlines count
    (["Edit main", ".", "py"], [[], [10], []]),                # the bet: tokenizers emit ".py" as one token
]


def test_confirms_as_early_as_possible():
    def stream(chunks):
        splitter = SentenceSplitter()
        return [splitter.feed(c) for c in chunks]

    assert {"|".join(c): stream(c) for c, _ in EARLY} == {"|".join(c): ends for c, ends in EARLY}


# ---------------------------------------------------------------- detokenizer

CORPUS = ["Hello world. The quick brown fox jumps over the lazy dog! It is 3.14 degrees.",
          "def main():\n    print('hi')  # done\n", "Dr. Smith said: \"Stop.\" Then... what?",
          "中文很好。日本語も！ 😀🎉 emoji and café naïve"] * 3
SPECIALS = ["<unk>", "<s>", "</s>"]


def _byte_level():  # Llama-3 / Qwen2 style: bytes as characters, merges may split a character's bytes
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=420, special_tokens=SPECIALS,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _sentencepiece_like():  # Llama-2 / Mistral style: "▁" for spaces, <0xNN> byte fallback, leading "▁" dropped
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    ascii_corpus = [s.encode("ascii", "ignore").decode() for s in CORPUS]  # other characters use byte fallback
    tok.train_from_iterator(ascii_corpus, trainers.BpeTrainer(vocab_size=200, special_tokens=SPECIALS))
    spec = json.loads(tok.to_str())["model"]
    vocab = dict(spec["vocab"])
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["merges"]]
    tok.model = models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


TOKENIZERS = {"byte_level": _byte_level, "sentencepiece": _sentencepiece_like}


@functools.cache
def _tokenizer(name):
    return TOKENIZERS[name]()


TEXT = st.text(alphabet="ab Hello world.,!?\n\t中文日本語😀🎉éñ€", max_size=20)


def _ids(tok):
    """Random ids (specials, lone bytes, invalid UTF-8, ids past the vocabulary) mixed with encodings of text."""
    piece = st.one_of(st.integers(0, len(tok) + 2).map(lambda i: [i]),
                      TEXT.map(lambda s: tok.encode(s, add_special_tokens=False)))
    return st.lists(piece, max_size=12).map(lambda pieces: [i for p in pieces for i in p])


def _detokenize(tok, ids, prefix_ids=()):
    detok = Detokenizer(tok, prefix_ids)
    pieces = [detok.push(i) for i in ids]
    return pieces, detok.flush()


@pytest.mark.parametrize("name", TOKENIZERS)
def test_detokenizer_equals_decode(name):
    tok = _tokenizer(name)

    @settings(max_examples=200, deadline=None)
    @given(_ids(tok))
    def check(ids):
        pieces, rest = _detokenize(tok, ids)
        assert "".join(pieces) + rest == tok.decode(ids, skip_special_tokens=True)

    check()


@pytest.mark.parametrize("name", TOKENIZERS)
def test_detokenizer_after_a_prompt_never_shows_half_characters(name):
    tok = _tokenizer(name)

    @settings(max_examples=100, deadline=None)
    @given(TEXT, TEXT.filter(str.strip))
    def check(prompt, reply):
        prefix = tok.encode(prompt, add_special_tokens=False)
        ids = tok.encode(reply, add_special_tokens=False)
        pieces, rest = _detokenize(tok, ids, prefix_ids=[tok.bos_token_id] + prefix)
        full = tok.decode(prefix + ids, skip_special_tokens=True)
        assert "".join(pieces) + rest == full[len(tok.decode(prefix, skip_special_tokens=True)):]
        assert not any("\ufffd" in p for p in pieces + [rest])

    check()


def test_detokenizer_skips_special_tokens_as_decode_does():
    tok = _tokenizer("sentencepiece")
    hello, world = (tok.encode(w, add_special_tokens=False) for w in ("Hello", "world"))  # "▁Hello", "▁world"
    run = tok.convert_tokens_to_ids(["<0x00>", "</s>", "<0x80>"])  # decode sees one invalid byte run: 2 x U+FFFD
    for ids, text in [(hello + [tok.eos_token_id] + world, "Hello world"), (run, "\ufffd\ufffd")]:
        pieces, rest = _detokenize(tok, ids)
        assert "".join(pieces) + rest == tok.decode(ids, skip_special_tokens=True) == text


def test_detokenizer_holds_back_a_split_character_then_emits_it_whole():
    tok = _tokenizer("sentencepiece")
    smiley = tok.convert_tokens_to_ids([f"<0x{b:02X}>" for b in "😀".encode()])  # four byte-fallback tokens
    detok = Detokenizer(tok, prefix_ids=tok.encode("Hi", add_special_tokens=False))
    assert [detok.push(i) for i in smiley + tok.convert_tokens_to_ids(["!"])] == ["", "", "", "", "😀!"]
    detok = Detokenizer(tok)
    assert [detok.push(i) for i in smiley] == ["", "", "", ""]
    assert detok.flush() == "😀" and detok.flush() == ""


@pytest.mark.parametrize("name", TOKENIZERS)
def test_detokenizer_decodes_a_window_not_the_whole_text(name, monkeypatch):
    tok, sizes = _tokenizer(name), []
    ids = tok.encode("Hello world, it is 3.14 degrees. " * 20 + "café 😀 ok", add_special_tokens=False)
    decode = tok.decode
    monkeypatch.setattr(tok, "decode", lambda x, **kw: (sizes.append(len(x)), decode(x, **kw))[1])
    pieces, rest = _detokenize(tok, ids)
    assert "".join(pieces) + rest == decode(ids) and len(ids) > 200 and max(sizes) <= 12
