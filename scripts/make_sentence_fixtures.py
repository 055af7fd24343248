#!/usr/bin/env python3
"""Reference embeddings from sentence-transformers, for the C tests of the BERT encoder.

Writes, under tests/fixtures/:
  tiny-bert/                a random-weight BERT (2 layers, 4 heads, hidden 64, max pooling,
                            no Normalize) in the sentence-transformers layout, weights named
                            with the "bert." prefix that MiniLM's file lacks
  sentence/tiny-bert.bin.gz reference for tiny-bert on 300 fortunes texts
  sentence/all-MiniLM-L6-v2.bin.gz  reference for all-MiniLM-L6-v2 on 1,200 fortunes texts

Run it in a venv made like this (torch first: any other torch spec pulls a CUDA build):
  python3 -m venv VENV && VENV/bin/pip install torch==2.13.0
  VENV/bin/pip install sentence-transformers transformers   # then check torch is still 2.13.0
  VENV/bin/python scripts/make_sentence_fixtures.py [--minilm DIR]
DIR holds all-MiniLM-L6-v2's files (default ~/.cache/libembetter/models/all-MiniLM-L6-v2,
filled by scripts/fetch-models.sh). --tiny-only rebuilds only the tiny model's fixture.

Fixture format (gzip of little-endian binary), read by tests/c/test_bert.c:
  8 bytes "EBSENT01"; u32 n_texts, dim, hidden_size, n_hidden
  per text i: u32 text bytes, UTF-8 text; u32 n_tokens, n_tokens u32 token ids (the model's
  own tokenizer, [CLS] .. [SEP], truncated at max_seq_length; the attention mask is all ones);
  dim f32 sentence embedding; for i < n_hidden also n_tokens x hidden_size f32 last hidden state.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import random
import re
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

# The corpus reader of the examples (examples/python/fortunes_data.py), which needs no libembetter to read.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "python"))
from fortunes_data import DEFAULT_CATEGORIES, read_category  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"


def tiny_vocab(texts: list[str]) -> list[str]:
    """Specials, every printable ASCII character alone and as ##piece, and the corpus's 300 commonest words."""
    chars = [chr(c) for c in range(33, 127)]
    counts = collections.Counter(w for t in texts for w in re.findall(r"[a-z]+", t.lower()))
    words = [w for w, _ in counts.most_common() if len(w) > 1][:300]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars] + words


def build_tiny(directory: Path, texts: list[str]) -> None:
    """The tiny model in the classic sentence-transformers layout that the C loader reads (and PyPI's models use)."""
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizerFast
    from safetensors.torch import save_file

    torch.manual_seed(13)
    work = Path(tempfile.mkdtemp(prefix="tiny-bert-"))
    vocab = tiny_vocab(texts)
    (work / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=128, type_vocab_size=2,
        layer_norm_eps=1e-7, hidden_act="gelu", initializer_range=0.15,
    )
    model = BertModel(config, add_pooling_layer=False)
    # Random biases and LayerNorm parameters too: the defaults (zeros, ones) would hide a bias left out.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                param.copy_(1 + 0.2 * torch.randn_like(param))
            elif name.endswith("bias"):
                param.copy_(0.1 * torch.randn_like(param))
    model.save_pretrained(work / "hf", safe_serialization=True)
    # From the dict: transformers 5 silently ignores vocab_file and keeps only the special tokens.
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    if len(tokenizer) != len(vocab):
        sys.exit(f"make_sentence_fixtures: the tiny tokenizer has {len(tokenizer)} tokens, not {len(vocab)}")
    tokenizer.save_pretrained(work / "hf")

    if directory.exists():
        shutil.rmtree(directory)
    (directory / "1_Pooling").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(work / "hf" / name, directory / name)
    shutil.copy(work / "vocab.txt", directory / "vocab.txt")
    # Weights named as a BertFor* checkpoint names them, so the C loader's "bert." path meets a real file.
    state = model.state_dict()
    save_file({"bert." + k: v.contiguous() for k, v in state.items() if not k.endswith("position_ids")},
              str(directory / "model.safetensors"), metadata={"format": "pt"})
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (directory / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (directory / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 48, "do_lower_case": False}, indent=2) + "\n")
    pooling = {
        "word_embedding_dimension": 64,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": True,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")
    shutil.rmtree(work)

    # The reference must come from these files: check sentence-transformers loads every weight from them.
    loaded = SentenceTransformer(str(directory), device="cpu")[0].auto_model.state_dict()
    for key, value in state.items():
        if key not in loaded or not torch.equal(loaded[key], value):
            sys.exit(f"make_sentence_fixtures: {key} did not load from {directory}")


def write_fixture(path: Path, model_dir: Path, texts: list[str], n_hidden: int) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu")
    st.eval()
    embeddings = st.encode(texts, batch_size=32, convert_to_numpy=True)
    hidden_size = st[0].auto_model.config.hidden_size
    dim = embeddings.shape[1]
    token_lists = []
    hidden_states = []
    for i, text in enumerate(texts):
        features = st.tokenize([text])
        ids = features["input_ids"][0].tolist()
        if not all(int(m) == 1 for m in features["attention_mask"][0].tolist()):
            sys.exit(f"make_sentence_fixtures: text {i} has a padded mask on its own")
        token_lists.append(ids)
        if i < n_hidden:
            with torch.no_grad():
                out = st[0].auto_model(input_ids=features["input_ids"], attention_mask=features["attention_mask"])
            hidden_states.append(out.last_hidden_state[0].numpy().astype("<f4"))
    parts = [b"EBSENT01", struct.pack("<4I", len(texts), dim, hidden_size, n_hidden)]
    for i, text in enumerate(texts):
        raw = text.encode("utf-8")
        parts.append(struct.pack("<I", len(raw)) + raw)
        parts.append(struct.pack("<I", len(token_lists[i])) + np.asarray(token_lists[i], "<u4").tobytes())
        parts.append(embeddings[i].astype("<f4").tobytes())
        if i < n_hidden:
            parts.append(hidden_states[i].tobytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime 0: the same inputs give the same bytes, so a rerun shows no spurious change in git.
    with open(path, "wb") as raw_file, gzip.GzipFile(fileobj=raw_file, mode="wb", mtime=0, compresslevel=9) as f:
        f.write(b"".join(parts))
    longest = max(len(t) for t in token_lists)
    print(f"{path.relative_to(REPO)}: {len(texts)} texts, dim {dim}, longest {longest} tokens, "
          f"{n_hidden} hidden states, {path.stat().st_size} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_minilm = Path(os.path.expanduser("~/.cache/libembetter/models/all-MiniLM-L6-v2"))
    parser.add_argument("--minilm", type=Path, default=default_minilm)
    parser.add_argument("--tiny-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)

    texts = [text for name in DEFAULT_CATEGORIES for text in read_category(name)]
    sample = random.Random(13).sample(texts, 1200)
    tiny_dir = FIXTURES / "tiny-bert"
    build_tiny(tiny_dir, texts)
    write_fixture(FIXTURES / "sentence" / "tiny-bert.bin.gz", tiny_dir, sample[:300], n_hidden=24)
    if args.tiny_only:
        return
    if not (args.minilm / "model.safetensors").is_file():
        sys.exit(f"make_sentence_fixtures: no {args.minilm / 'model.safetensors'}; run scripts/fetch-models.sh")
    write_fixture(FIXTURES / "sentence" / "all-MiniLM-L6-v2.bin.gz", args.minilm, sample, n_hidden=0)


if __name__ == "__main__":
    main()
