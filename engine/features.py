"""Router featurizer: text -> sparse hashed n-gram features, the input of the router's EmbeddingBag.

Default view (no files needed, any language): word unigrams + bigrams, word unigrams tagged with the part of the
text they stand in (`positions` equal parts: which of two requests in one message comes first), and character
n-grams of the lowercased text. Optional view: the base model's tokenizer, whose token-id unigrams + bigrams replace
the word n-grams. Hashing is stable across processes (crc32 and a numpy polynomial hash, never Python's
salted hash()), so a saved router featurizes exactly as it did when trained.
Weights: sublinear term frequency (1 + log tf) per view, each view L2-normalised, then scaled by sqrt(1/2)
so a sample's whole feature vector has unit norm. A context given as parts [(text, weight), ...] (engine/context.py:
earlier turns down-weighted) is the weighted sum of its parts' vectors, scaled back to unit norm.
"""
import math
import re
import zlib
from pathlib import Path

import numpy as np

from engine.errors import RouterError

# A word token: a run of word characters, or one punctuation mark. CJK runs are whole "words"; the
# character n-grams are what carries those scripts.
_WORD_RE = re.compile(r"\w+|[^\w\s]")
_P = np.uint64(0x100000001B3)  # polynomial base of the rolling hash (the FNV-1a 64 prime)
_M1, _M2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)  # murmur3 fmix64 constants
_S33 = np.uint64(33)
MAX_BUCKETS, MAX_WORDS, MAX_NGRAM = 1 << 22, 100_000, 16  # bounds of the settings a saved router may declare
WORD_SHARE = 0.5  # share of a sample's squared feature norm given to the word view (the rest: characters)


def _mix(h, salt):
    """Avalanche uint64 hashes (murmur3 finaliser) so that `% buckets` spreads them evenly. h: uint64 [K]."""
    h = h ^ np.uint64(salt * 0x9E3779B97F4A7C15 % 2**64)
    h ^= h >> _S33
    h *= _M1
    h ^= h >> _S33
    h *= _M2
    h ^= h >> _S33
    return h


def is_count(v, low: int, high: int) -> bool:
    """An integer (not a bool) from low to high: a size read from a file."""
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


class Featurizer:
    def __init__(self, buckets=1 << 17, max_words=256, char_ngrams=(2, 5), tokenizer_dir=None, positions=4):
        self.buckets = int(buckets)
        self.positions = int(positions)
        self.max_words = int(max_words)
        self.char_ngrams = (int(char_ngrams[0]), int(char_ngrams[1]))
        self.tokenizer_dir = None if tokenizer_dir is None else str(tokenizer_dir)
        self._encode = None if tokenizer_dir is None else _load_tokenizer(Path(tokenizer_dir))
        self._buckets = np.uint64(self.buckets)

    @property
    def settings(self):
        """Everything needed to featurize identically later (saved in the router's JSON sidecar)."""
        return {"kind": "hash" if self.tokenizer_dir is None else "tokenizer", "buckets": self.buckets,
                "max_words": self.max_words, "char_ngrams": list(self.char_ngrams),
                "tokenizer_dir": self.tokenizer_dir, "positions": self.positions}

    @classmethod
    def from_settings(cls, s):
        cls.check_settings(s)
        return cls(s["buckets"], s["max_words"], tuple(s["char_ngrams"]), s.get("tokenizer_dir"),
                   s.get("positions", 0))  # routers saved before positions existed featurize without them

    @staticmethod
    def check_settings(s):
        """RouterError naming the field when `s` is not what `settings` writes, or out of bounds (a table of
        2**26 buckets would cost gigabytes before anything else could be checked)."""
        if not isinstance(s, dict):
            raise RouterError(f"featurizer settings must be an object, got {s!r}")
        kind, tok, grams = s.get("kind"), s.get("tokenizer_dir"), s.get("char_ngrams")
        problems = [
            (kind in ("hash", "tokenizer"), f"kind must be \"hash\" or \"tokenizer\", got {kind!r}"),
            (is_count(s.get("buckets"), 1, MAX_BUCKETS), f"buckets must be an integer from 1 to {MAX_BUCKETS}, "
                                                      f"got {s.get('buckets')!r}"),
            (is_count(s.get("max_words"), 1, MAX_WORDS), f"max_words must be an integer from 1 to {MAX_WORDS}, "
                                                      f"got {s.get('max_words')!r}"),
            (isinstance(grams, list) and len(grams) == 2 and is_count(grams[0], 1, MAX_NGRAM)
             and is_count(grams[1], grams[0], MAX_NGRAM),
             f"char_ngrams must be [low, high] with 1 <= low <= high <= {MAX_NGRAM}, got {grams!r}"),
            ((tok is None) == (kind == "hash") and (tok is None or isinstance(tok, str)),
             f"tokenizer_dir must be null for kind \"hash\" and a folder for kind \"tokenizer\", got {tok!r}"),
            (is_count(s.get("positions", 0), 0, MAX_NGRAM), f"positions must be an integer from 0 to {MAX_NGRAM}, "
                                                          f"got {s.get('positions')!r}"),
        ]
        bad = [message for ok, message in problems if not ok]
        if bad:
            raise RouterError("featurizer settings: " + "; ".join(bad))

    def tail(self, text):
        """The last `max_words` whitespace-separated words, lowercased, runs of spaces collapsed; a line break
        is kept as the word "¶" (layout tells tasks apart). Long unspaced text (CJK, code) is also capped at
        16 characters per word so one call stays cheap."""
        limit = 16 * self.max_words
        cut = text[-limit:]
        words = cut.replace("\n", " ¶ ").split()
        if len(text) > limit and len(words) > 1 and not cut[0].isspace():
            words = words[1:]  # the cut split a word: drop its end
        return " ".join(words[-self.max_words:]).lower()

    def __call__(self, context):
        """A text, or parts [(text, weight), ...] -> (indices int64 [K], weights float32 [K]); K >= 1."""
        if isinstance(context, str):
            return self._text(context)
        parts = [(text, weight) for text, weight in context if weight > 0]
        if len(parts) <= 1:  # one part at any weight is its own unit vector: exactly as a text
            return self._text(parts[0][0] if parts else "")
        feats = [(i, w * weight) for text, weight in parts for i, w in [self._text(text)]]
        idx, inverse = np.unique(np.concatenate([i for i, _ in feats]), return_inverse=True)
        w = np.bincount(inverse, weights=np.concatenate([w for _, w in feats])).astype(np.float32)  # [K]
        return idx, w / np.sqrt(np.dot(w, w))

    def _text(self, text):
        s = self.tail(text)
        if self._encode is None:
            tok = np.fromiter((zlib.crc32(w.encode()) for w in _WORD_RE.findall(s)), np.uint64)
        else:
            tok = np.asarray(self._encode(s), dtype=np.uint64)
        word = [_mix(tok, 1), _mix(tok[:-1] * _P + tok[1:], 2)]
        if self.positions:  # the part of the text each word is in: [K] in 0 .. positions-1
            part = np.arange(len(tok), dtype=np.uint64) * np.uint64(self.positions) // np.uint64(max(len(tok), 1))
            word.append(_mix(tok * _P + part, 3))
        word = np.concatenate(word)

        cp = np.frombuffer((" " + s + " ").encode("utf-32-le"), np.uint32).astype(np.uint64)  # code points
        lo, hi = self.char_ngrams
        h, grams = cp, ([_mix(cp, 11)] if lo <= 1 else [])
        for n in range(2, hi + 1):  # h[i] = hash of the n-gram starting at i (wraps mod 2**64)
            h = h[:-1] * _P + cp[n - 1:]
            if n >= lo:
                grams.append(_mix(h, 10 + n))
        char = np.concatenate(grams) if grams else cp[:0]

        idx_w, w_w = self._weigh(word, math.sqrt(WORD_SHARE))
        idx_c, w_c = self._weigh(char, math.sqrt(1.0 - WORD_SHARE))
        return np.concatenate([idx_w, idx_c]), np.concatenate([w_w, w_c])

    def _weigh(self, hashes, norm):
        """Hashes of one view -> (unique buckets, sublinear-tf weights with L2 norm `norm`)."""
        if hashes.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        idx, counts = np.unique((hashes % self._buckets).astype(np.int64), return_counts=True)
        w = 1.0 + np.log(counts, dtype=np.float32)
        w *= norm / np.sqrt(np.dot(w, w))
        return idx, w

    def batch(self, contexts):
        """contexts -> (indices int64 [sum K], offsets int64 [B], weights float32 [sum K]) for nn.EmbeddingBag."""
        feats = [self(c) for c in contexts]
        sizes = np.array([len(i) for i, _ in feats], np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        return (np.concatenate([i for i, _ in feats]), offsets, np.concatenate([w for _, w in feats]))


def _load_tokenizer(folder):
    """The base model's tokenizer as a function text -> token ids (no special tokens)."""
    try:
        if (folder / "tokenizer.json").is_file():
            from tokenizers import Tokenizer
            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
            return lambda s: tok.encode(s, add_special_tokens=False).ids
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        return lambda s: tok(s, add_special_tokens=False)["input_ids"]
    except Exception as e:  # any library error means the folder holds no usable tokenizer
        raise RouterError(f"{folder}: cannot load a tokenizer for the router featurizer ({e})") from e
