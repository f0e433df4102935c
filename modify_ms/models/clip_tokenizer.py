"""CLIP's byte-level BPE tokenizer (``clip/simple_tokenizer.py`` + ``clip.tokenize``), no dependencies.

Vocabulary: ``modify_ms/assets/clip/bpe_simple_vocab_16e6.txt.gz`` (OpenAI, MIT; packaged, see its
README): 256 byte symbols, the same with ``</w>``, the first 48,894 merges, then
``<|startoftext|>`` = 49406 and ``<|endoftext|>`` = 49407.

Encoding a text: clean (below), collapse whitespace, lower-case; split into pieces with CLIP's
pattern (the two special tokens, the contractions 's 't 're 've 'm 'll 'd, runs of letters, single
numeric characters, runs of other non-space characters); map each piece's UTF-8 bytes to GPT-2's
printable byte alphabet; merge adjacent symbols by lowest merge rank, the last symbol carrying
``</w>``. :func:`tokenize` frames each text as SOT ids EOT, zero padded to 77 (int32).

Two deliberate differences from the reference, both to avoid runtime dependencies:

* Letters and numbers are Unicode general categories L* and N* (what the ``regex`` module's
  ``\\p{L}`` / ``\\p{N}`` mean), built once from :mod:`unicodedata` into ``re`` classes (this
  Python's Unicode database: letters added in later Unicode versions count as symbols here).
* ``ftfy.fix_text`` is replaced by its deterministic steps, in ftfy's order: HTML unescape, terminal
  escapes removed, Latin ligatures expanded (ﬁ -> fi, Ĳ -> IJ, ...), fullwidth/halfwidth forms to
  standard width (and U+3000 to a space), curly quotes to straight ones, line breaks, control
  characters removed, NFC. What is NOT done is ftfy's mojibake repair (guessing that text was
  decoded with the wrong codec, e.g. 'cafÃ©' -> 'café'): such text tokenizes as written. CLIP's two
  ``html.unescape`` passes and whitespace collapse follow as in the reference.
"""
import functools
import gzip
import html
import re
import sys
import unicodedata

import numpy as np

SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
CONTEXT_LENGTH = 77
NUM_MERGES = 49152 - 256 - 2  # merge lines used (after the header line)
END_OF_WORD = "</w>"

_SINGLE_QUOTES = re.compile("[\u02bc\u2018-\u201b]")
_DOUBLE_QUOTES = re.compile("[\u201c-\u201f]")
_TERMINAL_ESCAPES = re.compile("\033\\[((?:\\d|;)*)([a-zA-Z])")
_LINE_BREAKS = re.compile("\r\n|\r|\u2028|\u2029|\u0085")
_LIGATURES = {"Ĳ": "IJ", "ĳ": "ij", "ŉ": "ʼn", "Ǳ": "DZ", "ǲ": "Dz", "ǳ": "dz", "Ǆ": "DŽ", "ǅ": "Dž", "ǆ": "dž",
              "Ǉ": "LJ", "ǈ": "Lj", "ǉ": "lj", "Ǌ": "NJ", "ǋ": "Nj", "ǌ": "nj", "ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl",
              "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "ſt", "ﬆ": "st"}
_CONTROL_CODES = [*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F, *range(0x206A, 0x2070), 0xFEFF,
                  *range(0xFFF9, 0xFFFD)]


def vocabulary_path():
    from ..assets import asset_path

    return asset_path("clip", "bpe_simple_vocab_16e6.txt.gz")


@functools.lru_cache(maxsize=None)
def _translation_tables():
    ligatures = {ord(k): v for k, v in _LIGATURES.items()}
    width = {0x3000: " "}
    for code in range(0xFF01, 0xFFF0):  # fullwidth and halfwidth forms block
        char = chr(code)
        standard = unicodedata.normalize("NFKC", char)
        if standard != char:
            width[code] = standard
    controls = {code: None for code in _CONTROL_CODES}
    return ligatures, width, controls


def fix_text(text):
    """ftfy's deterministic fixes (see module docstring); no mojibake repair."""
    ligatures, width, controls = _translation_tables()
    if "<" not in text:  # ftfy's unescape_html='auto': leave text that looks like HTML alone
        text = html.unescape(text)
    text = _TERMINAL_ESCAPES.sub("", text)
    text = text.translate(ligatures).translate(width)
    text = _DOUBLE_QUOTES.sub('"', _SINGLE_QUOTES.sub("'", text))
    text = _LINE_BREAKS.sub("\n", text)
    text = text.translate(controls)
    return unicodedata.normalize("NFC", text)


def clean_text(text):
    """CLIP's basic_clean + whitespace_clean + lower()."""
    text = html.unescape(html.unescape(fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


def _category_class(prefix):
    """A ``re`` character class of every code point whose general category starts with ``prefix``."""
    ranges, start, last = [], None, None
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)).startswith(prefix):
            if start is None:
                start = code
            last = code
        elif start is not None:
            ranges.append((start, last))
            start = None
    if start is not None:
        ranges.append((start, last))

    def esc(code):
        return f"\\U{code:08x}"

    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


@functools.lru_cache(maxsize=None)
def piece_pattern():
    """CLIP's pre-tokenisation pattern with \\p{L} / \\p{N} spelled out as category classes."""
    letters, numbers = _category_class("L"), _category_class("N")
    return re.compile(rf"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[{letters}]+|[{numbers}]"
                      rf"|[^\s{letters}{numbers}]+", re.IGNORECASE)


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map (printable Latin-1 bytes map to themselves,
    the other 68 to U+0100 onwards), in CLIP's vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {b: chr(c) for b, c in zip(printable + others, printable + [256 + n for n in range(len(others))])}


class ClipTokenizer:
    """``encode(text) -> [ids]``, ``decode(ids) -> text``, ``__call__(texts) -> [n, 77] int32``."""

    def __init__(self, vocabulary=None):
        with gzip.open(vocabulary or vocabulary_path(), "rt", encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1:NUM_MERGES + 1]]
        if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
            raise ValueError(f"{vocabulary or vocabulary_path()}: not CLIP's BPE merges file")
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        symbols = list(self.byte_encoder.values())
        symbols += [s + END_OF_WORD for s in symbols]
        symbols += ["".join(m) for m in merges]
        symbols += [SOT, EOT]
        self.encoder = {s: i for i, s in enumerate(symbols)}
        self.decoder = dict(enumerate(symbols))
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {SOT: SOT, EOT: EOT}
        self.pattern = piece_pattern()
        self.sot, self.eot = self.encoder[SOT], self.encoder[EOT]

    def bpe(self, piece):
        """Space-separated BPE symbols of one piece (already in the byte alphabet)."""
        if piece in self.cache:
            return self.cache[piece]
        word = list(piece[:-1]) + [piece[-1] + END_OF_WORD]
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        out = " ".join(word)
        self.cache[piece] = out
        return out

    def encode(self, text):
        ids = []
        for piece in self.pattern.findall(clean_text(text)):
            piece = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self.bpe(piece).split(" "))
        return ids

    def decode(self, ids):
        text = "".join(self.decoder[int(i)] for i in ids)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace").replace(
            END_OF_WORD, " ")

    def __call__(self, texts, context_length=CONTEXT_LENGTH, truncate=False):
        """CLIP's ``tokenize``: [len(texts), context_length] int32, SOT ids EOT then zeros.

        A text longer than the context raises ValueError unless ``truncate`` (then it is cut and its
        last id forced to EOT)."""
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), context_length), np.int32)
        for row, text in enumerate(texts):
            ids = [self.sot] + self.encode(text) + [self.eot]
            if len(ids) > context_length:
                if not truncate:
                    raise ValueError(f"text {text[:40]!r} is {len(ids)} tokens, longer than the context "
                                     f"length {context_length}")
                ids = ids[:context_length]
                ids[-1] = self.eot
            out[row, :len(ids)] = ids
        return out


@functools.lru_cache(maxsize=1)
def default_tokenizer():
    """The tokenizer over the packaged vocabulary (built once per process)."""
    return ClipTokenizer()


def tokenize(texts, context_length=CONTEXT_LENGTH, truncate=False):
    return default_tokenizer()(texts, context_length, truncate)
