"""Throughput of the corpus report against reading alone, with and without near-duplicate detection, and the
memory of the near-duplicate (MinHash LSH) index per million documents.

    .venv/bin/python benchmarks/corpus_report_throughput.py                 # 5 MB corpus, 20 000-document index
    .venv/bin/python benchmarks/corpus_report_throughput.py --mb 20 --index-documents 50000

Rows (documents/s and MB/s of document text, best of --repeat):

  read              `read_documents` over the JSONL files: parsing only, the floor for anything that reads
  report            `profile_corpus` with --no-near-dup: language ID, quality signals, PII, exact duplicates
  report+near-dup   the default report: the above plus MinHash signatures and LSH queries/inserts

The index row builds a `NearDuplicateIndex` over --index-documents distinct synthetic documents (200 random
words each, so nothing is a duplicate and every signature is kept) and measures the Python heap it grows
(tracemalloc: numpy arrays, dicts and the LSH's band tables), scaled to one million documents. Figures only.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from pretrain_trainer.curation.neardup import NearDuplicateIndex
from pretrain_trainer.curation.profile import ProfileSettings
from pretrain_trainer.curation.report import profile_corpus
from pretrain_trainer.data.readers import expand_inputs, read_documents

# The corpus generator is a developer tool at the repository root, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.bundled_corpus.generate import generate_documents


def build_corpus(folder: Path, target_bytes: int) -> tuple[int, int]:
    """JSONL files (one per seed) with at least `target_bytes` of text; returns (documents, text bytes)."""
    docs = size = seed = 0
    while size < target_bytes:
        with (folder / f"corpus-{seed:05d}.jsonl").open("w", encoding="utf-8") as handle:
            for doc in generate_documents(seed):
                handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
                docs += 1
                size += len(doc["text"].encode())
        seed += 1
    return docs, size


def best_of(repeat: int, run) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def index_memory(documents: int) -> float:
    """Bytes per document of a NearDuplicateIndex holding `documents` distinct documents (timing it here would
    mislead: tracemalloc slows every allocation)."""
    rng = random.Random(0)
    vocab = [f"w{n}" for n in range(50_000)]
    texts = [" ".join(rng.choices(vocab, k=200)) for _ in range(documents)]
    index = NearDuplicateIndex()  # import datasketch and build the permutations before measuring
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, text in enumerate(texts):
        index.add(i, text)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert index.indexed == documents
    return grown / documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=5.0, help="corpus size in MB of text (default: 5)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row; the fastest counts (default: 1)")
    parser.add_argument("--index-documents", type=int, default=20_000, help="documents in the memory row")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corpus-report-bench-") as tmp:
        folder = Path(tmp)
        docs, size = build_corpus(folder, int(args.mb * 1e6))
        patterns = [str(folder)]
        files = expand_inputs(patterns)
        print(f"corpus: {docs} documents, {size / 1e6:.2f} MB of text in {len(files)} files")
        rows = {
            "read": lambda: sum(1 for _ in read_documents(files)),
            "report": lambda: profile_corpus(patterns, settings=ProfileSettings(near_dedup=False)),
            "report+near-dup": lambda: profile_corpus(patterns, settings=ProfileSettings(near_dedup=True)),
        }
        profile_corpus(patterns, max_documents=10)  # load the language model outside the timings
        print(f"{'row':<18}{'seconds':>9}{'docs/s':>10}{'MB/s':>8}")
        for name, run in rows.items():
            seconds = best_of(args.repeat, run)
            print(f"{name:<18}{seconds:>9.2f}{docs / seconds:>10,.0f}{size / 1e6 / seconds:>8.2f}")
    per_doc = index_memory(args.index_documents)
    print(
        f"LSH index: {per_doc:,.0f} bytes per document, {per_doc * 1e6 / 2**30:.2f} GiB per million documents "
        f"({args.index_documents} distinct documents of 200 words; 128 permutations, threshold 0.7)"
    )


if __name__ == "__main__":
    main()
