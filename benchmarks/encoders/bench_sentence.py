"""SentenceEncoder against sentence-transformers (PyTorch, CPU) and ONNX Runtime: all-MiniLM-L6-v2 on fortunes.

Three encoders of the same model run in this process on the same texts at
batch size 32 with every core:
  - ours: libembetter's SentenceEncoder (automatic threads);
  - sentence-transformers: SentenceTransformer.encode on PyTorch, torch.set_num_threads(cpu count);
  - ONNX Runtime: the model's transformer exported to ONNX from the local model files
    (torch.onnx.export, dynamo exporter), run by an InferenceSession with cpu-count intra-op
    threads; tokenised by the model's Hugging Face fast tokenizer, texts sorted by length and
    mean-pooled and normalised in NumPy, as sentence-transformers does.
Every row of the other two is first checked against ours (cosine >= 0.99999,
max abs difference <= 1e-4). Then the three are timed interleaved: each
round runs all three once, in an order that rotates from round to round, so
that load from other processes on a shared machine falls on all of them
alike; the figures are the medians over the rounds, with the per-round
ratios. A pause of --pause seconds before each timed call lets the worker
threads of the previous encoder (OpenBLAS, OpenMP, ONNX Runtime spin for a
while after their work) go to sleep first. Peak RSS is measured apart, one fresh child process per encoder
(load the model, encode the texts once, read VmHWM), so that one
encoder's memory does not hide another's. The BLAS libembetter runs is
printed. Exits 1 when ours falls short of --target times
sentence-transformers' throughput or of ONNX Runtime's.

Needs PyTorch, so it is never part of the test command. Run it in a venv made so:
  python3 -m venv VENV && VENV/bin/pip install torch==2.13.0   # first: any other spec pulls CUDA
  echo torch==2.13.0 > c.txt && VENV/bin/pip install -c c.txt sentence-transformers onnxruntime onnx onnxscript .
  bash scripts/fetch-models.sh all-MiniLM-L6-v2
  VENV/bin/python benchmarks/encoders/bench_sentence.py [--limit N] [--repeats R]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus import fortunes_texts  # noqa: E402

MODEL = "all-MiniLM-L6-v2"
BATCH = 32
CONTENDERS = ("ours", "sentence-transformers", "onnxruntime")


def peak_rss_mb():
    """This process's peak resident set (VmHWM). Not ru_maxrss, which a child inherits from its parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status")


def sample_texts(limit):
    """`limit` texts spread evenly over the whole corpus (every category), or all of them for 0."""
    texts = fortunes_texts()
    if not limit or limit >= len(texts):
        return texts
    return [texts[i] for i in np.linspace(0, len(texts) - 1, limit).round().astype(int)]


def model_dir():
    from libembetter.text import model_cache_dir

    directory = model_cache_dir() / MODEL
    if not (directory / "model.safetensors").is_file():
        raise SystemExit(f"{directory} has no model.safetensors: run bash scripts/fetch-models.sh {MODEL}")
    return directory


def export_onnx(directory, onnx_path):
    """The transformer of the local model as ONNX (inputs ids, mask, token types; output the token states)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModel.from_pretrained(directory).eval()

    class TokenStates(torch.nn.Module):
        # Keyword arguments only: transformers 5's forward takes other parameters in positional slots.
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    example = tokenizer(["an example", "a longer example sentence"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    # The dynamo exporter: the TorchScript one (dynamo=False) gives a graph that is off by up to 1.9 on every
    # row with transformers 5 (measured), which the equality check below would refuse.
    torch.onnx.export(TokenStates(model), tuple(example[name] for name in names), str(onnx_path),
                      input_names=names, output_names=["token_states"],
                      dynamic_axes={name: {0: "batch", 1: "tokens"} for name in names + ["token_states"]},
                      opset_version=18, dynamo=True)


def make_ours(directory, cpus):
    from libembetter.text import SentenceEncoder

    encoder = SentenceEncoder(str(directory), batch_size=BATCH).fit()
    return lambda texts: encoder.transform(texts), None


def make_sentence_transformers(directory, cpus):
    import sentence_transformers
    import torch

    torch.set_num_threads(cpus)
    model = sentence_transformers.SentenceTransformer(str(directory), device="cpu")
    return (lambda texts: model.encode(texts, batch_size=BATCH, convert_to_numpy=True),
            f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}")


def make_onnxruntime(directory, cpus, onnx_path):
    import json

    import onnxruntime
    from transformers import AutoTokenizer

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = cpus
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(directory)
    max_length = json.loads((Path(directory) / "sentence_bert_config.json").read_text())["max_seq_length"]

    def encode(texts):
        # Longest first, as sentence-transformers orders them, so each batch pads little.
        order = np.argsort([-len(text) for text in texts], kind="stable")
        out = np.empty((len(texts), 384), dtype=np.float32)
        for start in range(0, len(texts), BATCH):
            rows = order[start:start + BATCH]
            batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                              return_tensors="np")
            feed = {name: batch[name].astype(np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
            states = session.run(None, feed)[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            pooled = (states * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            out[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out

    return encode, f"onnxruntime {onnxruntime.__version__}"


def make(name, directory, cpus, onnx_path):
    if name == "ours":
        return make_ours(directory, cpus)
    if name == "sentence-transformers":
        return make_sentence_transformers(directory, cpus)
    return make_onnxruntime(directory, cpus, onnx_path)


def compare(name, ours, theirs):
    cosine = np.sum(ours * theirs, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    worst = float(np.abs(ours - theirs).max())
    print(f"{name} against ours: worst cosine {cosine.min():.9f}, max abs difference {worst:.3g}")
    return cosine.min() >= 0.99999 and worst <= 1e-4


def child_rss(args):
    """--rss-of: load one encoder, encode the texts once, print the peak RSS in MB."""
    texts = sample_texts(args.limit)
    cpus = os.cpu_count() or 1
    before = peak_rss_mb()
    encode, _ = make(args.rss_of, model_dir(), cpus, args.onnx)
    encode(texts)
    print(f"{before:.0f} {peak_rss_mb():.0f}")
    return 0


def load_average():
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=2000,
                        help="N texts spread evenly over the corpus (0: all %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default %(default)s)")
    parser.add_argument("--target", type=float, default=2.0, help="required speed-up over sentence-transformers")
    parser.add_argument("--pause", type=float, default=1.0,
                        help="seconds between two encoders, for the last one's spinning worker threads to sleep")
    parser.add_argument("--onnx", type=Path, default=None, help="the exported model (default: export to a temp dir)")
    parser.add_argument("--rss-of", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_of:
        return child_rss(args)

    from libembetter._config import blas_config

    texts = sample_texts(args.limit)
    cpus = os.cpu_count() or 1
    directory = model_dir()
    blas = blas_config()
    print(f"fortunes corpus: {len(texts)} texts spread over all {len(fortunes_texts())}, "
          f"{sum(len(t.encode()) for t in texts) / 1e6:.2f} MB; batch {BATCH}; {cpus} CPUs; "
          f"{args.repeats} interleaved rounds; load average at start {load_average()}")
    print(f"libembetter BLAS: {blas['library']} {blas['version']}, core {blas['core']}, "
          f"{blas['threading']} {blas['threads']} threads, CPU {blas['cpu_vector_isa']}")

    scratch = tempfile.TemporaryDirectory()
    if args.onnx is None:
        args.onnx = Path(scratch.name) / f"{MODEL}.onnx"
    if not args.onnx.is_file():
        export_onnx(directory, args.onnx)

    encoders, versions = {}, {}
    for name in CONTENDERS:
        encoders[name], versions[name] = make(name, directory, cpus, args.onnx)
    ours = encoders["ours"](texts)
    equal = all([compare(f"{name} ({versions[name]})", ours, encoders[name](texts)) for name in CONTENDERS[1:]])
    if not equal:
        print("outputs differ beyond the tolerance: no timing", file=sys.stderr)
        return 2

    times = {name: [] for name in CONTENDERS}
    for round_index in range(args.repeats):
        shift = round_index % len(CONTENDERS)
        for name in CONTENDERS[shift:] + CONTENDERS[:shift]:
            time.sleep(args.pause)
            start = time.perf_counter()
            encoders[name](texts)
            times[name].append(time.perf_counter() - start)
        print(f"round {round_index + 1}: " + ", ".join(f"{name} {times[name][-1]:.2f} s" for name in CONTENDERS)
              + f"; load average {load_average()}", flush=True)

    rss = {}
    for name in CONTENDERS:
        result = subprocess.run([sys.executable, __file__, "--rss-of", name, "--limit", str(args.limit),
                                 "--onnx", str(args.onnx)], capture_output=True, text=True, check=True)
        rss[name] = [float(value) for value in result.stdout.split()[-2:]]

    rates = {name: len(texts) / statistics.median(times[name]) for name in CONTENDERS}
    print(f"\n{'encoder':<24} {'texts/s (median)':>16} {'min-max texts/s':>18} {'peak RSS':>9} {'before loading':>15}")
    for name in CONTENDERS:
        slowest, fastest = len(texts) / max(times[name]), len(texts) / min(times[name])
        print(f"{name:<24} {rates[name]:16.1f} {slowest:8.1f}-{fastest:<9.1f} {rss[name][1]:6.0f} MB "
              f"{rss[name][0]:12.0f} MB")
    verdict = 0
    for name, target in (("sentence-transformers", args.target), ("onnxruntime", 1.0)):
        ratio = rates["ours"] / rates[name]
        per_round = [b / a for a, b in zip(times["ours"], times[name])]
        meets = ratio >= target
        verdict |= not meets
        print(f"ours / {name}: {ratio:.2f}x (rounds {min(per_round):.2f}-{max(per_round):.2f}x); "
              f"{'meets' if meets else 'MISSES'} the {target:g}x target")
    print(f"load average at end {load_average()}")
    return verdict


if __name__ == "__main__":
    sys.exit(main())
