"""Throughput of `prepare` (corpus → token shards) against the raw tokenizer it is built on.

    .venv/bin/python benchmarks/prepare_throughput.py            # 20 MB corpus, vocab 8192, best of 2
    .venv/bin/python benchmarks/prepare_throughput.py --mb 50 --repeat 3

Builds a corpus of about --mb MB of JSONL from `generate_documents(seed)` for seeds 0, 1, 2, ..., trains a
byte-level BPE tokenizer on the bundled documents, then measures

  raw      `Tokenizer.encode_batch` on the same texts in batches of 1024 (the ceiling for prepare), and
  prepare  `prepare()` end to end into a file:// temp folder: reading JSONL, blake2b hashing for dedup and the
           split, tokenizing, writing uint16 shards with page checksums and sha256, and the index.

Both report tokens/s and MB/s of input text; the ratio prepare/raw says how much of the tokenizer's speed
survives the rest of the pipeline. Figures only: nothing here asserts on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import tokenizers

from pretrain_trainer.bundled_corpus import load_bundled_documents
from pretrain_trainer.data.prepare import PrepareConfig, prepare
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer, train_tokenizer

# The corpus generator is a developer tool at the repository root, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.bundled_corpus.generate import generate_documents

BATCH = 1024


def build_corpus(folder: Path, target_bytes: int) -> tuple[list[Path], list[str]]:
    """JSONL files (one per seed) holding at least `target_bytes` of UTF-8 text; returns them and the texts."""
    files: list[Path] = []
    texts: list[str] = []
    size = 0
    seed = 0
    while size < target_bytes:
        path = folder / f"corpus-{seed:05d}.jsonl"
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            for doc in generate_documents(seed):
                handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
                texts.append(doc["text"])
                size += len(doc["text"].encode())
        files.append(path)
        seed += 1
    return files, texts


def uri_to_path(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def time_raw(tok: tokenizers.Tokenizer, texts: list[str]) -> tuple[float, int]:
    """Seconds and tokens for encoding every text, `BATCH` documents per `encode_batch` call."""
    started = time.perf_counter()
    tokens = 0
    for i in range(0, len(texts), BATCH):
        tokens += sum(len(e.ids) for e in tok.encode_batch(texts[i : i + BATCH], add_special_tokens=False))
    return time.perf_counter() - started, tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=20.0, help="corpus size in MB of UTF-8 text (default 20)")
    parser.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary size asked for (default 8192)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement; the best counts (default 2)")
    args = parser.parse_args(argv)
    if args.mb <= 0 or args.repeat < 1:
        parser.error("--mb must be positive and --repeat at least 1")

    print(f"cpus {os.cpu_count()}  tokenizers {tokenizers.__version__}  corpus {args.mb:g} MB  best of {args.repeat}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    try:
        corpus_dir = tmp / "corpus"
        corpus_dir.mkdir()
        files, texts = build_corpus(corpus_dir, int(args.mb * 1e6))
        text_bytes = sum(len(t.encode()) for t in texts)

        spec = TokenizerTrainingSpec(model="bpe", vocab_size=args.vocab_size, objective="clm")
        tok = train_tokenizer((d["text"] for d in load_bundled_documents()), spec)
        tok_uri = save_tokenizer(tok, spec, str(tmp / "tokenizer"))
        print(
            f"corpus {len(texts)} documents, {text_bytes / 1e6:.1f} MB in {len(files)} files; "
            f"tokenizer byte-level BPE, {tok.get_vocab_size()} tokens (trained on the bundled corpus)"
        )

        # A fresh copy per run, read from the saved file as prepare does: the first pass over a corpus fills the
        # BPE word cache, so re-using one object would flatter the later runs.
        tok_path = uri_to_path(tok_uri)
        raw_s, raw_tokens = min(time_raw(tokenizers.Tokenizer.from_file(tok_path), texts) for _ in range(args.repeat))

        reports = []
        for run in range(args.repeat):
            cfg = PrepareConfig(
                inputs=tuple(str(f) for f in files),
                output=(tmp / f"out-{run}").as_uri(),
                tokenizer=tok_uri,
                dedup=True,
                batch_documents=BATCH,
            )
            reports.append(prepare(cfg))
            shutil.rmtree(tmp / f"out-{run}")
        best = min(reports, key=lambda r: r.seconds)
        prep_tokens = sum(best.tokens.values())

        raw_tps, raw_mbps = raw_tokens / raw_s, text_bytes / raw_s / 1e6
        prep_tps, prep_mbps = prep_tokens / best.seconds, best.bytes_read / best.seconds / 1e6
        print(f"{'':<9}{'seconds':>9}{'tokens':>12}{'tokens/s':>12}{'MB/s':>8}")
        print(f"{'raw':<9}{raw_s:>9.2f}{raw_tokens:>12,}{raw_tps:>12,.0f}{raw_mbps:>8.2f}")
        print(f"{'prepare':<9}{best.seconds:>9.2f}{prep_tokens:>12,}{prep_tps:>12,.0f}{prep_mbps:>8.2f}")
        dropped = ", ".join(f"{n} {why}" for why, n in sorted(best.dropped.items())) or "none"
        print(
            f"prepare/raw: {prep_mbps / raw_mbps:.2f} by input MB/s ({prep_tps / raw_tps:.2f} by tokens/s; prepare "
            f"adds one EOS per document and dropped {dropped}); wrote {best.bytes_written / 1e6:.1f} MB in "
            f"{sum(best.shards.values())} shards"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
