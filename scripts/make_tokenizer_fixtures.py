#!/usr/bin/env python3
"""Reference token ids for tests/c/test_wordpiece.c, from Hugging Face `tokenizers` (PyPI; no PyTorch).

usage (in a venv with `pip install tokenizers`; the committed files come from tokenizers 0.23.3):
  scripts/fetch-models.sh                                     # all-MiniLM-L6-v2 into the model cache
  python scripts/make_tokenizer_fixtures.py [--models DIR]   # writes tests/fixtures/tokenizer/
  python scripts/make_tokenizer_fixtures.py --tables          # writes src/wordpiece_tables.h (needs libutf8proc)

The fixture (tests/fixtures/tokenizer/reference.bin.gz) holds the texts and, for each tokenizer
configuration, the ids `tokenizers` gives each text with [CLS]/[SEP] and truncation at that
configuration's max_length. Little-endian layout:
  "EBWPFIX1", u32 n_texts, n_texts x (u32 byte length, UTF-8 bytes),
  u32 n_configs, n_configs x (u8 name length, name, u32 max_length, n_texts x (u16 n_ids, n_ids x u16 id))
Configurations:
  minilm   all-MiniLM-L6-v2's tokenizer.json from the model cache (scripts/fetch-models.sh), max_length 256
  cased    a WordPiece vocabulary built here from the fortunes corpus's word counts, lowercase=False and no
           accent stripping (committed as cased-tokenizer.json and cased-vocab.txt), max_length 128
  variant  the cased vocabulary with lowercase=True, strip_accents=False, handle_chinese_chars=False,
           clean_text=False (variant-tokenizer.json), max_length 64

--tables writes the character classes the `tokenizers` crate applies, probed from the installed
package over every code point: its category tables are of an older Unicode than utf8proc's (a
character added since then is neither punctuation nor a mark to it), and its lowercasing and NFD
differ from utf8proc's in a few places. The C tokenizer uses utf8proc for everything else.
"""

from __future__ import annotations

import argparse
import ctypes
import gzip
import os
import struct
import sys
import unicodedata
from collections import Counter
from pathlib import Path

from tokenizers import BertWordPieceTokenizer, Tokenizer, normalizers, pre_tokenizers

# The corpus reader of the examples (examples/python/fortunes_data.py), which needs no libembetter to read.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "python"))
from fortunes_data import available_categories, read_category  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_DIR = ROOT / "tests" / "fixtures" / "tokenizer"
FORTUNES_DIR = Path("/usr/share/games/fortunes")
DEFAULT_MODELS = Path(
    os.environ.get("LIBEMBETTER_MODEL_CACHE", Path.home() / ".cache" / "libembetter" / "models")
)


# ---- texts ------------------------------------------------------------------------------------


def fortunes_texts() -> list[str]:
    """Every text of every category file (examples/python/fortunes_data.py's reader)."""
    if not FORTUNES_DIR.is_dir():
        sys.exit(f"no fortunes directory at {FORTUNES_DIR}; install the Debian package 'fortunes'")
    return [text for name in available_categories(FORTUNES_DIR) for text in read_category(name, FORTUNES_DIR)]


def hand_picked_texts() -> list[str]:
    long_word = "a" * 100
    texts = [
        "",
        " ",
        "\x00\x01\x02\u200b\ufeff\ufffd",  # empty after cleaning
        "\t\n\r \u00a0\u3000",
        "Hello, world!",
        "Don't stop-believing... (really) [ok] {fine} <tag> #hash $5 100% a&b a*b a+b a/b a\\b a|b ~x ^y `z` @me",
        "Héllo wörld, café, naïve, résumé, Ångström, Ærø, Øre, ß, ẞ, İstanbul, ǅemal, ﬁnance",
        "ΑΘΗΝΑ Σοφία ΟΔΥΣΣΕΥΣ σς ς Σ",
        "Москва — столица России. Ёлка, йогурт.",
        "עברית: שָׁלוֹם; العربية: مَرْحَبًا بِكُمْ",
        "हिन्दी देवनागरी क़ ज़ फ़",
        "ภาษาไทย ไม่มีช่องว่าง",
        "한국어 텍스트: 안녕하세요, 세계!",
        "日本語のテキスト、ひらがなとカタカナ。漢字も。",
        "中文文本：你好，世界！北京欢迎你。",
        "mixed中文and English混合text",
        "\U00020000\U0002a6df\U0002a700\U0002b740\U0002b820\U0002b920\U0002ceaf\U0002f800\uf900\ufaff\u3400",
        "Emoji: 😀 😂 🥲 👍🏽 👨‍👩‍👧‍👦 🇩🇪 ❤️ ✨ 🤖",
        "control\x07chars\x1bhere\x7fand\x85next\x0bline\x0cfeed\x1cfs",
        "zero\u200bwidth\u200cjoiner\u200dmarks\u2060here\u00adsoft",
        "private \ue000\uf8ff use \U000f0000 and tag \U000e0001\U000e0041",
        "combining: a\u0301 e\u0300 o\u0308 n\u0303 c\u0327 \u0301alone a\u0301\u0302\u0303\u0304\u0305",
        "ordering: a\U0001d16d\U0001d165 a\U0001d165\U0001d16d \U0001d15e\U0001d165\U0001d16d",
        "Korean jamo: 가각간 가 한",
        "fullwidth: ＡＢＣ１２３！？",
        "ligatures: ﬀ ﬃ Ⅻ ⓐ ¼ ² ℌ",
        "[CLS] [SEP] [MASK] [PAD] [UNK] inside[MASK]word [mask] [ CLS ] [CLS][SEP]",
        "new punct: a\u2e45b a\u2e4fb old punct: a\u2e3ab a\u00a7b a\u00b6b a\u2014b a\u2026b",
        "new letters: \u0870\u0871 \U00010d50\U00010d65 \u1c89 \ua7cb \U00011938",
        long_word,
        long_word + "a",
        long_word + "b " + long_word + " end",
        "x" * 500,
        ("é" * 60) + " " + ("é" * 101),
        "the " * 400,
        "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
        "1234567890 3.14159 1,000,000 2024-01-01 12:30pm $19.99 €5 £3 ¥100 ₹50",
        "email@example.com https://example.org/path?q=1&r=2#frag",
        "\u0130\u0131 I i \u212a \u212b \u2126",
        "\U0001d400\U0001d41a \U0001d7ce",
    ]
    return texts


def sweep_texts() -> list[str]:
    """Every code point of planes 0 and 1 and samples of the others, as 'a<c>b' words, 48 to a text."""
    points = [cp for cp in range(0x20000) if not 0xD800 <= cp < 0xE000]
    points += list(range(0x20000, 0x30000, 97)) + list(range(0xE0000, 0xE0200)) + list(range(0xF0000, 0x110000, 4099))
    texts = []
    for i in range(0, len(points), 48):
        texts.append(" ".join("a" + chr(cp) + "b" for cp in points[i : i + 48]))
    return texts


# ---- tokenizers --------------------------------------------------------------------------------


def cased_vocabulary(texts: list[str]) -> list[str]:
    """A cased WordPiece vocabulary built from word counts, deterministically (training is not: ties fall in hash order).

    The special tokens; every character seen twice, alone and as a continuation; the 2,500 commonest words; the 500
    commonest word beginnings of 3 to 5 characters and the 800 commonest endings of 2 to 4 as continuations, so the
    greedy longest match has real choices to make.
    """
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    pre = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts + [t for t in hand_picked_texts() if t.strip()]:
        words.update(word for word, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    chars: Counter[str] = Counter()
    beginnings: Counter[str] = Counter()
    endings: Counter[str] = Counter()
    for word, count in words.items():
        for c in word:
            chars[c] += count
        for k in range(3, 6):
            if len(word) > k:
                beginnings[word[:k]] += count
        for k in range(2, 5):
            if len(word) > k:
                endings[word[-k:]] += count

    def commonest(counter: Counter[str], n: int) -> list[str]:
        return [w for w, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]

    alphabet = sorted(c for c, count in chars.items() if count >= 2)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + alphabet + ["##" + c for c in alphabet]
    vocab += commonest(Counter({w: c for w, c in words.items() if len(w) >= 2}), 2500)
    vocab += commonest(beginnings, 500) + ["##" + e for e in commonest(endings, 800)]
    return list(dict.fromkeys(vocab))


def configurations(models: Path, fortunes: list[str]) -> list[tuple[str, Tokenizer, int]]:
    minilm = models / "all-MiniLM-L6-v2" / "tokenizer.json"
    if not minilm.is_file():
        sys.exit(f"{minilm} is missing; run scripts/fetch-models.sh first")
    configs = [("minilm", Tokenizer.from_file(str(minilm)), 256)]

    FIXTURE_DIR.mkdir(parents=True, exist_ok=True)
    vocab = cased_vocabulary(fortunes)
    (FIXTURE_DIR / "cased-vocab.txt").write_text("".join(token + "\n" for token in vocab), encoding="utf-8")
    cased = BertWordPieceTokenizer(
        str(FIXTURE_DIR / "cased-vocab.txt"),
        clean_text=True,
        handle_chinese_chars=True,
        strip_accents=False,
        lowercase=False,
    )
    cased.save(str(FIXTURE_DIR / "cased-tokenizer.json"))
    configs.append(("cased", Tokenizer.from_file(str(FIXTURE_DIR / "cased-tokenizer.json")), 128))

    variant = BertWordPieceTokenizer(
        str(FIXTURE_DIR / "cased-vocab.txt"),
        clean_text=False,
        handle_chinese_chars=False,
        strip_accents=False,
        lowercase=True,
    )
    variant.save(str(FIXTURE_DIR / "variant-tokenizer.json"))
    configs.append(("variant", Tokenizer.from_file(str(FIXTURE_DIR / "variant-tokenizer.json")), 64))
    return configs


def write_fixture(texts: list[str], configs) -> Path:
    out = bytearray(b"EBWPFIX1")
    out += struct.pack("<I", len(texts))
    for t in texts:
        b = t.encode("utf-8")
        out += struct.pack("<I", len(b)) + b
    out += struct.pack("<I", len(configs))
    for name, tok, max_length in configs:
        assert tok.get_vocab_size() < 65536
        tok.no_padding()
        tok.enable_truncation(max_length=max_length)
        out += struct.pack("<B", len(name)) + name.encode() + struct.pack("<I", max_length)
        for enc in tok.encode_batch(texts):
            ids = enc.ids
            out += struct.pack("<H", len(ids)) + struct.pack(f"<{len(ids)}H", *ids)
    path = FIXTURE_DIR / "reference.bin.gz"
    # mtime=0: the same ids give the same bytes, so regenerating changes nothing in git.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(bytes(out))
    return path


# ---- character tables --------------------------------------------------------------------------


def ranges(points: list[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for cp in points:
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return [(a, b) for a, b in out]


def write_tables(path: Path) -> None:
    clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    lower = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=True)
    nfd = normalizers.NFD()
    pre = pre_tokenizers.BertPreTokenizer()
    utf8proc = ctypes.CDLL("libutf8proc.so.2")
    utf8proc.utf8proc_tolower.restype = ctypes.c_int32
    utf8proc.utf8proc_tolower.argtypes = [ctypes.c_int32]
    utf8proc.utf8proc_NFD.restype = ctypes.c_void_p
    utf8proc.utf8proc_NFD.argtypes = [ctypes.c_char_p]
    utf8proc.utf8proc_unicode_version.restype = ctypes.c_char_p
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]

    removed, spaces, marks, punct, lower_overrides, keep_composed = [], [], [], [], [], []
    for cp in range(1, 0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        cleaned = clean.normalize_str("a" + c + "b")
        if cleaned == "ab":
            removed.append(cp)
        elif cleaned == "a b":
            spaces.append(cp)
        if unicodedata.normalize("NFD", c) == c and strip.normalize_str(c) == "":
            marks.append(cp)
        if len(pre.pre_tokenize_str("a" + c + "b")) == 3:
            punct.append(cp)
        lowered = lower.normalize_str(c)
        if lowered != chr(utf8proc.utf8proc_tolower(cp)):
            lower_overrides.append((cp, [ord(x) for x in lowered]))
        p = utf8proc.utf8proc_NFD(c.encode())
        ours = ctypes.string_at(p).decode()
        libc.free(p)
        theirs = nfd.normalize_str(c)
        if ours != theirs:
            if theirs != c:
                sys.exit(f"U+{cp:04X}: tokenizers' NFD {theirs!r} differs from utf8proc's {ours!r}; extend the tables")
            keep_composed.append(cp)
    for cp, lowered in lower_overrides:
        if len(lowered) != 1 and cp != 0x130:
            sys.exit(f"U+{cp:04X} lowercases to {len(lowered)} characters; extend the tables")

    import tokenizers

    lines = [
        "/*",
        " * Generated by scripts/make_tokenizer_fixtures.py --tables from tokenizers "
        f"{tokenizers.__version__} and utf8proc {utf8proc.utf8proc_unicode_version().decode()}; do not edit.",
        " * How the tokenizers crate classifies characters (see the script for why these are tables).",
        " */",
        "#ifndef EMBETTER_WORDPIECE_TABLES_H",
        "#define EMBETTER_WORDPIECE_TABLES_H",
        "",
        "#include <stdint.h>",
        "",
        "typedef struct wp_range {",
        "    uint32_t first, last;",
        "} wp_range;",
        "",
    ]

    def table(name: str, comment: str, points: list[int]) -> None:
        lines.append(f"/* {comment} */")
        lines.append(f"static const wp_range {name}[] = {{")
        rs = ranges(points)
        for i in range(0, len(rs), 4):
            lines.append("    " + " ".join(f"{{0x{a:X}, 0x{b:X}}}," for a, b in rs[i : i + 4]))
        lines.append("};")
        lines.append("")

    table("wp_removed", "Dropped by clean_text (besides U+0000): its control characters (Cc, Cf, Co) and U+FFFD.", removed)
    table("wp_clean_spaces", "Turned into ' ' by clean_text.", spaces)
    table("wp_marks", "Nonspacing marks (Mn) that accent stripping drops after NFD.", marks)
    table("wp_punct", "Punctuation the pre-tokenizer isolates: ASCII punctuation and the P* categories.", punct)
    lines.append("/* Characters whose lowercase differs from utf8proc_tolower's (U+0130 is handled apart: two characters). */")
    lines.append("static const uint32_t wp_lower_overrides[][2] = {")
    singles = [(cp, low[0]) for cp, low in lower_overrides if cp != 0x130]
    for i in range(0, len(singles), 4):
        lines.append("    " + " ".join(f"{{0x{a:X}, 0x{b:X}}}," for a, b in singles[i : i + 4]))
    if not singles:
        lines.append("    {0, 0},")
    lines.append("};")
    lines.append("")
    lines.append("/* Characters utf8proc decomposes but tokenizers' NFD leaves whole. */")
    lines.append("static const uint32_t wp_keep_composed[] = {")
    lines.append("    " + " ".join(f"0x{cp:X}," for cp in keep_composed) if keep_composed else "    0,")
    lines.append("};")
    lines.append("")
    lines.append("#endif")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{path}: {len(ranges(removed))} removed, {len(ranges(spaces))} space, {len(ranges(marks))} mark, "
          f"{len(ranges(punct))} punctuation ranges, {len(singles)} lowercase overrides, {len(keep_composed)} kept composed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS, help="model cache of scripts/fetch-models.sh")
    parser.add_argument("--tables", action="store_true", help="write src/wordpiece_tables.h instead of the fixture")
    args = parser.parse_args()
    if args.tables:
        write_tables(ROOT / "src" / "wordpiece_tables.h")
        return
    fortunes = fortunes_texts()
    texts = fortunes + hand_picked_texts() + sweep_texts()
    configs = configurations(args.models, fortunes)
    path = write_fixture(texts, configs)
    print(f"{path}: {len(texts)} texts ({len(fortunes)} fortunes), {len(configs)} configurations, "
          f"{path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
